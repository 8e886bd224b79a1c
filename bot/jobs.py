"""Repeating jobs every bot instance runs (PTB's JobQueue), so that instances sharing one
database agree: catalogue changes made through another instance (or the command line) reach
this one's in-memory index within INDEX_SYNC_SECONDS, and /add drafts nobody finished expire.
Once a day, searches older than SEARCH_LOG_RETENTION_DAYS are folded into daily counts.
"""

from __future__ import annotations

import logging

from telegram.ext import Application

from bot.context import Context
from bot.handlers import admin_add

log = logging.getLogger(__name__)

SYNC_JOB = "index-sync"
DRAFT_JOB = "draft-expiry"
RETENTION_JOB = "search-log-retention"
# Daily; the first run a few minutes after start (not at once: starting stays quick). One
# process at a time runs it whatever the number of instances (a lease in the database).
RETENTION_INTERVAL_SECONDS = 24 * 3600
RETENTION_FIRST_SECONDS = 300


async def sync_index(context: Context) -> None:
    """Apply the catalogue changes other processes committed (blocking: in a worker thread).
    Quiet: it runs every few seconds, so it logs at DEBUG, failures at WARNING."""
    services = context.bot_data.services
    try:
        applied = await services.engine.run(services.engine.models.sync)
    except Exception as exc:  # a database hiccup: the next run tries again
        log.warning("index sync failed (retrying): %s", exc)
        return
    if applied:
        log.debug("index sync: %d catalogue change(s) applied", applied)


async def purge_expired_searches(context: Context) -> None:
    """Fold searches older than SEARCH_LOG_RETENTION_DAYS into daily counts and delete them."""
    engine = context.bot_data.services.engine
    try:
        await engine.run(engine.history.purge_expired)
    except Exception as exc:  # a database hiccup: tomorrow's run catches up
        log.warning("search log retention failed (retrying tomorrow): %s", exc)


def schedule(application: Application, *, upkeep: bool = True) -> None:  # type: ignore[type-arg]
    """Start the repeating jobs with the application (JobQueue starts with it). Without
    `upkeep` (a server hosts the bot and runs the index sync and retention itself), only the
    bot's own draft expiry."""
    services = application.bot_data.services
    job_queue = application.job_queue
    if job_queue is None:
        raise RuntimeError("the bot needs PTB's job queue: install python-telegram-bot[job-queue]")
    interval = services.settings.index_sync_seconds
    # Never two syncs at once; a run that is late (the last one was slow) is merged, not queued.
    job_options = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    if upkeep:
        job_queue.run_repeating(
            sync_index, interval=interval, first=interval, name=SYNC_JOB, job_kwargs=job_options
        )
        job_queue.run_repeating(
            purge_expired_searches,
            interval=RETENTION_INTERVAL_SECONDS,
            first=RETENTION_FIRST_SECONDS,
            name=RETENTION_JOB,
            job_kwargs=job_options,
        )
    job_queue.run_repeating(
        admin_add.expire_drafts,
        interval=admin_add.DRAFT_SWEEP_SECONDS,
        first=admin_add.DRAFT_SWEEP_SECONDS,
        name=DRAFT_JOB,
        job_kwargs=job_options,
    )
    # APScheduler logs every run at INFO ("Running job ..."): every 2 s is noise.
    runs = logging.getLogger("apscheduler.executors.default")
    if runs.level == logging.NOTSET:
        runs.setLevel(logging.WARNING)
