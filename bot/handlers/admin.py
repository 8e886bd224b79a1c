"""Admins: keep the catalogue current from a private chat.

/add (see admin_add), /remove, /restore, /stock, /product and /stats. Only the numeric user ids
in ADMIN_IDS may use them, only in a private chat; every use, allowed or not, is audited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from html import escape

from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CommandHandler, filters

from bot.context import Context
from bot.handlers import admin_add
from bot.handlers.admin_common import AdminRequest, authorise
from bot.render import product_card
from db.records import ProductRecord
from search.fields import FieldError, clean_sku
from search.service import CatalogError, CatalogStats

log = logging.getLogger(__name__)

USAGE = {
    "remove": "Usage: /remove SKU (hides the product from results; it stays in the catalogue)",
    "restore": "Usage: /restore SKU (shows a removed product again)",
    "stock": "Usage: /stock SKU in|out",
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
    """Run a catalogue change off the event loop; audit it; None (and the admin told) if it
    could not be done."""
    try:
        sku = clean_sku(raw_sku)
        product = await asyncio.to_thread(change, sku)
    except (FieldError, CatalogError) as exc:
        await req.fail(action, raw_sku, f"Nothing changed: {exc}.")
        return None
    await req.audit(action, "ok", product.sku, status=product.status)
    return product


def _visibility(product: ProductRecord) -> str:
    if product.active:
        return "customers can find it again"
    return f"customers still don't see it: it is {escape(product.status)}"


async def remove(update: Update, context: Context) -> None:
    req = await authorise(update, context, "remove", _target(context))
    if req is None:
        return
    args = _args(context)
    if len(args) != 1:
        await req.fail("remove", _target(context), USAGE["remove"])
        return
    product = await _change(req, "remove", args[0], req.services.search.remove_product)
    if product is not None:
        sku = escape(product.sku)
        await req.reply(
            f"🗑 <b>{sku}</b> is removed: customers no longer see it. It stays in the "
            f"catalogue; /restore {sku} brings it back."
        )


async def restore(update: Update, context: Context) -> None:
    req = await authorise(update, context, "restore", _target(context))
    if req is None:
        return
    args = _args(context)
    if len(args) != 1:
        await req.fail("restore", _target(context), USAGE["restore"])
        return
    product = await _change(req, "restore", args[0], req.services.search.restore_product)
    if product is not None:
        await req.reply(f"↩️ <b>{escape(product.sku)}</b> is restored: {_visibility(product)}.")


async def stock(update: Update, context: Context) -> None:
    req = await authorise(update, context, "stock", _target(context))
    if req is None:
        return
    args = _args(context)
    if len(args) != 2 or args[1].lower() not in ("in", "out"):
        await req.fail("stock", _target(context), USAGE["stock"])
        return
    in_stock = args[1].lower() == "in"

    def change(sku: str) -> ProductRecord:
        return req.services.search.set_stock(sku, in_stock=in_stock)

    product = await _change(req, "stock", args[0], change)
    if product is None:
        return
    sku = escape(product.sku)
    if in_stock:
        await req.reply(f"📦 <b>{sku}</b> is in stock: {_visibility(product)}.")
    else:
        await req.reply(f"📭 <b>{sku}</b> is out of stock: customers no longer see it.")


async def product(update: Update, context: Context) -> None:
    """The product's card with staff details, on its first photo when it has one."""
    req = await authorise(update, context, "product", _target(context))
    if req is None:
        return
    args = _args(context)
    if len(args) != 1:
        await req.fail("product", _target(context), USAGE["product"])
        return
    record = await asyncio.to_thread(req.services.search.get_product, args[0].strip())
    if record is None:
        await req.fail("product", args[0], f"There is no product with SKU {args[0][:64]}.")
        return
    await req.audit("product", "ok", record.sku)
    card = product_card(record, staff=True)
    if not record.images or not await _send_card_photo(req, record, card):
        await req.reply(card)


async def _send_card_photo(req: AdminRequest, record: ProductRecord, card: str) -> bool:
    """The first photo with the card as its caption: by cached file_id, else uploaded."""
    image = record.images[0]
    sent: Message | None = None
    if image.telegram_file_id:
        try:
            sent = await req.message.reply_photo(
                image.telegram_file_id, caption=card, parse_mode=ParseMode.HTML
            )
        except BadRequest as exc:  # a file_id Telegram no longer knows: upload instead
            log.warning("cached file_id of image %s refused: %s", image.id, exc)
    if sent is None:
        try:
            data = await asyncio.to_thread(req.services.search.media.read, image.file_name)
        except OSError as exc:
            log.error("image file of %s is unreadable: %s", record.sku, exc)
            return False
        sent = await req.message.reply_photo(data, caption=card, parse_mode=ParseMode.HTML)
        if sent.photo:
            await asyncio.to_thread(
                req.services.search.remember_telegram_file_id, image.id, sent.photo[-1].file_id
            )
    return True


async def stats(update: Update, context: Context) -> None:
    req = await authorise(update, context, "stats")
    if req is None:
        return
    weak = req.services.settings.weak_match_distance
    figures = await asyncio.to_thread(req.services.search.stats, weak_distance=weak)
    await req.audit("stats", "ok")
    await req.reply(stats_text(figures, weak_distance=weak))


def stats_text(figures: CatalogStats, *, weak_distance: float) -> str:
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
        ]
    )


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """In order; registered before everyone else's. Edited messages never re-run a command."""
    new = filters.UpdateType.MESSAGE
    return [
        *admin_add.handlers(),
        CommandHandler("remove", remove, filters=new),
        CommandHandler("restore", restore, filters=new),
        CommandHandler("stock", stock, filters=new),
        CommandHandler("product", product, filters=new),
        CommandHandler("stats", stats, filters=new),
    ]
