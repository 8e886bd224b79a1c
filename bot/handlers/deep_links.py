"""Customers' /start: the welcome, and the deep links it opens (t.me/<bot>?start=...): a
product's lookalikes (`p_<id>`), a product opened from a result list (`o_<token>_<rank>`,
counted), somebody's shared results (`r_<token>`). A link that leads nowhere still gets the
welcome, so the customer knows what to do."""

from __future__ import annotations

from telegram import Message, Update
from telegram.constants import ParseMode

from bot.context import BotServices, Context
from bot.query import DeepLink, parse_deep_link
from bot.render import product_card, product_keyboard
from bot.replies import send_card_photo, send_results
from lookalike.i18n import N_, Translator
from search import CatalogError, Requester

WELCOME = N_(
    "👋 Send me a photo of a shoe or a piece of clothing and I'll show you the "
    "8 most similar products in our shop, with prices and links.\n\n"
    "Tip: add a caption to narrow it down, e.g. <i>sneakers under 60</i>."
)
LINK_INVALID = N_("That link is not valid (it may be cut short).")
PRODUCT_GONE = N_("Sorry, that product is no longer available.")
# A valid-looking token that is not in the search log: its search passed the retention period
# (or its owner had it deleted with /forget).
SHARED_EXPIRED = N_(
    "⌛ Sorry, these shared results are no longer available: they expired. Searches are kept "
    "for {days} days, or less when the person who searched asks us to delete them."
)


def _with_welcome(first: str, t: Translator) -> str:
    """A sentence, then the welcome (a deep link that led nowhere still says what to do)."""
    return t(first) + " " + t(WELCOME)


async def start(update: Update, context: Context) -> None:
    """/start, or /start <payload> from a deep link (a product's lookalikes, shared results)."""
    message = update.effective_message
    if message is None:
        return
    services = context.bot_data.services
    t = await services.translator_for(update.effective_user)
    payload = context.args[0] if context.args else None
    if payload is None:
        await message.reply_text(t(WELCOME), parse_mode=ParseMode.HTML)
        return
    link = parse_deep_link(payload)
    if link is None:
        await message.reply_text(_with_welcome(LINK_INVALID, t), parse_mode=ParseMode.HTML)
        return
    who = services.who(update.effective_user.id if update.effective_user else 0, "link")
    if link.kind == "p":
        await _open_product_lookalikes(message, context, services, link.id, who, t)
    elif link.kind == "o":
        await _open_result(message, context, services, link, who.user_ref, t)
    else:
        await _open_shared_results(message, context, services, link, who.user_ref, t)


async def _open_product_lookalikes(
    message: Message,
    context: Context,
    services: BotServices,
    product_id: int,
    who: Requester,
    t: Translator,
) -> None:
    """`p_<id>`: the product's card, then its lookalikes."""
    engine = services.engine
    product = await engine.run(engine.catalog.get_by_id, product_id)
    if product is None or not product.active:
        await message.reply_text(_with_welcome(PRODUCT_GONE, t), parse_mode=ParseMode.HTML)
        return
    try:
        found, result = await engine.run(engine.searcher.similar_to_product, product_id, who)
    except CatalogError:  # no searchable image
        await message.reply_text(_with_welcome(PRODUCT_GONE, t), parse_mode=ParseMode.HTML)
        return
    await message.reply_text(product_card(found, t=t), parse_mode=ParseMode.HTML)
    await send_results(
        context.bot, message.chat_id, result, services, heading=t("Similar products"), t=t
    )


async def _open_result(
    message: Message,
    context: Context,
    services: BotServices,
    link: DeepLink,
    user_ref: str,
    t: Translator,
) -> None:
    """`o_<share token>_<rank>`: a product opened from a result list; counted, then its card
    on its photo, with its shop page and "more like this"."""
    assert link.token is not None and link.rank is not None  # parse_deep_link says so
    engine = services.engine
    opened = await engine.run(engine.history.record_open, link.token, link.rank, user_ref)
    if opened is None or opened.product_id is None:
        await message.reply_text(_with_welcome(LINK_INVALID, t), parse_mode=ParseMode.HTML)
        return
    product = await engine.run(engine.catalog.get_by_id, opened.product_id)
    if product is None or not product.active:
        await message.reply_text(_with_welcome(PRODUCT_GONE, t), parse_mode=ParseMode.HTML)
        return
    card = product_card(product, t=t)
    keyboard = product_keyboard(product, bot_username=context.bot.username, t=t)
    if not await send_card_photo(
        context.bot, message.chat_id, product, services, caption=card, reply_markup=keyboard
    ):
        await message.reply_text(
            card, parse_mode=ParseMode.HTML, reply_markup=keyboard, disable_web_page_preview=True
        )


async def _open_shared_results(
    message: Message,
    context: Context,
    services: BotServices,
    link: DeepLink,
    user_ref: str,
    t: Translator,
) -> None:
    """`r_<share token>`: somebody's shared result set (counted as an open of it)."""
    assert link.token is not None
    engine = services.engine
    shared = await engine.run(engine.searcher.get_search, share_token=link.token)
    if shared is None or shared.search_id is None:
        expired = t(SHARED_EXPIRED, days=t.number(engine.history.retention_days))
        await message.reply_text(expired + " " + t(WELCOME), parse_mode=ParseMode.HTML)
        return
    await engine.run(engine.history.record_open, link.token, None, user_ref)
    # Products no longer shown are left out, so the links carry the ranks as logged.
    ranks = await engine.run(engine.history.logged_ranks, shared.search_id)
    await send_results(
        context.bot,
        message.chat_id,
        shared,
        services,
        heading=t("Shared results"),
        link_ranks=ranks,
        t=t,
    )
