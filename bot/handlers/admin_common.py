"""What every admin command shares: who may use it, the audit trail, HTML replies."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from typing import Any

from telegram import Message, Update
from telegram.constants import ChatType, ParseMode

from bot.context import BotServices, Context

log = logging.getLogger(__name__)

NOT_ADMIN = "Sorry, this command is only for the shop's admins."
NOT_PRIVATE = "Admin commands only work in a private chat with me."
MAX_DETAIL = 200  # characters of a reason kept in an audit entry


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """An allowed admin command: the message to answer, who sent it, the services."""

    message: Message
    user_id: int
    services: BotServices

    async def audit(
        self, action: str, outcome: str, target: str | None = None, **details: Any
    ) -> None:
        await audit(self.services, self.user_id, action, outcome, target, **details)

    async def reply(self, text: str) -> Message:
        return await self.message.reply_text(
            text, parse_mode=ParseMode.HTML, disable_web_page_preview=True
        )

    async def fail(self, action: str, target: str | None, reason: str, *, hint: str = "") -> None:
        """Tell the admin why nothing was done (escaped; `hint` is HTML to add) in one message,
        and audit it as failed."""
        await self.audit(action, "failed", target, error=reason[:MAX_DETAIL])
        await self.reply(escape(reason, quote=False) + (f"\n\n{hint}" if hint else ""))


async def audit(
    services: BotServices,
    user_id: int,
    action: str,
    outcome: str,
    target: str | None = None,
    **details: Any,
) -> None:
    await services.engine.run(
        services.engine.history.audit,
        user_id=user_id,
        action=action,
        outcome=outcome,
        target=target[:64] if target else None,
        details=details,
    )


async def authorise(
    update: Update, context: Context, action: str, target: str | None = None
) -> AdminRequest | None:
    """The request if an admin sent it in a private chat; otherwise refuse, log and audit it.

    Authorisation is by numeric user id only (usernames can change hands)."""
    message = update.effective_message
    user = update.effective_user
    chat = update.effective_chat
    if message is None or user is None or chat is None:
        return None
    services = context.bot_data.services
    if services.is_admin(user.id) and chat.type == ChatType.PRIVATE:
        return AdminRequest(message=message, user_id=user.id, services=services)
    reason = "not_admin" if not services.is_admin(user.id) else "not_private"
    log.warning("refused /%s from user %s in a %s chat (%s)", action, user.id, chat.type, reason)
    await audit(
        services, user.id, action, "refused", target, reason=reason, chat_type=str(chat.type)
    )
    await message.reply_text(NOT_ADMIN if reason == "not_admin" else NOT_PRIVATE)
    return None
