"""Customers: /help, searching by photo, result buttons, and a helpful answer to anything else
(/start and the deep links it opens are bot/handlers/deep_links.py's; registered here)."""

from __future__ import annotations

import logging
from decimal import Decimal

from telegram import CallbackQuery, Message, Update
from telegram.constants import ChatAction, ParseMode
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotServices, Context
from bot.files import MAX_DOWNLOAD_BYTES, DownloadFailure, download
from bot.handlers import deep_links
from bot.query import CallbackAction, CaptionFilters, parse_callback, parse_caption
from bot.render import category_text
from bot.replies import chat_action, no_results_text, send_results
from lookalike.i18n import N_, Translator
from search import CatalogError, InvalidImageError, Requester, SearchQuery, SearchResult

log = logging.getLogger(__name__)

HELP = N_(
    "<b>How to search</b>\n"
    "• Send a photo (or an image file: JPEG, PNG, WebP).\n"
    "• Caption it with a category or a price limit: <i>boots</i>, <i>under 60</i>.\n"
    "• Use the buttons under the results to rate them, find cheaper ones or share them."
)
NOT_A_PHOTO = N_(
    "I search by photo 📷. Please send a picture of the item you like (as a photo or an "
    "image file). /help shows how."
)
NOT_AN_IMAGE_FILE = N_(
    "That file isn't an image I can search with. Please send a photo (JPEG, PNG or WebP)."
)
STICKER = N_("Nice sticker 🙂 But I search by photo: please send a picture of the item you like.")
VOICE = N_("I can't listen to audio 🙉 Please send a photo of the item you like instead.")
VIDEO = N_("I can't search with videos. Please send a photo (a screenshot works too).")
TOO_LARGE = N_("That file is too large (over 20 MB). Please send a smaller photo.")
DOWNLOAD_FAILED = N_("Sorry, I couldn't fetch your photo from Telegram just now. Please try again.")
TOO_FAST = N_("You're searching very fast 🙂 Please wait {seconds} s and try again.")
SEARCH_FAILED = N_("Sorry, something went wrong while searching. Please try again in a moment.")
UNKNOWN_COMMAND = N_("I don't know that command. /help shows what I can do.")
COULD_NOT_READ = N_("I couldn't read that image: {reason} Please send a photo (JPEG, PNG or WebP).")
THANKS_UP = N_("Thanks! Glad these helped 👍")
THANKS_DOWN = N_("Thanks, noted 👎 That helps us improve the results.")
BUTTON_INVALID = N_("Sorry, this button doesn't work any more. Please send the photo again.")
NOTHING_CHEAPER = N_("Nothing cheaper looks similar right now.")


def services_of(context: Context) -> BotServices:
    return context.bot_data.services


def _wait_text(seconds: float, t: Translator) -> str:
    return t(TOO_FAST, seconds=t.number(max(1, round(seconds))))


# ---- commands (/start and its deep links: bot/handlers/deep_links.py) -------------------


async def help_command(update: Update, context: Context) -> None:
    if update.effective_message:
        t = await services_of(context).translator_for(update.effective_user)
        await update.effective_message.reply_text(t(HELP), parse_mode=ParseMode.HTML)


# ---- searching by photo ----------------------------------------------------------------


def _largest_photo_file(message: Message) -> tuple[str, int | None]:
    if message.photo:
        size = message.photo[-1]
        return size.file_id, size.file_size
    assert message.document is not None
    return message.document.file_id, message.document.file_size


async def photo(update: Update, context: Context) -> None:
    """A photo or an image document: search, reply with the album and the list."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    services = services_of(context)
    t = await services.translator_for(user)
    file_id, size = _largest_photo_file(message)
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        await message.reply_text(t(TOO_LARGE))  # refused before anything is downloaded
        return
    if not await within_rate_limit(message, services, user.id, t):
        return
    wanted = await caption_filters(services, message.caption)
    # "Sending photo…" from the download until the album has been sent.
    async with chat_action(context.bot, message.chat_id, ChatAction.UPLOAD_PHOTO):
        data = await download(context.bot, file_id, size)
        result = await search_bytes(services, data, services.who(user.id), wanted, t)
        if isinstance(result, str):
            await message.reply_text(result)
            return
        heading = _heading(
            result, wanted.category, wanted.max_price, services.settings.weak_match_distance, t
        )
        await send_results(context.bot, message.chat_id, result, services, heading=heading, t=t)


async def within_rate_limit(
    message: Message, services: BotServices, user_id: int, t: Translator
) -> bool:
    """Whether this user may search now; if not, they are told how long to wait."""
    wait = await services.within_limit(user_id)
    if wait is not None:
        await message.reply_text(_wait_text(wait, t))
    return wait is None


async def caption_filters(services: BotServices, caption: str | None) -> CaptionFilters:
    if not caption or not caption.strip():
        return CaptionFilters()
    engine = services.engine
    return parse_caption(caption, await engine.run(engine.catalog.categories))


async def search_bytes(
    services: BotServices,
    data: bytes | DownloadFailure,
    who: Requester,
    wanted: CaptionFilters,
    t: Translator,
) -> SearchResult | str:
    """Search with downloaded image bytes; a str is the message to show instead."""
    if data is DownloadFailure.TOO_LARGE:
        return t(TOO_LARGE)
    if isinstance(data, DownloadFailure):
        return t(DOWNLOAD_FAILED)
    query = SearchQuery(category=wanted.category, max_price=wanted.max_price, colour=wanted.colour)
    try:
        return await services.engine.search_photo(data, query, who)
    except InvalidImageError as exc:
        # The reason comes from the engine, in English (search/ knows no languages).
        return t(COULD_NOT_READ, reason=exc)


def _heading(
    result: SearchResult,
    category: str | None,
    max_price: Decimal | None,
    weak_distance: float,
    t: Translator,
) -> str:
    # Whole sentences per case: word order differs between languages.
    values = {
        "category": category_text(category, t) if category else "",
        "price": t.number(max_price) if max_price is not None else "",
    }
    if category and max_price is not None:
        heading = t("Most similar products in {category} under {price}", **values)
    elif category:
        heading = t("Most similar products in {category}", **values)
    elif max_price is not None:
        heading = t("Most similar products under {price}", **values)
    else:
        heading = t("Most similar products")
    if result.best_distance is not None and result.best_distance > weak_distance:
        heading += " " + t("(no close match: these are the nearest we have)")
    return heading


# ---- everything else -------------------------------------------------------------------


async def not_a_photo(update: Update, context: Context) -> None:
    """A short, helpful answer to anything that is not a photo: never silence."""
    message = update.effective_message
    if message is None:
        return
    if message.document is not None:
        text = NOT_AN_IMAGE_FILE
    elif message.sticker is not None:
        text = STICKER
    elif message.voice is not None or message.audio is not None:
        text = VOICE
    elif message.video is not None or message.video_note is not None or message.animation:
        text = VIDEO
    else:
        text = NOT_A_PHOTO
    t = await services_of(context).translator_for(update.effective_user)
    await message.reply_text(t(text))


async def unknown_command(update: Update, context: Context) -> None:
    if update.effective_message:
        t = await services_of(context).translator_for(update.effective_user)
        await update.effective_message.reply_text(t(UNKNOWN_COMMAND))


# ---- result buttons --------------------------------------------------------------------


def _on_message(query: CallbackQuery, data: str) -> bool:
    """Whether the pressed message really carries a button with this data. Telegram fills in
    the message, but a modified client can send any data: what is not on it is refused."""
    message = query.message
    if not isinstance(message, Message):
        return False
    markup = message.reply_markup
    if markup is None:
        return False
    return any(button.callback_data == data for row in markup.inline_keyboard for button in row)


async def button(update: Update, context: Context) -> None:
    """Result buttons. Callback data is checked again on every press: a forged one does nothing."""
    query = update.callback_query
    if query is None:
        return
    services = services_of(context)
    t = await services.translator_for(query.from_user)
    action = parse_callback(query.data)
    if action is None or query.data is None or not _on_message(query, query.data):
        await query.answer(t(BUTTON_INVALID))
        return
    if action.action == "fb":
        await _feedback(query, services, action, t)
        return
    wait = await services.within_limit(query.from_user.id)
    if wait is not None:
        await query.answer(_wait_text(wait, t))
        return
    await _search_again(query, context, services, action, t)


async def _feedback(
    query: CallbackQuery, services: BotServices, action: CallbackAction, t: Translator
) -> None:
    vote = 1 if action.arg == "up" else -1
    history = services.engine.history
    stored = await services.engine.run(
        history.record_feedback,
        action.search_id,
        user_ref=services.user_ref(query.from_user.id),
        vote=vote,
    )
    if not stored:
        await query.answer(t(BUTTON_INVALID))
    else:
        await query.answer(t(THANKS_UP if vote > 0 else THANKS_DOWN))


async def _search_again(
    query: CallbackQuery,
    context: Context,
    services: BotServices,
    action: CallbackAction,
    t: Translator,
) -> None:
    """ "Cheaper" and "all categories": the logged search run again with other filters."""
    searcher = services.engine.searcher
    search = (
        searcher.search_cheaper if action.action == "cheaper" else searcher.search_all_categories
    )
    try:
        result = await services.engine.run(
            search, action.search_id, services.who(query.from_user.id)
        )
    except CatalogError as exc:
        await query.answer(str(exc)[:200], show_alert=True)
        return
    await query.answer()
    assert isinstance(query.message, Message)  # checked by _on_message
    chat_id = query.message.chat.id
    if action.action == "cheaper":
        heading = t("Cheaper lookalikes")
        if not result.items:
            await context.bot.send_message(chat_id=chat_id, text=t(NOTHING_CHEAPER))
            return
    else:
        heading = t("Most similar products in all categories")
        if not result.items:
            await context.bot.send_message(chat_id=chat_id, text=no_results_text(result, t))
            return
    await send_results(context.bot, chat_id, result, services, heading=heading, t=t)


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """In order: the first that matches an update handles it. Edited messages never re-run."""
    new = filters.UpdateType.MESSAGE
    image_document: filters.BaseFilter = filters.Document.IMAGE
    for extension in ("jpg", "jpeg", "png", "webp"):  # image files sent as octet-stream
        image_document |= filters.Document.FileExtension(extension)
    return [
        CommandHandler("start", deep_links.start, filters=new),
        CommandHandler("help", help_command, filters=new),
        MessageHandler(new & (filters.PHOTO | image_document), photo),
        CallbackQueryHandler(button),
    ]


def fallback_handlers() -> list[BaseHandler[Update, Context, None]]:
    """Registered after everyone else's handlers: unknown commands, then anything else."""
    new = filters.UpdateType.MESSAGE
    return [
        MessageHandler(new & filters.COMMAND, unknown_command),
        MessageHandler(new & filters.ChatType.PRIVATE, not_a_photo),
    ]
