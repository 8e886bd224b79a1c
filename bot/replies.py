"""Sending a result set: an album of product photos, then one message with links and buttons.

A product photo is uploaded once; Telegram's file_id for it is stored and used from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from telegram import InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.context import BotServices
from bot.render import result_caption, results_keyboard, results_message
from lookalike.i18n import ENGLISH, N_, Translator
from search import ProductRecord, ResultItem, SearchResult

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
            try:
                await bot.send_chat_action(chat_id=chat_id, action=action)
            except Forbidden:
                return  # blocked: the reply will fail too, no point in repeating this
            except TelegramError as exc:
                log.debug("chat action not shown: %s", exc)
            await asyncio.sleep(CHAT_ACTION_REFRESH_SECONDS)

    task = asyncio.create_task(keep_alive())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _photo_input(services: BotServices, item: ResultItem, *, upload: bool) -> str | bytes:
    if item.image.telegram_file_id and not upload:
        return item.image.telegram_file_id
    return await services.engine.run(services.engine.media.read, item.image.file_name)


async def _remember_file_ids(
    services: BotServices,
    items: list[ResultItem],
    messages: tuple[Message, ...] | list[Message],
    *,
    uploaded: bool,
) -> None:
    """Store Telegram's file_id of every photo that was uploaded, to send it by id next time."""
    for item, message in zip(items, messages, strict=False):
        if not message.photo or (item.image.telegram_file_id and not uploaded):
            continue
        file_id = message.photo[-1].file_id
        if file_id != item.image.telegram_file_id:
            catalog = services.engine.catalog
            await services.engine.run(catalog.remember_telegram_file_id, item.image.id, file_id)


async def _send_photos(
    bot: Any,
    chat_id: int,
    items: list[ResultItem],
    services: BotServices,
    *,
    reply_to: int | None,
    upload: bool,
    t: Translator,
) -> None:
    """One photo, or an album of 2 to 10 (sendMediaGroup refuses a single item)."""
    if len(items) == 1:
        message = await bot.send_photo(
            chat_id=chat_id,
            photo=await _photo_input(services, items[0], upload=upload),
            caption=result_caption(items[0], t),
            parse_mode=ParseMode.HTML,
            reply_to_message_id=reply_to,
        )
        messages: tuple[Message, ...] | list[Message] = [message]
    else:
        media = [
            InputMediaPhoto(
                media=await _photo_input(services, item, upload=upload),
                caption=result_caption(item, t),
                parse_mode=ParseMode.HTML,
            )
            for item in items
        ]
        messages = await bot.send_media_group(
            chat_id=chat_id, media=media, reply_to_message_id=reply_to
        )
    await _remember_file_ids(services, items, messages, uploaded=upload)


NO_MATCH_FOR_FILTERS = N_(
    "No products match those filters right now. Try the photo again without a "
    "caption, or with a higher price limit."
)
NO_MATCH = N_("No matching products right now. Please try again later or with another photo.")


def no_results_text(result: SearchResult, t: Translator = ENGLISH) -> str:
    if result.filters.get("category") or result.filters.get("max_price"):
        return t(NO_MATCH_FOR_FILTERS)
    return t(NO_MATCH)


async def send_results(
    bot: Any,
    chat_id: int,
    result: SearchResult,
    services: BotServices,
    *,
    heading: str,
    reply_to: int | None = None,
    link_ranks: Mapping[int, int] | None = None,
    t: Translator = ENGLISH,
) -> bool:
    """The album (or one photo), then the list with links and buttons, in `t`'s language.
    False if the chat could not be reached (the user blocked the bot). `link_ranks`: see
    results_message."""
    items = result.items[:ALBUM_MAX]
    try:
        if not items:
            await bot.send_message(
                chat_id=chat_id, text=no_results_text(result, t), reply_to_message_id=reply_to
            )
            return True
        cached = any(item.image.telegram_file_id for item in items)
        try:
            await _send_photos(bot, chat_id, items, services, reply_to=reply_to, upload=False, t=t)
        except BadRequest as exc:
            if not cached:
                raise
            # A stored file_id Telegram no longer accepts (e.g. another bot token): upload.
            log.warning("sending by file_id failed (%s); uploading the photos instead", exc)
            await _send_photos(bot, chat_id, items, services, reply_to=reply_to, upload=True, t=t)
        await bot.send_message(
            chat_id=chat_id,
            text=results_message(
                result, heading=heading, bot_username=bot.username, link_ranks=link_ranks, t=t
            ),
            parse_mode=ParseMode.HTML,
            reply_markup=results_keyboard(result, bot_username=bot.username, t=t),
            disable_web_page_preview=True,
        )
    except Forbidden:
        # The user blocked the bot mid-reply: nothing more to send, nothing to retry.
        log.info("chat %s blocked the bot; reply dropped", chat_id)
        return False
    return True


async def send_card_photo(
    bot: Any,
    chat_id: int,
    product: ProductRecord,
    services: BotServices,
    *,
    caption: str,
    reply_markup: InlineKeyboardMarkup | None = None,
) -> bool:
    """The product's first photo with `caption` (HTML): by cached file_id, else uploaded (and
    its file_id kept). False, with nothing sent, when it has no readable photo."""
    if not product.images:
        return False
    image = product.images[0]
    if image.telegram_file_id:
        try:
            await bot.send_photo(
                chat_id=chat_id,
                photo=image.telegram_file_id,
                caption=caption,
                parse_mode=ParseMode.HTML,
                reply_markup=reply_markup,
            )
            return True
        except BadRequest as exc:  # a file_id Telegram no longer knows: upload instead
            log.warning("cached file_id of image %s refused: %s", image.id, exc)
    try:
        data = await services.engine.run(services.engine.media.read, image.file_name)
    except OSError as exc:
        log.error("image file of %s is unreadable: %s", product.sku, exc)
        return False
    sent: Message = await bot.send_photo(
        chat_id=chat_id,
        photo=data,
        caption=caption,
        parse_mode=ParseMode.HTML,
        reply_markup=reply_markup,
    )
    if sent.photo:
        catalog = services.engine.catalog
        await services.engine.run(
            catalog.remember_telegram_file_id, image.id, sent.photo[-1].file_id
        )
    return True
