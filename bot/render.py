"""Text and keyboards the bot sends. Everything from the catalogue is HTML-escaped here."""

from __future__ import annotations

from html import escape

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


def result_caption(item: ResultItem) -> str:
    """The caption under one photo of the album: rank, name, price, similarity."""
    text = (
        f"<b>{item.rank}.</b> {escape(item.product.name)}\n"
        f"{escape(price_text(item.product))} · {item.similarity:.0f}% similar"
    )
    return text[:CAPTION_LIMIT]


def deep_link(bot_username: str, payload: str) -> str:
    return f"https://t.me/{bot_username}?start={payload}"


def results_message(result: SearchResult, *, heading: str) -> str:
    """The follow-up message: every result with its link, price and similarity."""
    lines = [f"<b>{escape(heading)}</b>"]
    for item in result.items:
        product = item.product
        name = escape(product.name)
        if product.url:
            name = f'<a href="{escape(product.url, quote=True)}">{name}</a>'
        lines.append(
            f"{item.rank}. {name} · {escape(price_text(product))} · {item.similarity:.0f}%"
        )
    text = "\n".join(lines)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def results_keyboard(result: SearchResult, *, bot_username: str) -> InlineKeyboardMarkup:
    search_id = result.search_id
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
    if first is not None and first.price is not None:
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
    share = deep_link(bot_username, f"r_{search_id}")
    rows.append(
        [InlineKeyboardButton("📤 Share these results", url=f"https://t.me/share/url?url={share}")]
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
