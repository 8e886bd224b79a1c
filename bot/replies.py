"""Sending a result set: an album of product photos, then one message with links and buttons.

A product photo is uploaded once; Telegram's file_id for it is stored and used from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from telegram import InputMediaPhoto, Message
from telegram.constants import ChatAction, ParseMode
from telegram.error import Forbidden, TelegramError

from bot.context import BotServices
from bot.render import result_caption, results_keyboard, results_message
from search.service import ResultItem, SearchResult

log = logging.getLogger(__name__)

ALBUM_MAX = 10  # sendMediaGroup takes 2 to 10 items
CHAT_ACTION_REFRESH_SECONDS = 4.5  # Telegram shows a chat action for about 5 s


@contextlib.asynccontextmanager
async def chat_action(
    bot: Any, chat_id: int, action: str = ChatAction.UPLOAD_PHOTO
) -> AsyncIterator[None]:
    """Keep "sending photo…" visible while the work inside runs."""

    async def keep_alive() -> None:
        while True:
            with contextlib.suppress(TelegramError):
                await bot.send_chat_action(chat_id=chat_id, action=action)
            await asyncio.sleep(CHAT_ACTION_REFRESH_SECONDS)

    task = asyncio.create_task(keep_alive())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _photo_input(services: BotServices, item: ResultItem) -> str | bytes:
    if item.image.telegram_file_id:
        return item.image.telegram_file_id
    return await asyncio.to_thread(services.search.media.read, item.image.file_name)


async def _remember_file_ids(
    services: BotServices, items: list[ResultItem], messages: tuple[Message, ...] | list[Message]
) -> None:
    for item, message in zip(items, messages, strict=False):
        if item.image.telegram_file_id or not message.photo:
            continue
        file_id = message.photo[-1].file_id
        await asyncio.to_thread(services.search.remember_telegram_file_id, item.image.id, file_id)


async def send_results(
    bot: Any,
    chat_id: int,
    result: SearchResult,
    services: BotServices,
    *,
    heading: str,
    reply_to: int | None = None,
) -> None:
    """The album (or one photo), then the list with links and buttons."""
    items = result.items[:ALBUM_MAX]
    if not items:
        await bot.send_message(
            chat_id=chat_id,
            text="No matching products right now. Try another photo, or fewer filters.",
            reply_to_message_id=reply_to,
        )
        return
    try:
        if len(items) == 1:
            message = await bot.send_photo(
                chat_id=chat_id,
                photo=await _photo_input(services, items[0]),
                caption=result_caption(items[0]),
                parse_mode=ParseMode.HTML,
                reply_to_message_id=reply_to,
            )
            await _remember_file_ids(services, items, [message])
        else:
            media = [
                InputMediaPhoto(
                    media=await _photo_input(services, item),
                    caption=result_caption(item),
                    parse_mode=ParseMode.HTML,
                )
                for item in items
            ]
            messages = await bot.send_media_group(
                chat_id=chat_id, media=media, reply_to_message_id=reply_to
            )
            await _remember_file_ids(services, items, messages)
        await bot.send_message(
            chat_id=chat_id,
            text=results_message(result, heading=heading),
            parse_mode=ParseMode.HTML,
            reply_markup=results_keyboard(result, bot_username=bot.username),
            disable_web_page_preview=True,
        )
    except Forbidden:
        # The user blocked the bot mid-reply: nothing more to send, nothing to retry.
        log.info("chat %s blocked the bot; reply dropped", chat_id)
