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
from bot.render import product_card, status_text
from bot.replies import send_card_photo
from lookalike.i18n import ENGLISH, N_, Translator
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
    "remove": N_("Usage: /remove SKU (hides the product from results; it stays in the catalogue)"),
    "restore": N_("Usage: /restore SKU (shows a removed product again)"),
    "stock": N_("Usage: /stock SKU in|out"),
    "colour": N_("Usage: /colour SKU red (or auto: the colour computed from its photos)"),
    "product": N_("Usage: /product SKU"),
}
# The engine's reason (search/ speaks English) after a translated opening.
NOTHING_CHANGED = N_("Nothing changed: {reason}.")
NO_SUCH_PRODUCT = N_("There is no product with SKU {sku}.")
REMOVED = N_(
    "🗑 <b>{sku}</b> is removed: customers no longer see it. It stays in the catalogue; "
    "/restore {sku} brings it back."
)
RESTORED = N_("↩️ <b>{sku}</b> is restored: {visibility}.")
COLOURED = N_("🎨 <b>{sku}</b> is {colour}.")
NO_COLOUR = N_("🎨 <b>{sku}</b> is of no known colour.")
IN_STOCK = N_("📦 <b>{sku}</b> is in stock: {visibility}.")
OUT_OF_STOCK = N_("📭 <b>{sku}</b> is out of stock: customers no longer see it.")
VISIBLE_AGAIN = N_("customers can find it again")
STILL_HIDDEN = N_("customers still don't see it: it is {status}")


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
        await req.fail(action, raw_sku, NOTHING_CHANGED, reason=exc)
        return None
    await req.audit(action, "ok", product.sku, status=product.status)
    return product


def _visibility(product: ProductRecord, t: Translator) -> str:
    if product.active:
        return t(VISIBLE_AGAIN)
    return t(STILL_HIDDEN, status=escape(status_text(product, t)))


def _changed_text(action: str, product: ProductRecord, t: Translator) -> str:
    """The reply to a change, HTML; codes (the SKU, the colour) as the admin types them."""
    sku = escape(product.sku)
    if action == "remove":
        return t(REMOVED, sku=sku)
    if action == "restore":
        return t(RESTORED, sku=sku, visibility=_visibility(product, t))
    if action == "colour":
        if product.colour is None:
            return t(NO_COLOUR, sku=sku)
        return t(COLOURED, sku=sku, colour=escape(product.colour))
    if product.in_stock:
        return t(IN_STOCK, sku=sku, visibility=_visibility(product, t))
    return t(OUT_OF_STOCK, sku=sku)


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
        await req.reply(_changed_text(action, product, req.t))


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
        await req.fail("product", args[0], NO_SUCH_PRODUCT, sku=args[0][:64])
        return
    await req.audit("product", "ok", record.sku)
    card = product_card(record, staff=True, t=req.t)
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
    text = stats_text(figures, quality, weak_distance=weak, t=req.t)
    if req.services.settings.feed_url:  # the shop's feed keeps the catalogue current
        heading = escape(req.t("Product feed"))
        text += f"\n<b>{heading}</b>\n" + await feed.stats_line(context, req.t)
    await req.audit("stats", "ok")
    await req.reply(text)


def stats_text(
    figures: CatalogStats,
    quality: QualityReport,
    *,
    weak_distance: float,
    t: Translator = ENGLISH,
) -> str:
    no_searches = t("no searches yet")
    median = (
        t("{ms} ms", ms=t.number(round(figures.median_latency_ms)))
        if figures.median_latency_ms is not None
        else no_searches
    )
    weak = (
        t(
            "{share} of searches (best distance over {distance})",
            share=t.percent(figures.weak_share * 100),
            distance=t.number(weak_distance),
        )
        if figures.weak_share is not None
        else no_searches
    )
    numbers = {
        "active": t.number(figures.products_active),
        "total": t.number(figures.products_total),
        "today": t.number(figures.searches_today),
        "week": t.number(figures.searches_week),
        "up": t.number(figures.thumbs_up),
        "down": t.number(figures.thumbs_down),
    }
    if figures.weak_share_all_time is not None:
        weak += t("; all time {share}", share=t.percent(figures.weak_share_all_time * 100))
    return "\n".join(
        [
            _bold(t("Catalogue")),
            t("Products: {active} active of {total}", **numbers),
            _bold(t("Searches")),
            t("Today: {today} · last 7 days: {week}", **numbers),
            t("Median search time (7 days): {median}", median=median),
            t("Weak best match: {weak}", weak=weak),
            _bold(t("Feedback")),
            t("👍 {up} · 👎 {down}", **numbers),
            *quality_lines(quality, t),
        ]
    )


def _bold(text: str) -> str:
    return f"<b>{escape(text)}</b>"


def quality_lines(quality: QualityReport, t: Translator = ENGLISH) -> list[str]:
    """Per model and metric: searches, votes, the thumbs-up rate, opens per search."""
    lines = [_bold(t("Quality by model and metric"))]
    recent = {(row.model_name, row.metric): row for row in quality.recent}
    if not quality.all_time:
        return [*lines, t("No searches yet")]
    for row in quality.all_time:
        week = recent.get((row.model_name, row.metric))
        lines.append(f"<i>{escape(row.model_name)} · {escape(row.metric)}</i>")
        lines.append(t("7 days: {figures}", figures=_quality_figures(week, t)))
        lines.append(t("All time: {figures}", figures=_quality_figures(row, t)))
    return lines


def _quality_figures(row: ModelQuality | None, t: Translator) -> str:
    if row is None:
        return t("no searches")
    rate = (
        t("{rate} 👍", rate=t.percent(row.thumbs_up_rate * 100))
        if row.thumbs_up_rate is not None
        else t("no votes")
    )
    per_search = (
        t.number(row.opens_per_search, decimals=2) if row.opens_per_search is not None else "–"
    )
    return t(
        "{searches} · 👍 {up} 👎 {down} ({rate}) · {opens} ({per_search} per search)",
        searches=t.n("{count} search", "{count} searches", row.searches),
        up=t.number(row.thumbs_up),
        down=t.number(row.thumbs_down),
        rate=rate,
        opens=t.n("{count} open", "{count} opens", row.opens),
        per_search=per_search,
    )


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """In order; registered before everyone else's. Edited messages never re-run a command."""
    new = filters.UpdateType.MESSAGE
    return [
        *admin_add.handlers(),
        *(_visibility_handler(action) for action in ("remove", "restore", "stock", "colour")),
        CommandHandler("product", product, filters=new),
        CommandHandler("stats", stats, filters=new),
    ]
