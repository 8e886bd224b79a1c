"""The bot, assembled in one place: `build_application(settings)`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.constants import ChatType
from telegram.error import Forbidden, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes

from bot import jobs
from bot.context import BotData, BotServices, Context
from bot.drafts import DraftStore
from bot.handlers import admin, admin_add, customer, feed, language, privacy, support
from db import UserLanguages
from lookalike.composition import open_engine
from lookalike.i18n import ENGLISH, LANGUAGES, N_, Translator, translator
from lookalike.limits import SEARCH, RateLimiter
from lookalike.logs import redact_secret_in_logs
from lookalike.settings import Settings
from lookalike.upkeep import start_engine
from search import SearchEngine

log = logging.getLogger(__name__)

# The customers' menu, sent once per language (Telegram shows the one of the client's language).
CUSTOMER_COMMANDS = [
    ("start", N_("What this bot does")),
    ("help", N_("How to search by photo")),
    ("language", N_("Choose the language I answer in")),
    ("privacy", N_("What we keep about you, and for how long")),
    ("forget", N_("Delete everything we keep about you")),
]


def customer_commands(t: Translator = ENGLISH) -> list[BotCommand]:
    return [BotCommand(command, t(description)) for command, description in CUSTOMER_COMMANDS]


ADMIN_COMMANDS = [
    BotCommand("add", "Add a product (photo captioned /add SKU | Name | Price | URL | Category)"),
    BotCommand("remove", "Hide a product: /remove SKU"),
    BotCommand("restore", "Show a removed product again: /restore SKU"),
    BotCommand("stock", "In or out of stock: /stock SKU in|out"),
    BotCommand("colour", "Correct a product's colour: /colour SKU red"),
    BotCommand("product", "A product's card: /product SKU"),
    BotCommand("stats", "Searches, feedback and catalogue figures"),
    BotCommand("sync", "Sync the catalogue with the shop's product feed now"),
    BotCommand("link", "A link that opens a product: /link SKU"),
]
SUPPORT_COMMANDS = [BotCommand("link", "A link that opens a product: /link SKU")]


class MissingTokenError(RuntimeError):
    pass


def bot_token(settings: Settings) -> str:
    """The token, from now on kept out of every log line; MissingTokenError without one."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        raise MissingTokenError(
            "TELEGRAM_BOT_TOKEN is not set: get a token from @BotFather and put it in .env "
            "or the environment"
        )
    token = settings.telegram_bot_token.get_secret_value()
    redact_secret_in_logs(token)
    return token


def build_application(
    settings: Settings, *, engine: SearchEngine | None = None, hosted: bool = False
) -> Application:  # type: ignore[type-arg]
    """The Application with every handler, its services in bot_data. No network I/O here.

    `hosted`: another server runs this process (`lookalike serve` with the webhook) and with
    it the per-process upkeep: the engine's start and stop, the warm-up, the orphan sweep,
    the index sync, the retention and the feed schedule. The bot then runs none of them, so
    each runs once per process; only the bot's own job (the /add drafts' expiry) is left."""
    token = bot_token(settings)
    engine = engine or open_engine(settings)
    services = BotServices(
        settings=settings,
        engine=engine,
        # Everything a second instance must see lives in the database, not in this process:
        # the rate limit, /add drafts, result links (search_log), opened results.
        rate_limiter=RateLimiter(engine.sessions, {SEARCH: settings.searches_per_minute}),
        drafts=DraftStore(engine.sessions, timeout_seconds=admin_add.CONVERSATION_TIMEOUT_SECONDS),
        # Derived from the token, so user references cannot be reversed by trying user ids.
        user_ref_key=hashlib.sha256(b"lookalike-user-ref\0" + token.encode()).digest(),
        hosted=hosted,
        languages=UserLanguages(engine.sessions),
    )
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_file_base_url)
        .context_types(ContextTypes(bot_data=BotData))
        # A slow search must not hold up /start from someone else.
        .concurrent_updates(True)
        # Waits out 429 Too Many Requests (retry_after) and retries a bounded number of times.
        .rate_limiter(AIORateLimiter(max_retries=3))
        .connect_timeout(10)
        .read_timeout(20)
        .write_timeout(60)
        .media_write_timeout(60)
        .get_updates_read_timeout(40)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .build()
    )
    application.bot_data.services = services
    application.add_handlers(admin_add.draft_handlers(), group=-1)
    for handler in (
        privacy.handlers()
        + language.handlers()
        + admin.handlers()
        + feed.handlers()
        + support.handlers()
        + customer.handlers()
        + support.message_handlers()
        + customer.fallback_handlers()
    ):
        application.add_handler(handler)
    application.add_error_handler(_on_error)
    jobs.schedule(application, upkeep=not hosted)
    return application


async def _post_init(application: Application) -> None:  # type: ignore[type-arg]
    """Before the first update: model loaded and warmed up, orphans swept, menu set."""
    services: BotServices = application.bot_data.services
    engine = services.engine
    if not services.hosted:
        await start_engine(engine)
    bot = application.bot
    await bot.set_my_commands(customer_commands())
    for code in LANGUAGES[1:]:
        await bot.set_my_commands(customer_commands(translator(code)), language_code=code)
    staff = services.settings.admin_ids | services.settings.support_ids
    for user_id in sorted(staff):
        commands = ADMIN_COMMANDS if services.is_admin(user_id) else SUPPORT_COMMANDS
        with contextlib.suppress(TelegramError):  # staff who never opened the bot
            await bot.set_my_commands(
                customer_commands() + commands, scope=BotCommandScopeChat(chat_id=user_id)
            )
    status = engine.status()
    log.info(
        "ready: @%s, %d products searchable, model %s",
        bot.username,
        status.products_searchable,
        status.model_name,
    )


async def _post_stop(application: Application) -> None:  # type: ignore[type-arg]
    services: BotServices = application.bot_data.services
    if not services.hosted:
        await services.engine.stop()


async def _on_error(update: object, context: Context) -> None:
    """Log the failure and tell the person something went wrong: never silence."""
    error = context.error
    if isinstance(error, Forbidden):
        log.info("a user blocked the bot: %s", error)
        return
    log.error("error while handling an update", exc_info=error)
    if isinstance(update, Update) and update.effective_chat is not None:
        chat = update.effective_chat
        if chat.type != ChatType.PRIVATE and update.effective_message is None:
            return
        with contextlib.suppress(TelegramError):
            services: BotServices = context.bot_data.services
            try:
                t = await services.translator_for(update.effective_user)
            except Exception:  # the database may be what failed: the apology still goes
                t = ENGLISH
            await context.bot.send_message(chat_id=chat.id, text=t(customer.SEARCH_FAILED))


@contextlib.asynccontextmanager
async def running(
    application: Application,  # type: ignore[type-arg]
    *,
    poll_timeout: int = 10,
) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    """Run the application with long polling inside the current event loop, the same steps
    run_polling takes (initialize, post_init, polling, start), and stop it cleanly."""
    await application.initialize()
    try:
        if application.post_init:
            await application.post_init(application)
        assert application.updater is not None
        await application.updater.start_polling(
            poll_interval=0, timeout=poll_timeout, allowed_updates=Update.ALL_TYPES
        )
        await application.start()
        try:
            yield application
        finally:
            if application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
                if application.post_stop:
                    await application.post_stop(application)
    finally:
        await application.shutdown()
