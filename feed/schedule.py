"""The scheduled sync for servers without a job queue (the web server): a task that syncs
every `minutes` until it is cancelled. The bot uses its job queue instead
(bot/handlers/feed.py). Either way the sync's lease lets one process run it at a time, so
every instance may schedule it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from feed.categories import CategoryMapError
from feed.options import SyncOptions
from feed.sync import SyncSummary, sync_feed
from search import SearchEngine

log = logging.getLogger(__name__)


async def sync_every(
    engine: SearchEngine,
    options: Callable[[], SyncOptions],
    *,
    minutes: float,
    first_delay_seconds: float = 60.0,
    on_done: Callable[[SyncSummary], None] | None = None,
) -> None:
    """Sync with `options()` (read again each time) every `minutes`; runs until cancelled.
    A failing sync is logged and tried again at the next turn; `on_done(summary)` after each."""
    await asyncio.sleep(first_delay_seconds)
    while True:
        try:
            summary = await sync_feed(engine, options())
        except CategoryMapError as exc:
            log.error("scheduled feed sync skipped: %s", exc)
        else:
            level = logging.DEBUG if summary.status == "busy" else logging.INFO
            if summary.status in ("failed", "refused"):
                level = logging.WARNING
            log.log(level, "scheduled feed sync %s: %s", summary.status, summary.message)
            if on_done is not None:
                on_done(summary)
        await asyncio.sleep(minutes * 60)
