"""Text and keyboards the bot sends. Everything from the catalogue is HTML-escaped here."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import urlencode

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from lookalike.i18n import ENGLISH, N_, Translator
from lookalike.i18n.colours import colour_text
from lookalike.i18n.vocabulary import vocabulary
from search import ProductRecord, ResultItem, SearchResult

CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
MESSAGE_LIMIT = 4096

# Callback data: short, parsed strictly on every press (see bot.callbacks).
FEEDBACK_UP = "fb:{search_id}:up"
FEEDBACK_DOWN = "fb:{search_id}:down"
CHEAPER = "cheaper:{search_id}"
ALL_CATEGORIES = "all:{search_id}"


def price_text(product: ProductRecord, t: Translator = ENGLISH) -> str:
    """ "€78.99" in English, "78,99 €" in Russian (Babel's CLDR data)."""
    if product.price is None:
        return t("price on request")
    return t.price(product.price, product.currency)


def category_text(category: str, t: Translator = ENGLISH) -> str:
    """A category code as the customer's language names it ("rain_boot": "резиновые сапоги")."""
    return vocabulary(t.language).category_name(category)


def _price_and_colour(product: ProductRecord, t: Translator) -> str:
    """ "€78.99 · red", or the price alone for a product with no colour yet (escaped)."""
    shown = [price_text(product, t)]
    if product.colour:
        shown.append(colour_text(product.colour, t))
    return escape(" · ".join(shown))


def _utf16_len(text: str) -> int:
    """Telegram counts message lengths in UTF-16 code units (an emoji can count twice)."""
    return len(text.encode("utf-16-le")) // 2


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_caption(item: ResultItem, t: Translator = ENGLISH) -> str:
    """The caption under one photo of the album: rank, name (as the shop wrote it), price,
    colour, similarity."""
    # Names are at most 200 characters; shortened before escaping so no entity is ever cut.
    name = _shorten(item.product.name, CAPTION_LIMIT // 2)
    similar = t("{percent} similar", percent=t.percent(item.similarity))
    return (
        f"<b>{t.number(item.rank)}.</b> {escape(name)}\n"
        f"{_price_and_colour(item.product, t)} · {escape(similar)}"
    )


def deep_link(bot_username: str, payload: str) -> str:
    return f"https://t.me/{bot_username}?start={payload}"


def open_link(bot_username: str, share_token: str, rank: int) -> str:
    """The deep link that opens result `rank` of a logged search in the bot (and counts it)."""
    return deep_link(bot_username, f"o_{share_token}_{rank}")


def inferred_note(result: SearchResult, t: Translator = ENGLISH) -> str | None:
    """Says which category the search guessed (the caption named none), or None."""
    if not result.inferred_category:
        return None
    category = escape(category_text(result.inferred_category, t))
    return t("Showing <b>{category}</b>, the category of most lookalikes.", category=category)


def results_message(
    result: SearchResult,
    *,
    heading: str,
    bot_username: str | None = None,
    link_ranks: Mapping[int, int] | None = None,
    t: Translator = ENGLISH,
) -> str:
    """The follow-up message: every result with its link, price, colour and similarity.

    A logged search's names link to `o_` deep links that open the product in the bot (rank
    as logged: `link_ranks` maps product ids to it when the shown ranks differ, as in a shared
    result set); otherwise to the product page. Lines are dropped whole (never cut inside a
    tag) when the message would be too long."""
    lines = [f"<b>{escape(heading)}</b>"]
    visible = _utf16_len(heading)
    note = inferred_note(result, t)
    if note is not None:
        lines.append(note)
        visible += _utf16_len(note) + 1  # at least what it shows
    for item in result.items:
        product = item.product
        name = escape(product.name)
        rank = link_ranks.get(product.id) if link_ranks is not None else item.rank
        if bot_username and result.share_token and rank is not None:
            link = open_link(bot_username, result.share_token, rank)
            name = f'<a href="{escape(link, quote=True)}">{name}</a>'
        elif product.url:
            name = f'<a href="{escape(product.url, quote=True)}">{name}</a>'
        price, percent = _price_and_colour(product, t), t.percent(item.similarity)
        line = f"{t.number(item.rank)}. {name} · {price} · {escape(percent)}"
        shown = _utf16_len(f"{item.rank}. {product.name} · {price} · {percent}") + 1
        if visible + shown > MESSAGE_LIMIT - 2:
            lines.append("…")
            break
        lines.append(line)
        visible += shown
    return "\n".join(lines)


def share_url(bot_username: str, share_token: str, t: Translator = ENGLISH) -> str:
    """Telegram's share dialog, pre-filled with a link that opens these results in the bot."""
    link = deep_link(bot_username, f"r_{share_token}")
    query = urlencode({"url": link, "text": t("Look what I found with this photo search")})
    return f"https://t.me/share/url?{query}"


def results_keyboard(
    result: SearchResult, *, bot_username: str, t: Translator = ENGLISH
) -> InlineKeyboardMarkup | None:
    """Feedback, "cheaper", "all categories" and Share; None for a search that was not logged."""
    search_id = result.search_id
    if search_id is None:
        return None
    rows: list[list[InlineKeyboardButton]] = [
        [
            InlineKeyboardButton(
                t("👍 Good matches"), callback_data=FEEDBACK_UP.format(search_id=search_id)
            ),
            InlineKeyboardButton(
                t("👎 Not useful"), callback_data=FEEDBACK_DOWN.format(search_id=search_id)
            ),
        ]
    ]
    first = result.items[0].product if result.items else None
    if first is not None and first.price is not None and first.price > 0:
        rows.append(
            [
                InlineKeyboardButton(
                    t("💸 Cheaper than {price}", price=t.price(first.price, first.currency)),
                    callback_data=CHEAPER.format(search_id=search_id),
                )
            ]
        )
    if result.filters.get("category"):
        rows.append(
            [
                InlineKeyboardButton(
                    t("🔎 Search all categories"),
                    callback_data=ALL_CATEGORIES.format(search_id=search_id),
                )
            ]
        )
    if result.share_token:
        rows.append(
            [
                InlineKeyboardButton(
                    t("📤 Share these results"),
                    url=share_url(bot_username, result.share_token, t),
                )
            ]
        )
    return InlineKeyboardMarkup(rows)


def product_keyboard(
    product: ProductRecord, *, bot_username: str, t: Translator = ENGLISH
) -> InlineKeyboardMarkup:
    """Under a product's card: its shop page (when it has one) and its lookalikes."""
    buttons = [
        InlineKeyboardButton(t("🔎 More like this"), url=deep_link(bot_username, f"p_{product.id}"))
    ]
    if product.url:
        buttons.insert(0, InlineKeyboardButton(t("🛍 Product page"), url=product.url))
    return InlineKeyboardMarkup([buttons])


# A product's status as ProductRecord.status names it, for staff.
STATUS_NAMES: Mapping[str, str] = {
    "in stock": N_("in stock"),
    "out of stock": N_("out of stock"),
    "removed": N_("removed"),
}


def status_text(product: ProductRecord, t: Translator = ENGLISH) -> str:
    status = product.status
    return t(STATUS_NAMES[status]) if status in STATUS_NAMES else status


def product_card(product: ProductRecord, *, staff: bool = False, t: Translator = ENGLISH) -> str:
    """A product's card; staff see its status and images too, and the category and colour as
    the codes they type in commands."""
    lines = [
        f"<b>{escape(product.name)}</b>",
        t("SKU {sku} · {price}", sku=escape(product.sku), price=escape(price_text(product, t))),
    ]
    if product.category:
        category = product.category if staff else category_text(product.category, t)
        lines.append(t("Category: {category}", category=escape(category)))
    if product.colour:
        colour = product.colour if staff else colour_text(product.colour, t)
        lines.append(t("Colour: {colour}", colour=escape(colour)))
    if product.url:
        url = escape(product.url, quote=True)
        lines.append(f'<a href="{url}">{escape(t("Product page"))}</a>')
    if staff:
        images = t.n("{count} image", "{count} images", len(product.images))
        status = t("Status: {status}", status=escape(status_text(product, t)))
        lines.append(f"{status} · {escape(images)} · id {product.id}")
    return "\n".join(lines)
