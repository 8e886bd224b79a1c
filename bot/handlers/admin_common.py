"""What every admin command shares: who may use it, the audit trail, HTML replies in the
admin's language (their /language, else their Telegram client's), while the audit trail keeps
English."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from typing import Any

from telegram import Message, Update
from telegram.constants import ChatType, ParseMode

from bot.context import BotServices, Context
from lookalike.i18n import ENGLISH, N_, Translator

log = logging.getLogger(__name__)

NOT_ADMIN = N_("Sorry, this command is only for the shop's admins.")
NOT_PRIVATE = N_("Admin commands only work in a private chat with me.")
# A reason shown as it came (the feed's or the engine's, English): `fail(..., AS_GIVEN, reason=)`.
AS_GIVEN = "{reason}"
MAX_DETAIL = 200  # characters of a reason kept in an audit entry


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """An allowed admin command: the message to answer, who sent it, the services, and the
    admin's language."""

    message: Message
    user_id: int
    services: BotServices
    t: Translator = ENGLISH

    async def audit(
        self, action: str, outcome: str, target: str | None = None, **details: Any
    ) -> None:
        await audit(self.services, self.user_id, action, outcome, target, **details)

    def reason(self, value: object) -> object:
        """An exception's message in the admin's language when it is one of the doors' own
        (marked N_ where raised); the engine's reasons stay as search/ wrote them (English)."""
        if isinstance(value, Exception) and str(value):
            return self.t(str(value))
        return value

    async def reply(self, text: str) -> Message:
        return await self.message.reply_text(
            text, parse_mode=ParseMode.HTML, disable_web_page_preview=True
        )

    async def fail(
        self,
        action: str,
        target: str | None,
        text: str,
        /,
        *,
        hint: str = "",
        **values: object,
    ) -> None:
        """Tell the admin why nothing was done in one message: `text` is a marked message
        (N_) with its `values`, translated and escaped; `hint` is HTML to add, translated
        already. The audit keeps the reason in English."""
        await self.audit(action, "failed", target, error=ENGLISH(text, **values)[:MAX_DETAIL])
        shown = {name: self.reason(value) for name, value in values.items()}
        reply = escape(self.t(text, **shown), quote=False)
        await self.reply(reply + (f"\n\n{hint}" if hint else ""))


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
    t = await services.translator_for(user)
    if services.is_admin(user.id) and chat.type == ChatType.PRIVATE:
        return AdminRequest(message=message, user_id=user.id, services=services, t=t)
    reason = "not_admin" if not services.is_admin(user.id) else "not_private"
    log.warning("refused /%s from user %s in a %s chat (%s)", action, user.id, chat.type, reason)
    await audit(
        services, user.id, action, "refused", target, reason=reason, chat_type=str(chat.type)
    )
    refusal = NOT_ADMIN if reason == "not_admin" else NOT_PRIVATE
    await message.reply_text(t(refusal))
    return None
