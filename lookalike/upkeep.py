"""The per-process upkeep, written once for every door that runs an engine (the bot on its
own, `lookalike serve` with or without the bot's webhook): the engine's start (inference
worker, model loaded and run once, orphan files swept) and the repeating jobs (the index sync,
the search log's retention, the feed schedule).

The doors only choose how the jobs are timed: the bot through PTB's JobQueue
(bot/jobs.py), the web server with asyncio tasks (`run_repeating`, from its lifespan). Under
`lookalike serve` with the webhook the server runs them and the bot it hosts runs none, so each
job runs once a process. Several processes may each run them: the index sync is per process
by nature, the retention and the feed sync take a lease in the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from search import SearchEngine

log = logging.getLogger(__name__)

INDEX_SYNC_JOB = "index-sync"
RETENTION_JOB = "search-log-retention"
FEED_JOB = "feed-sync"
# Daily; the first run a few minutes after start (not at once: starting stays quick).
RETENTION_INTERVAL_SECONDS = 24 * 3600.0
RETENTION_FIRST_SECONDS = 300.0
# After start: let the process settle before the first scheduled feed sync.
FEED_FIRST_SECONDS = 60.0


class FeedSyncOutcome(Protocol):
    """What a feed sync answers (feed.SyncSummary), as far as the schedule logs it."""

    @property
    def status(self) -> str: ...  # "ok" | "busy" | "failed" | "refused"

    @property
    def message(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Job:
    """One repeating job: `run_once()` logs its own failures and never raises (a database
    hiccup is retried at the next turn)."""

    name: str
    run_once: Callable[[], Awaitable[None]]
    interval_seconds: float
    first_seconds: float


async def start_engine(engine: SearchEngine) -> int:
    """What a process does once before it serves: the inference worker started, the model
    loaded and run once (so the first customer does not wait for it), image files left by an
    interrupted change swept. Returns how many files were swept."""
    await engine.start()
    await engine.run(engine.warm_up)
    swept = await engine.run(engine.sweep_orphan_files)
    if swept:
        log.info("removed %d image file(s) left by an interrupted change", len(swept))
    return len(swept)


def upkeep_jobs(
    engine: SearchEngine,
    *,
    index_sync_seconds: float,
    feed_sync: Callable[[], Awaitable[FeedSyncOutcome]] | None = None,
    feed_sync_minutes: float = 60.0,
) -> list[Job]:
    """The repeating jobs of a process serving `engine`; the feed's only with `feed_sync`
    (one sync, as the door makes it from Settings: `sync_feed(engine, sync_options(...))`)."""

    async def sync_index() -> None:
        """Catalogue changes other processes committed (the bot, the command line, another
        web instance) reach this process's in-memory index. Quiet: it runs every few
        seconds, so each run logs at DEBUG, failures at WARNING."""
        try:
            applied = await engine.run(engine.models.sync)
        except Exception as exc:  # a database hiccup: the next run tries again
            log.warning("index sync failed (retrying): %s", exc)
            return
        log.debug("index sync: %d catalogue change(s) applied", applied)

    async def purge_expired() -> None:
        """Searches older than SEARCH_LOG_RETENTION_DAYS folded into daily counts."""
        try:
            await engine.run(engine.history.purge_expired)
        except Exception as exc:  # a database hiccup: tomorrow's run catches up
            log.warning("search log retention failed (retrying tomorrow): %s", exc)

    jobs = [
        Job(INDEX_SYNC_JOB, sync_index, index_sync_seconds, index_sync_seconds),
        Job(RETENTION_JOB, purge_expired, RETENTION_INTERVAL_SECONDS, RETENTION_FIRST_SECONDS),
    ]
    if feed_sync is not None:
        jobs.append(Job(FEED_JOB, _logged(feed_sync), feed_sync_minutes * 60, FEED_FIRST_SECONDS))
    for job in jobs:
        log.debug(
            "upkeep: %s every %g s, first in %g s",
            job.name,
            job.interval_seconds,
            job.first_seconds,
        )
    return jobs


def _logged(feed_sync: Callable[[], Awaitable[FeedSyncOutcome]]) -> Callable[[], Awaitable[None]]:
    async def run_once() -> None:
        """One scheduled feed sync, quiet when another process holds the lease."""
        try:
            outcome = await feed_sync()
        except Exception as exc:  # a bad category map, a database hiccup: next turn
            log.error("scheduled feed sync skipped: %s", exc)
            return
        level = {"busy": logging.DEBUG, "ok": logging.INFO}.get(outcome.status, logging.WARNING)
        log.log(level, "scheduled feed sync %s: %s", outcome.status, outcome.message)

    return run_once


async def run_repeating(job: Job) -> None:
    """For a server without a job queue: `job` at its times until the task is cancelled. A run
    that takes longer than the interval delays the next; runs never overlap."""
    await asyncio.sleep(job.first_seconds)
    while True:
        await job.run_once()
        await asyncio.sleep(job.interval_seconds)
