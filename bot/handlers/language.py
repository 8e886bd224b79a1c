"""/language: the customer chooses the language the bot answers in (remembered per user in the
database, so every instance uses it; /forget deletes it). Without a choice the bot follows the
Telegram client's language_code."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from bot.context import Context
from lookalike.i18n import LANGUAGES, N_, supported, translator

CALLBACK_PREFIX = "lang:"
# Each language's name in itself: a customer who cannot read the current language finds theirs.
NAMES = {"en": "English", "ru": "Русский", "es": "Español", "fa": "فارسی"}

CHOOSE = N_("Which language should I answer in? You can also send /language {codes}.")
CHOSEN = N_("Done: I will answer in English from now on.")
UNKNOWN = N_("I don't speak {given} yet. Choose one of: {codes}.")
BUTTON_INVALID = N_("Sorry, this button doesn't work any more. Send /language again.")


def _keyboard() -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(NAMES[code], callback_data=CALLBACK_PREFIX + code)
        for code in LANGUAGES
    ]
    return InlineKeyboardMarkup([buttons[:2], buttons[2:]])


async def _choose(context: Context, user_id: int, language: str) -> str:
    """Remember `language` for this user; the confirmation, in that language."""
    services = context.bot_data.services
    await services.engine.run(services.languages.choose, services.user_ref(user_id), language)
    return translator(language)(CHOSEN)


async def language_command(update: Update, context: Context) -> None:
    """`/language` (buttons) or `/language ru`."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    t = await context.bot_data.services.translator_for(user)
    codes = ", ".join(LANGUAGES)
    if not context.args:
        await message.reply_text(t(CHOOSE, codes=codes), reply_markup=_keyboard())
        return
    language = supported(context.args[0])
    if language is None:
        await message.reply_text(t(UNKNOWN, given=context.args[0][:20], codes=codes))
        return
    await message.reply_text(await _choose(context, user.id, language))


async def language_button(update: Update, context: Context) -> None:
    query = update.callback_query
    if query is None or query.data is None:
        return
    language = supported(query.data.removeprefix(CALLBACK_PREFIX))
    message = query.message
    on_message = (
        isinstance(message, Message)
        and message.reply_markup is not None
        and any(
            button.callback_data == query.data
            for row in message.reply_markup.inline_keyboard
            for button in row
        )
    )
    if language is None or not on_message:
        t = await context.bot_data.services.translator_for(query.from_user)
        await query.answer(t(BUTTON_INVALID))
        return
    await query.answer()
    await query.edit_message_text(await _choose(context, query.from_user.id, language))


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """Registered before the customers' handlers (whose button handler takes any data)."""
    return [
        CommandHandler("language", language_command, filters=filters.UpdateType.MESSAGE),
        CallbackQueryHandler(language_button, pattern=r"^lang:"),
    ]
