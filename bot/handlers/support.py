"""Support staff: product links, inline mode, searching an image URL."""

from __future__ import annotations

import logging
import re
from html import escape

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InlineQueryResultCachedPhoto,
    InputTextMessageContent,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.ext import BaseHandler, CommandHandler, InlineQueryHandler, MessageHandler, filters

from bot.context import Context
from bot.handlers import customer
from bot.render import deep_link, price_text, product_card, status_text
from bot.replies import chat_action, send_results
from lookalike.i18n import N_, Translator
from lookalike.i18n.colours import colour_text
from search import FieldError, ProductRecord, SearchResult, UrlFetchError, clean_sku, fetch_image

log = logging.getLogger(__name__)

STAFF_ONLY = N_(
    "Sorry, that command is for the shop's support team. Send me a photo of an item and "
    "I'll find similar products."
)
LINK_USAGE = N_("Usage: <code>/link SKU</code>, e.g. <code>/link SNK-001</code>")
INVALID_SKU = N_("That is not a valid SKU: {reason}")
NO_SUCH_SKU = N_(
    "There is no product with SKU <code>{sku}</code>. Check the spelling (SKUs are case-sensitive)."
)
LINK_FOR_CUSTOMERS = N_("Link for customers:")
LINK_UNAVAILABLE = N_("⚠️ This product is {status}: the link will say it is unavailable.")
URL_FAILED = N_("I couldn't get an image from that link: {reason}")
URL_HEADING = N_("Most similar products to the image at that link")
NO_CLOSE_MATCH = N_("(no close match: these are the nearest we have)")
INLINE_MAX_RESULTS = 20  # Telegram allows 50; a short list is easier to pick from
INLINE_EMPTY_QUERY_RESULTS = 5
INLINE_QUERY_MAX_CHARS = 64
INLINE_CACHE_SECONDS = 10  # catalogue changes show up quickly

# Anything that looks like a link, whatever its scheme: fetch_image refuses all but http(s)
# with a clear message, which helps more than "send a photo".
_LINK = re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


async def link(update: Update, context: Context) -> None:
    """/link SKU: the deep link that opens a product and its lookalikes."""
    message, user = update.effective_message, update.effective_user
    if message is None:
        return
    services = context.bot_data.services
    t = await services.translator_for(user)
    if not services.is_staff(user.id if user else None):
        await message.reply_text(t(STAFF_ONLY))
        return
    if not context.args:
        await message.reply_text(t(LINK_USAGE), parse_mode=ParseMode.HTML)
        return
    try:
        sku = clean_sku(context.args[0])
    except FieldError as exc:
        await message.reply_text(t(INVALID_SKU, reason=exc))
        return
    product = await services.engine.run(services.engine.catalog.get, sku)
    if product is None:
        await message.reply_text(t(NO_SUCH_SKU, sku=escape(sku)), parse_mode=ParseMode.HTML)
        return
    url = deep_link(context.bot.username, f"p_{product.id}")
    card = product_card(product, staff=True, t=t)
    text = f"{card}\n\n{escape(t(LINK_FOR_CUSTOMERS))}\n{escape(url)}"
    if not product.active:
        text += "\n" + escape(t(LINK_UNAVAILABLE, status=status_text(product, t)))
    await message.reply_text(text, parse_mode=ParseMode.HTML, disable_web_page_preview=True)


async def inline_query(update: Update, context: Context) -> None:
    """`@bot SKU or name` in any chat: product cards to share, in the asker's language (so
    personal: Telegram would otherwise cache one language's cards for everyone).

    The text is also read as a photo's caption is (`red pump under 80`: a colour, a category,
    a price limit, in any of our languages): the products whose SKU or name contains the text
    come first, then those of that colour, category and price. There is no photo to rank by,
    so the colour asked for is a filter here (the product's colour as the shop shows it).
    """
    query = update.inline_query
    if query is None:
        return
    services = context.bot_data.services
    engine = services.engine
    t = await services.translator_for(query.from_user)
    text = query.query.strip()[:INLINE_QUERY_MAX_CHARS]
    limit = INLINE_MAX_RESULTS if text else INLINE_EMPTY_QUERY_RESULTS
    found = await engine.run(engine.catalog.find, text, limit=limit)
    wanted = await customer.caption_filters(services, text)
    if wanted.any:
        named = {product.id for product in found}
        matching = await engine.run(
            engine.catalog.find,
            "",
            limit=limit,
            category=wanted.category,
            colour=wanted.colour,
            max_price=wanted.max_price,
        )
        found += [product for product in matching if product.id not in named]
    bot_username = context.bot.username
    results = [_inline_result(p, bot_username, t) for p in found if p.active]
    await query.answer(
        results[:INLINE_MAX_RESULTS], cache_time=INLINE_CACHE_SECONDS, is_personal=True
    )


def _inline_result(
    product: ProductRecord, bot_username: str, t: Translator
) -> InlineQueryResultCachedPhoto | InlineQueryResultArticle:
    similar = deep_link(bot_username, f"p_{product.id}")
    buttons = [InlineKeyboardButton(t("🔎 Similar products"), url=similar)]
    if product.url:
        buttons.insert(0, InlineKeyboardButton(t("🛍 Product page"), url=product.url))
    keyboard = InlineKeyboardMarkup([buttons])
    card = product_card(product, t=t)
    # "SKU footwear_0042 · €78.99 · red" (the colour once computed)
    description = t("SKU {sku} · {price}", sku=product.sku, price=price_text(product, t))
    if product.colour:
        description += " · " + colour_text(product.colour, t)
    cached = next((i.telegram_file_id for i in product.images if i.telegram_file_id), None)
    if cached is not None:
        return InlineQueryResultCachedPhoto(
            id=str(product.id),
            photo_file_id=cached,
            title=product.name,
            description=description,
            caption=card,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
        )
    return InlineQueryResultArticle(
        id=str(product.id),
        title=product.name,
        description=description,
        input_message_content=InputTextMessageContent(
            card, parse_mode=ParseMode.HTML, disable_web_page_preview=True
        ),
        reply_markup=keyboard,
    )


def first_link(message: Message) -> str | None:
    """The first link in a message: a hidden text link, a link entity, or a link in the text."""
    for entity, text in message.parse_entities(
        [MessageEntity.TEXT_LINK, MessageEntity.URL]
    ).items():
        candidate = entity.url if entity.type == MessageEntity.TEXT_LINK else text
        if candidate:
            # Telegram also links "shop.com/a.jpg": such a link is taken as https.
            return candidate if "://" in candidate else f"https://{candidate}"
    match = _LINK.search(message.text or "")
    return match.group(0).rstrip(_TRAILING) if match else None


async def search_url(update: Update, context: Context) -> None:
    """A staff member sends an image URL: search with that image, as with a photo."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    services = context.bot_data.services
    url = first_link(message)
    if not services.is_staff(user.id) or url is None:
        await customer.not_a_photo(update, context)
        return
    t = await services.translator_for(user)
    if not await customer.within_rate_limit(message, services, user.id, t):
        return
    # The rest of the message narrows the search like a photo's caption ("boots under 60").
    rest = _LINK.sub(" ", (message.text or "").replace(url, " "))
    wanted = await customer.caption_filters(services, rest)
    settings = services.settings
    result: SearchResult | str
    async with chat_action(context.bot, message.chat_id, ChatAction.UPLOAD_PHOTO):
        try:
            data = await fetch_image(
                url,
                max_bytes=settings.max_image_bytes,
                timeout=settings.url_fetch_timeout_seconds,
                allow_private=settings.url_fetch_allow_private,
            )
        except UrlFetchError as exc:
            result = t(URL_FAILED, reason=exc)
        else:
            result = await customer.search_bytes(
                services, data, services.who(user.id, "url"), wanted, t
            )
    if isinstance(result, str):
        await message.reply_text(result, disable_web_page_preview=True)
        return
    heading = t(URL_HEADING)
    if result.best_distance is not None and result.best_distance > settings.weak_match_distance:
        heading += " " + t(NO_CLOSE_MATCH)
    await send_results(context.bot, message.chat_id, result, services, heading=heading, t=t)


def handlers() -> list[BaseHandler[Update, Context, None]]:
    new = filters.UpdateType.MESSAGE
    return [
        CommandHandler("link", link, filters=new),
        InlineQueryHandler(inline_query),
    ]


def message_handlers() -> list[BaseHandler[Update, Context, None]]:
    """Registered after the customers' photo handler, before the fallbacks. A customer's link
    gets the customers' usual "send a photo" answer (and nothing is fetched)."""
    has_link = (
        filters.Regex(_LINK)
        | filters.Entity(MessageEntity.URL)
        | filters.Entity(MessageEntity.TEXT_LINK)
    )
    return [
        MessageHandler(
            filters.UpdateType.MESSAGE
            & filters.ChatType.PRIVATE
            & filters.TEXT
            & ~filters.COMMAND
            & has_link,
            search_url,
        )
    ]
