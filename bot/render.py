"""Text and keyboards the bot sends. Everything from the catalogue is HTML-escaped here."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from db.records import ProductRecord
from search.service import ResultItem, SearchResult

CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
MESSAGE_LIMIT = 4096

# Callback data: short, parsed strictly on every press (see bot.callbacks).
FEEDBACK_UP = "fb:{search_id}:up"
FEEDBACK_DOWN = "fb:{search_id}:down"
CHEAPER = "cheaper:{search_id}"
ALL_CATEGORIES = "all:{search_id}"


def price_text(product: ProductRecord) -> str:
    if product.price is None:
        return "price on request"
    return f"{product.price} {product.currency}"


def _utf16_len(text: str) -> int:
    """Telegram counts message lengths in UTF-16 code units (an emoji can count twice)."""
    return len(text.encode("utf-16-le")) // 2


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def result_caption(item: ResultItem) -> str:
    """The caption under one photo of the album: rank, name, price, similarity."""
    # Names are at most 200 characters; shortened before escaping so no entity is ever cut.
    name = _shorten(item.product.name, CAPTION_LIMIT // 2)
    return (
        f"<b>{item.rank}.</b> {escape(name)}\n"
        f"{escape(price_text(item.product))} · {item.similarity:.0f}% similar"
    )


def deep_link(bot_username: str, payload: str) -> str:
    return f"https://t.me/{bot_username}?start={payload}"


def results_message(result: SearchResult, *, heading: str) -> str:
    """The follow-up message: every result with its link, price and similarity.

    Lines are dropped whole (never cut inside a tag) when the message would be too long."""
    lines = [f"<b>{escape(heading)}</b>"]
    visible = _utf16_len(heading)
    for item in result.items:
        product = item.product
        name = escape(product.name)
        if product.url:
            name = f'<a href="{escape(product.url, quote=True)}">{name}</a>'
        line = f"{item.rank}. {name} · {escape(price_text(product))} · {item.similarity:.0f}%"
        shown = _utf16_len(f"{item.rank}. {product.name} · {price_text(product)} · 100%") + 1
        if visible + shown > MESSAGE_LIMIT - 2:
            lines.append("…")
            break
        lines.append(line)
        visible += shown
    return "\n".join(lines)


def share_url(bot_username: str, share_token: str) -> str:
    """Telegram's share dialog, pre-filled with a link that opens these results in the bot."""
    link = deep_link(bot_username, f"r_{share_token}")
    query = urlencode({"url": link, "text": "Look what I found with this photo search"})
    return f"https://t.me/share/url?{query}"


def results_keyboard(result: SearchResult, *, bot_username: str) -> InlineKeyboardMarkup | None:
    """Feedback, "cheaper", "all categories" and Share; None for a search that was not logged."""
    search_id = result.search_id
    if search_id is None:
        return None
    rows: list[list[InlineKeyboardButton]] = [
        [
            InlineKeyboardButton(
                "👍 Good matches", callback_data=FEEDBACK_UP.format(search_id=search_id)
            ),
            InlineKeyboardButton(
                "👎 Not useful", callback_data=FEEDBACK_DOWN.format(search_id=search_id)
            ),
        ]
    ]
    first = result.items[0].product if result.items else None
    if first is not None and first.price is not None and first.price > 0:
        rows.append(
            [
                InlineKeyboardButton(
                    f"💸 Cheaper than {first.price} {first.currency}",
                    callback_data=CHEAPER.format(search_id=search_id),
                )
            ]
        )
    if result.filters.get("category"):
        rows.append(
            [
                InlineKeyboardButton(
                    "🔎 Search all categories",
                    callback_data=ALL_CATEGORIES.format(search_id=search_id),
                )
            ]
        )
    if result.share_token:
        rows.append(
            [
                InlineKeyboardButton(
                    "📤 Share these results", url=share_url(bot_username, result.share_token)
                )
            ]
        )
    return InlineKeyboardMarkup(rows)


def product_card(product: ProductRecord, *, staff: bool = False) -> str:
    lines = [
        f"<b>{escape(product.name)}</b>",
        f"SKU {escape(product.sku)} · {escape(price_text(product))}",
    ]
    if product.category:
        lines.append(f"Category: {escape(product.category)}")
    if product.url:
        lines.append(f'<a href="{escape(product.url, quote=True)}">Product page</a>')
    if staff:
        lines.append(f"Status: {product.status} · {len(product.images)} image(s) · id {product.id}")
    return "\n".join(lines)
