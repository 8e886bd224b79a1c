"""Customers: /start (with deep links), /help, searching by photo, result buttons, and a
helpful answer to anything else."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from telegram import Message, Update
from telegram.constants import ChatAction, ParseMode
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotServices, Context
from bot.query import parse_callback, parse_caption, parse_deep_link
from bot.render import product_card
from bot.replies import chat_action, send_results
from search.preprocess import InvalidImageError
from search.service import CatalogError, SearchResult

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # a bot cannot download more from Telegram

WELCOME = (
    "👋 Send me a photo of a shoe or a piece of clothing and I'll show you the "
    "8 most similar products in our shop, with prices and links.\n\n"
    "Tip: add a caption to narrow it down, e.g. <i>sneakers under 60</i>."
)
HELP = (
    "<b>How to search</b>\n"
    "• Send a photo (or an image file: JPEG, PNG, WebP).\n"
    "• Caption it with a category or a price limit: <i>boots</i>, <i>under 60</i>.\n"
    "• Use the buttons under the results to rate them, find cheaper ones or share them."
)
NOT_A_PHOTO = (
    "I search by photo 📷. Please send a picture of the item you like (as a photo or an "
    "image file). /help shows how."
)
SEARCH_FAILED = "Sorry, something went wrong while searching. Please try again in a moment."


def services_of(context: Context) -> BotServices:
    return context.bot_data.services


async def start(update: Update, context: Context) -> None:
    message = update.effective_message
    if message is None:
        return
    payload = context.args[0] if context.args else None
    if payload is None:
        await message.reply_text(WELCOME, parse_mode=ParseMode.HTML)
        return
    link = parse_deep_link(payload)
    if link is None:
        await message.reply_text(
            "That link is not valid (it may be cut short). " + WELCOME, parse_mode=ParseMode.HTML
        )
        return
    services = services_of(context)
    user_ref = services.user_ref(update.effective_user.id if update.effective_user else 0)
    if link.kind == "p":
        try:
            product, result = await asyncio.to_thread(
                services.search.similar_to_product, link.id, user_ref=user_ref, source="link"
            )
        except CatalogError:
            await message.reply_text(
                "Sorry, that product is no longer available. " + WELCOME, parse_mode=ParseMode.HTML
            )
            return
        if not product.active:
            await message.reply_text(
                "Sorry, that product is no longer available. " + WELCOME, parse_mode=ParseMode.HTML
            )
            return
        await message.reply_text(product_card(product), parse_mode=ParseMode.HTML)
        await send_results(
            context.bot, message.chat_id, result, services, heading="Similar products"
        )
        return
    shared = await asyncio.to_thread(services.search.get_search, link.id)
    if shared is None:
        await message.reply_text(
            "Sorry, those results are no longer available. " + WELCOME, parse_mode=ParseMode.HTML
        )
        return
    await send_results(context.bot, message.chat_id, shared, services, heading="Shared results")


async def help_command(update: Update, context: Context) -> None:
    if update.effective_message:
        await update.effective_message.reply_text(HELP, parse_mode=ParseMode.HTML)


def _largest_photo_file(message: Message) -> tuple[str, int | None]:
    if message.photo:
        size = message.photo[-1]
        return size.file_id, size.file_size
    assert message.document is not None
    return message.document.file_id, message.document.file_size


async def photo(update: Update, context: Context) -> None:
    """A photo or an image document: search, reply with the album and the list."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    services = services_of(context)
    wait = services.rate_limiter.try_acquire(user.id)
    if wait is not None:
        await message.reply_text(
            f"You're searching very fast 🙂 Please wait {max(1, round(wait))} s and try again."
        )
        return
    file_id, size = _largest_photo_file(message)
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        await message.reply_text(
            "That file is too large (over 20 MB). Please send a smaller photo."
        )
        return
    categories = await asyncio.to_thread(services.search.categories)
    wanted = parse_caption(message.caption, categories)
    async with chat_action(context.bot, message.chat_id, ChatAction.UPLOAD_PHOTO):
        telegram_file = await context.bot.get_file(file_id)
        data = bytes(await telegram_file.download_as_bytearray())
        result = await search_bytes(
            services, data, user_id=user.id, category=wanted.category, max_price=wanted.max_price
        )
    if isinstance(result, str):
        await message.reply_text(result)
        return
    heading = _heading(
        result, wanted.category, wanted.max_price, services.settings.weak_match_distance
    )
    await send_results(context.bot, message.chat_id, result, services, heading=heading)


async def search_bytes(
    services: BotServices,
    data: bytes,
    *,
    user_id: int,
    category: str | None = None,
    max_price: Decimal | None = None,
    source: str = "telegram",
) -> SearchResult | str:
    """Search with image bytes; a str is the message to show instead (bad image)."""
    try:
        prepared = await asyncio.to_thread(services.search.prepare, data)
    except InvalidImageError as exc:
        return f"I couldn't read that image: {exc} Please send a photo (JPEG, PNG or WebP)."
    vector = await services.inference.embed(prepared)
    return await asyncio.to_thread(
        services.search.search_vector,
        vector,
        category=category,
        max_price=max_price,
        user_ref=services.user_ref(user_id),
        source=source,
        query_hash=prepared.content_hash,
    )


def _heading(
    result: SearchResult, category: str | None, max_price: Decimal | None, weak_distance: float
) -> str:
    parts = ["Most similar products"]
    if category:
        parts.append(f"in {category.replace('_', ' ')}")
    if max_price is not None:
        parts.append(f"under {max_price}")
    heading = " ".join(parts)
    if result.best_distance is not None and result.best_distance > weak_distance:
        heading += " (no close match: these are the nearest we have)"
    return heading


async def not_a_photo(update: Update, context: Context) -> None:
    message = update.effective_message
    if message is None:
        return
    if message.document is not None:
        await message.reply_text(
            "That file isn't an image I can search with. Please send a photo (JPEG, PNG or WebP)."
        )
        return
    await message.reply_text(NOT_A_PHOTO, parse_mode=ParseMode.HTML)


async def unknown_command(update: Update, context: Context) -> None:
    if update.effective_message:
        await update.effective_message.reply_text(
            "I don't know that command. /help shows what I can do."
        )


async def button(update: Update, context: Context) -> None:
    """Result buttons. Callback data is checked again on every press: a forged one does nothing."""
    query = update.callback_query
    if query is None or query.from_user is None:
        return
    action = parse_callback(query.data)
    if action is None:
        await query.answer("This button is no longer valid.")
        return
    services = services_of(context)
    user_ref = services.user_ref(query.from_user.id)
    if action.action == "fb":
        vote = 1 if action.arg == "up" else -1
        stored = await asyncio.to_thread(
            services.search.record_feedback, action.search_id, user_ref=user_ref, vote=vote
        )
        await query.answer(
            "Thanks for your feedback!" if stored else "This search is no longer available."
        )
        return
    chat_id = query.message.chat.id if query.message else query.from_user.id
    if services.rate_limiter.try_acquire(query.from_user.id) is not None:
        await query.answer("Please wait a moment before searching again.")
        return
    try:
        if action.action == "cheaper":
            result = await asyncio.to_thread(
                services.search.search_cheaper,
                action.search_id,
                user_ref=user_ref,
                source="telegram",
            )
            heading = "Cheaper lookalikes"
        else:
            result = await asyncio.to_thread(
                services.search.search_all_categories,
                action.search_id,
                user_ref=user_ref,
                source="telegram",
            )
            heading = "Most similar products in all categories"
    except CatalogError as exc:
        await query.answer(str(exc)[:200], show_alert=True)
        return
    await query.answer()
    if not result.items:
        await context.bot.send_message(
            chat_id=chat_id, text="Nothing cheaper looks similar right now."
        )
        return
    await send_results(context.bot, chat_id, result, services, heading=heading)


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """In order: the first that matches an update handles it. Edited messages never re-run."""
    new = filters.UpdateType.MESSAGE
    image_document = filters.Document.IMAGE | filters.Document.FileExtension("webp")
    return [
        CommandHandler("start", start, filters=new),
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
