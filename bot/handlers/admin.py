"""Admins: keep the catalogue current from a private chat.

/add (see admin_add), /remove, /restore, /stock, /colour, /product and /stats. Only the numeric
user ids in ADMIN_IDS may use them, only in a private chat; every use, allowed or not, is
audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from html import escape

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler, filters

from bot.context import Context
from bot.handlers import admin_add, feed
from bot.handlers.admin_common import AdminRequest, authorise
from bot.render import product_card
from bot.replies import send_card_photo
from search import (
    CatalogError,
    CatalogStats,
    FieldError,
    ModelQuality,
    ProductRecord,
    QualityReport,
    SearchEngine,
    clean_colour,
    clean_sku,
    correct_colour,
)

log = logging.getLogger(__name__)

USAGE = {
    "remove": "Usage: /remove SKU (hides the product from results; it stays in the catalogue)",
    "restore": "Usage: /restore SKU (shows a removed product again)",
    "stock": "Usage: /stock SKU in|out",
    "colour": "Usage: /colour SKU red (or auto: the colour computed from its photos)",
    "product": "Usage: /product SKU",
}


def _args(context: Context) -> list[str]:
    return list(context.args or [])


def _target(context: Context) -> str | None:
    args = _args(context)
    return args[0][:64] if args else None


async def _change(
    req: AdminRequest, action: str, raw_sku: str, change: Callable[[str], ProductRecord]
) -> ProductRecord | None:
    """Run a catalogue change; audit it; None (and the admin told) if it could not be done."""
    try:
        sku = clean_sku(raw_sku)
        product = await req.services.engine.run(change, sku)
    except (FieldError, CatalogError) as exc:
        await req.fail(action, raw_sku, f"Nothing changed: {exc}.")
        return None
    await req.audit(action, "ok", product.sku, status=product.status)
    return product


def _visibility(product: ProductRecord) -> str:
    if product.active:
        return "customers can find it again"
    return f"customers still don't see it: it is {escape(product.status)}"


def _changed_text(action: str, product: ProductRecord) -> str:
    sku = escape(product.sku)
    if action == "remove":
        return (
            f"🗑 <b>{sku}</b> is removed: customers no longer see it. It stays in the "
            f"catalogue; /restore {sku} brings it back."
        )
    if action == "restore":
        return f"↩️ <b>{sku}</b> is restored: {_visibility(product)}."
    if action == "colour":
        return f"🎨 <b>{sku}</b> is {escape(product.colour or 'of no known colour')}."
    if product.in_stock:
        return f"📦 <b>{sku}</b> is in stock: {_visibility(product)}."
    return f"📭 <b>{sku}</b> is out of stock: customers no longer see it."


def _args_valid(action: str, args: list[str]) -> bool:
    if action == "stock":
        return len(args) == 2 and args[1].lower() in ("in", "out")
    if action == "colour":
        return len(args) >= 2
    return len(args) == 1


async def change_visibility(update: Update, context: Context, action: str) -> None:
    """/remove SKU, /restore SKU, /stock SKU in|out: whether customers see a product;
    /colour SKU NAME: its colour, corrected."""
    req = await authorise(update, context, action, _target(context))
    if req is None:
        return
    args = _args(context)
    if not _args_valid(action, args):
        await req.fail(action, _target(context), USAGE[action])
        return
    catalog = req.services.engine.catalog
    changes: dict[str, Callable[[str], ProductRecord]] = {
        "remove": catalog.remove,
        "restore": catalog.restore,
        "stock": partial(catalog.set_stock, in_stock=args[-1].lower() == "in"),
        "colour": partial(_set_colour, req.services.engine, " ".join(args[1:])),
    }
    product = await _change(req, action, args[0], changes[action])
    if product is not None:
        await req.reply(_changed_text(action, product))


def _set_colour(engine: SearchEngine, colour: str, sku: str) -> ProductRecord:
    return correct_colour(engine, sku, clean_colour(colour))  # FieldError: an unknown colour


def _visibility_handler(action: str) -> CommandHandler[Context, None]:
    async def handle(update: Update, context: Context) -> None:
        await change_visibility(update, context, action)

    return CommandHandler(action, handle, filters=filters.UpdateType.MESSAGE)


async def product(update: Update, context: Context) -> None:
    """The product's card with staff details, on its first photo when it has one."""
    req = await authorise(update, context, "product", _target(context))
    if req is None:
        return
    args = _args(context)
    if len(args) != 1:
        await req.fail("product", _target(context), USAGE["product"])
        return
    engine = req.services.engine
    record = await engine.run(engine.catalog.get, args[0].strip())
    if record is None:
        await req.fail("product", args[0], f"There is no product with SKU {args[0][:64]}.")
        return
    await req.audit("product", "ok", record.sku)
    card = product_card(record, staff=True)
    chat_id = req.message.chat_id
    if not await send_card_photo(context.bot, chat_id, record, req.services, caption=card):
        await req.reply(card)


async def stats(update: Update, context: Context) -> None:
    req = await authorise(update, context, "stats")
    if req is None:
        return
    weak = req.services.settings.weak_match_distance
    engine = req.services.engine
    figures = await engine.run(engine.history.stats, weak_distance=weak)
    quality = await engine.run(engine.history.quality_report)
    text = stats_text(figures, quality, weak_distance=weak)
    if req.services.settings.feed_url:  # the shop's feed keeps the catalogue current
        text += "\n<b>Product feed</b>\n" + await feed.stats_line(context)
    await req.audit("stats", "ok")
    await req.reply(text)


def stats_text(figures: CatalogStats, quality: QualityReport, *, weak_distance: float) -> str:
    median = (
        f"{figures.median_latency_ms:.0f} ms"
        if figures.median_latency_ms is not None
        else "no searches yet"
    )
    weak = (
        f"{figures.weak_share:.0%} of searches (best distance over {weak_distance:g})"
        if figures.weak_share is not None
        else "no searches yet"
    )
    if figures.weak_share_all_time is not None:
        weak += f"; all time {figures.weak_share_all_time:.0%}"
    return "\n".join(
        [
            "<b>Catalogue</b>",
            f"Products: {figures.products_active} active of {figures.products_total}",
            "<b>Searches</b>",
            f"Today: {figures.searches_today} · last 7 days: {figures.searches_week}",
            f"Median search time (7 days): {median}",
            f"Weak best match: {weak}",
            "<b>Feedback</b>",
            f"👍 {figures.thumbs_up} · 👎 {figures.thumbs_down}",
            *quality_lines(quality),
        ]
    )


def quality_lines(quality: QualityReport) -> list[str]:
    """Per model and metric: searches, votes, the thumbs-up rate, opens per search."""
    lines = ["<b>Quality by model and metric</b>"]
    recent = {(row.model_name, row.metric): row for row in quality.recent}
    if not quality.all_time:
        return [*lines, "No searches yet"]
    for row in quality.all_time:
        week = recent.get((row.model_name, row.metric))
        lines.append(f"<i>{escape(row.model_name)} · {escape(row.metric)}</i>")
        lines.append(f"7 days: {_quality_figures(week)}")
        lines.append(f"All time: {_quality_figures(row)}")
    return lines


def _quality_figures(row: ModelQuality | None) -> str:
    if row is None:
        return "no searches"
    rate = f"{row.thumbs_up_rate:.0%} 👍" if row.thumbs_up_rate is not None else "no votes"
    per_search = f"{row.opens_per_search:.2f}" if row.opens_per_search is not None else "–"
    return (
        f"{_count(row.searches, 'search', 'searches')} · "
        f"👍 {row.thumbs_up} 👎 {row.thumbs_down} ({rate}) · "
        f"{_count(row.opens, 'open', 'opens')} ({per_search} per search)"
    )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """In order; registered before everyone else's. Edited messages never re-run a command."""
    new = filters.UpdateType.MESSAGE
    return [
        *admin_add.handlers(),
        *(_visibility_handler(action) for action in ("remove", "restore", "stock", "colour")),
        CommandHandler("product", product, filters=new),
        CommandHandler("stats", stats, filters=new),
    ]
