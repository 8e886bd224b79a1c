"""Customers' data: /privacy says what is kept, for how long, and what never is; /forget, after
a confirmation button, deletes everything kept under the customer's reference."""

from __future__ import annotations

import logging

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot.context import Context
from lookalike.i18n import N_, Translator
from search import ForgottenRows

log = logging.getLogger(__name__)

FORGET_YES = "forget:yes"
FORGET_NO = "forget:no"

PRIVACY = N_(
    "<b>What we keep when you search</b>\n"
    "• A reference to you made from your Telegram account with a secret key: not your name, "
    "username, phone number or Telegram id.\n"
    "• Each search: when, its filters, the products found, and a list of numbers our model "
    "computed from your picture (to find cheaper lookalikes without the photo).\n"
    "• Your 👍/👎 and the products you open from results.\n"
    "• When you last searched, for one minute (the limit of searches per minute).\n"
    "• The language you chose with /language, until you choose again or send /forget.\n\n"
    "<b>For how long</b>\n"
    "{days} days. Then each search is deleted and only counted in anonymous daily totals "
    "(how many searches, ratings and opens); links to shared results expire.\n\n"
    "<b>Never kept</b>\n"
    "Your photo itself: it stays in memory during the search only, never on disk or in our "
    "logs. Nor a fingerprint (hash) of it.\n\n"
    "<b>Deleting it</b>\n"
    "Send /forget: everything kept under your reference is deleted at once."
)
CONFIRM = N_(
    "This deletes everything we keep about you: your searches (and links to them you shared), "
    "your ratings, the products you opened and your chosen language. It cannot be undone. "
    "Delete it?"
)
CANCELLED = N_("OK, nothing was deleted.")
NOTHING_KEPT = N_("Done. We kept nothing about you, so there was nothing to delete.")
PRIVATE_ONLY = N_("Please send /forget to me in a private chat.")
BUTTON_INVALID = N_("Sorry, this button doesn't work any more. Send /forget again.")
DELETE_YES = N_("Yes, delete my data")
DELETE_NO = N_("No, keep it")


def forgotten_text(rows: ForgottenRows, t: Translator) -> str:
    """What /forget deleted, in words (each count in its language's plural form)."""
    if rows.total == 0:
        return t(NOTHING_KEPT)
    parts = [
        t.n("{count} search", "{count} searches", rows.searches),
        t.n("{count} rating", "{count} ratings", rows.feedback),
        t.n("{count} opened product", "{count} opened products", rows.opens),
    ]
    if rows.rate_limit_events:
        parts.append(
            t.n(
                "{count} search-limit entry", "{count} search-limit entries", rows.rate_limit_events
            )
        )
    if rows.languages:
        parts.append(t("your chosen language"))
    if rows.drafts:
        parts.append(t.n("{count} unfinished /add", "{count} unfinished /adds", rows.drafts))
    return t("Done: deleted {items}. We keep nothing else about you.", items=", ".join(parts))


async def privacy(update: Update, context: Context) -> None:
    message = update.effective_message
    if message is None:
        return
    services = context.bot_data.services
    t = await services.translator_for(update.effective_user)
    days = t.number(services.engine.history.retention_days)
    await message.reply_text(t(PRIVACY, days=days), parse_mode=ParseMode.HTML)


async def forget(update: Update, context: Context) -> None:
    """Ask first: the deletion happens on the button."""
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return
    t = await context.bot_data.services.translator_for(update.effective_user)
    if chat.type != ChatType.PRIVATE:
        await message.reply_text(t(PRIVATE_ONLY))
        return
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(t(DELETE_YES), callback_data=FORGET_YES),
                InlineKeyboardButton(t(DELETE_NO), callback_data=FORGET_NO),
            ]
        ]
    )
    await message.reply_text(t(CONFIRM), reply_markup=keyboard)


def _pressed_on_own_question(query: CallbackQuery) -> bool:
    """The data is on the pressed message (a modified client can send any data), and that
    message is in the presser's own private chat, where /forget asked."""
    message = query.message
    if not isinstance(message, Message) or message.reply_markup is None:
        return False
    if message.chat.type != ChatType.PRIVATE or message.chat.id != query.from_user.id:
        return False
    return any(
        button.callback_data == query.data
        for row in message.reply_markup.inline_keyboard
        for button in row
    )


async def forget_button(update: Update, context: Context) -> None:
    query = update.callback_query
    if query is None:
        return
    services = context.bot_data.services
    # Read before the deletion: the answer is in the language the question was asked in.
    t = await services.translator_for(query.from_user)
    if query.data not in (FORGET_YES, FORGET_NO) or not _pressed_on_own_question(query):
        await query.answer(t(BUTTON_INVALID))
        return
    if query.data == FORGET_NO:
        await query.answer()
        await query.edit_message_text(t(CANCELLED))
        return
    user_id = query.from_user.id
    engine = services.engine
    forgotten = await engine.run(
        engine.history.forget,
        services.user_ref(user_id),
        admin_user_id=user_id if services.is_admin(user_id) else None,
    )
    log.info("a customer's data was deleted on request: %d row(s)", forgotten.total)
    await query.answer()
    # The question becomes the answer: its buttons go, so it cannot be pressed twice.
    await query.edit_message_text(forgotten_text(forgotten, t))


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """Registered before the customers' handlers (whose button handler takes any data)."""
    new = filters.UpdateType.MESSAGE
    return [
        CommandHandler("privacy", privacy, filters=new),
        CommandHandler("forget", forget, filters=new),
        CallbackQueryHandler(forget_button, pattern=r"^forget:"),
    ]
