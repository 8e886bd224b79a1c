"""`lookalike serve`: one uvicorn server (one process, one event loop) over the engine opened
from Settings; the app's lifespan starts the engine's inference worker and loads the model."""

from __future__ import annotations

import logging
import secrets
import signal
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from lookalike.composition import open_engine
from lookalike.logs import configure_logging, redact_secret_in_logs
from lookalike.settings import Settings
from lookalike.upkeep import FeedSyncOutcome, Job, upkeep_jobs
from web.application import create_app
from web.config import web_config_from_settings

if TYPE_CHECKING:
    from search import SearchEngine
    from web.telegram import TelegramWebhook

log = logging.getLogger(__name__)

# The event loop and HTTP parser uvicorn runs on, for `serve` and the web tests alike: uvloop
# and httptools (C) rather than asyncio's loop and h11 (pure Python). On the 2-core EPYC, six
# alternating pairs of runs on an idle server: ~0.9 ms less a search (HTTP and the client
# 2.55 -> 2.1 ms, the server's steps around the engine 3.5 -> 3.1, medians); under load, no
# change beyond the VM's spread (docs/benchmarks.md, "A fourth day").
SERVER_STACK: dict[str, Any] = {"loop": "uvloop", "http": "httptools"}


class _StopRequestedError(Exception):
    """SIGTERM arrived. uvicorn handles the signal itself while it runs (finishing open
    requests), then raises it again once it has stopped; this handler turns that into a
    normal return, so the engine is closed (SQLite checkpoints its WAL) and the exit is 0."""


class ServeError(RuntimeError):
    """The server cannot start as configured; the message says why, in one line."""


def _on_sigterm(_signal: int, _frame: FrameType | None) -> None:
    raise _StopRequestedError


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    """Run until interrupted (Ctrl+C or SIGTERM: uvicorn finishes open requests first)."""
    configure_logging(settings)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _serve(settings, host=host, port=port)
    except (_StopRequestedError, KeyboardInterrupt):
        log.info("stopped")
        return 0
    except ServeError as error:
        log.error("%s", error)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def _telegram(settings: Settings, engine: SearchEngine) -> TelegramWebhook | None:
    """The bot on this server's webhook route when WEBHOOK_URL is set, else None."""
    if not settings.webhook_url:
        return None
    from bot.application import MissingTokenError, build_application
    from web.telegram import TelegramWebhook

    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        raise ServeError(
            "WEBHOOK_URL is set, so the bot shares this server, but TELEGRAM_BOT_TOKEN is not "
            "set: set it, or unset WEBHOOK_URL to serve the website alone"
        )
    secret = (
        settings.webhook_secret_token.get_secret_value()
        if settings.webhook_secret_token
        else secrets.token_urlsafe(32)
    )
    redact_secret_in_logs(secret)
    try:
        # The server runs the engine and its upkeep (create_app): each job once a process.
        application = build_application(settings, engine=engine, hosted=True)
    except MissingTokenError as error:
        raise ServeError(str(error)) from None
    return TelegramWebhook(application, webhook_url=settings.webhook_url, secret=secret)


def _upkeep(settings: Settings, engine: SearchEngine) -> list[Job]:
    """The process's repeating jobs (lookalike.upkeep), the feed's with FEED_URL set: the
    catalogue follows the shop's feed every FEED_SYNC_MINUTES (one process at a time: the
    sync takes a database lease)."""
    feed_url = settings.feed_url
    feed_sync: Callable[[], Awaitable[FeedSyncOutcome]] | None = None
    if feed_url:
        from feed import sync_feed, sync_options

        async def feed_sync() -> FeedSyncOutcome:
            return await sync_feed(engine, sync_options(settings, feed_url))

    return upkeep_jobs(
        engine,
        index_sync_seconds=settings.index_sync_seconds,
        feed_sync=feed_sync,
        feed_sync_minutes=settings.feed_sync_minutes,
    )


def _serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    engine = open_engine(settings)
    try:
        telegram = _telegram(settings, engine)
        app = create_app(
            engine,
            web_config_from_settings(settings),
            telegram=telegram,
            upkeep=_upkeep(settings, engine),
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host or settings.web_host,
                port=settings.web_port if port is None else port,
                # Our own logging setup (configure_logging) stays in charge.
                log_config=None,
                # X-Forwarded-For is read only from WEB_TRUSTED_PROXIES (web.limits).
                proxy_headers=False,
                server_header=False,
                timeout_graceful_shutdown=10,
                **SERVER_STACK,
            )
        )
        server.run()
        return 0 if server.started else 1
    finally:
        engine.close()
