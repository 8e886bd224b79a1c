"""The bot's repeating jobs on PTB's JobQueue: its own (the /add drafts nobody finished
expire) and, when it runs on its own, the per-process upkeep of lookalike.upkeep (the index
sync, the search log's retention, the feed schedule), written there once for every door.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram.ext import Application

from bot.context import Context
from bot.handlers import admin_add
from feed import sync_feed, sync_options
from lookalike.upkeep import FeedSyncOutcome, Job, upkeep_jobs

log = logging.getLogger(__name__)

DRAFT_JOB = "draft-expiry"
# Never two runs at once; a run that is late (the last one was slow) is merged, not queued.
JOB_OPTIONS = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}


def _callback(job: Job) -> Callable[[Context], Coroutine[Any, Any, None]]:
    async def run(_context: Context) -> None:
        await job.run_once()

    return run


def schedule(application: Application, *, upkeep: bool = True) -> None:  # type: ignore[type-arg]
    """Start the repeating jobs with the application (JobQueue starts with it). Without
    `upkeep` (a server hosts the bot and runs the upkeep itself), only the draft expiry."""
    services = application.bot_data.services
    job_queue = application.job_queue
    if job_queue is None:
        raise RuntimeError("the bot needs PTB's job queue: install python-telegram-bot[job-queue]")
    if upkeep:
        settings = services.settings
        feed_url = settings.feed_url
        feed_sync: Callable[[], Awaitable[FeedSyncOutcome]] | None = None
        if feed_url:

            async def feed_sync() -> FeedSyncOutcome:
                return await sync_feed(services.engine, sync_options(settings, feed_url))

        for job in upkeep_jobs(
            services.engine,
            index_sync_seconds=settings.index_sync_seconds,
            feed_sync=feed_sync,
            feed_sync_minutes=settings.feed_sync_minutes,
        ):
            job_queue.run_repeating(
                _callback(job),
                interval=job.interval_seconds,
                first=job.first_seconds,
                name=job.name,
                job_kwargs=JOB_OPTIONS,
            )
    job_queue.run_repeating(
        admin_add.expire_drafts,
        interval=admin_add.DRAFT_SWEEP_SECONDS,
        first=admin_add.DRAFT_SWEEP_SECONDS,
        name=DRAFT_JOB,
        job_kwargs=JOB_OPTIONS,
    )
    # APScheduler logs every run at INFO ("Running job ..."): every 2 s is noise.
    runs = logging.getLogger("apscheduler.executors.default")
    if runs.level == logging.NOTSET:
        runs.setLevel(logging.WARNING)
