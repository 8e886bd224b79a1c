"""One feed sync from start to end: the lease, reading the feed, the plan, the guard against a
broken export, applying it (feed.apply), and the summary every door renders.

`sync_feed` is the one call doors make (the CLI, the bot's /sync and its scheduled job).
Only one process syncs at a time: a lease row (db.Leases, "feed-sync") taken with a
conditional UPDATE/INSERT and renewed while the sync runs; a sync whose lease another process
took (it was stalled past the lease's time) stops at once, keeping what it did (every change
is its own atomic write) and recording the run as failed; a dry run takes no lease and
changes nothing (it does not even record a run).

The guard: a feed that lists no usable product, or that would hide more than
`max_hide_share` of the active catalogue, changes nothing unless `force` is set, and the
summary says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from feed.apply import (
    FEED_USER_ID,
    apply_changes,
    close_killed_runs,
    finish_new_products,
    import_photos,
)
from feed.diff import SyncPlan, plan_sync
from feed.formats import FeedFormatError
from feed.options import SyncOptions
from feed.retire import retire_replaced_photos
from feed.source import FeedContents, FeedSourceError, describe_source, read_feed
from feed.state import FeedStore, catalogue_snapshot, new_holder
from search import SearchEngine

log = logging.getLogger(__name__)

Status = Literal["ok", "dry-run", "refused", "failed", "busy"]
MAX_RECORDED_PROBLEMS = 50


@dataclass
class SyncSummary:
    status: Status
    message: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (row or photo, reason)
    plan: SyncPlan | None = None
    seconds: float = 0.0

    @property
    def changed_nothing(self) -> bool:
        return self.status != "ok"


@dataclass
class ProgressHooks:
    """What a door shows while photos are downloaded and featurised (a tqdm bar)."""

    on_total: Callable[[int], None] = lambda _total: None
    advance: Callable[[int], None] = lambda _n: None


async def sync_feed(
    engine: SearchEngine, options: SyncOptions, *, progress: ProgressHooks | None = None
) -> SyncSummary:
    """Bring the catalogue in step with the feed at `options.source`. Never raises for a bad
    feed or photo: the summary's status and message say what happened."""
    started = time.perf_counter()
    store = FeedStore(engine.sessions)
    hooks = progress or ProgressHooks()
    if options.dry_run:
        summary = await _sync(engine, store, options, hooks)
    else:
        holder = new_holder()
        busy = await engine.run(
            store.take_lease, holder, now=datetime.now(UTC), ttl=options.lease_ttl
        )
        if busy is not None:
            return SyncSummary("busy", f"a sync is already running ({busy}); nothing done")
        try:
            async with _renewing(engine, store, holder, options.lease_ttl) as lost:
                run_id = await engine.run(
                    store.start_run,
                    source=describe_source(options.source),
                    forced=options.force,
                    now=datetime.now(UTC),
                )
                try:
                    killed = await engine.run(close_killed_runs, engine, store, run_id)
                    if killed:
                        log.warning("feed sync: closed the killed run(s) %s", killed)
                    summary = await _while_leased(_sync(engine, store, options, hooks), lost)
                except Exception as exc:  # a database or engine failure: recorded, not raised
                    log.exception("feed sync failed")
                    summary = SyncSummary(
                        "failed", f"the sync stopped: {type(exc).__name__}: {str(exc)[:200]}"
                    )
                await engine.run(
                    store.finish_run,
                    run_id,
                    status=summary.status,
                    counts=summary.counts,
                    errors=[
                        {"label": label, "reason": reason[:200]}
                        for label, reason in summary.problems[:MAX_RECORDED_PROBLEMS]
                    ],
                    message=summary.message,
                    now=datetime.now(UTC),
                )
                await engine.run(
                    engine.history.audit,
                    user_id=FEED_USER_ID,
                    action="feed-sync",
                    outcome={"ok": "ok", "refused": "refused"}.get(summary.status, "failed"),
                    target=describe_source(options.source)[:64],
                    details={"counts": summary.counts, "message": summary.message},
                )
        finally:
            await engine.run(store.release_lease, holder, now=datetime.now(UTC))
    summary.seconds = time.perf_counter() - started
    log.info("feed sync %s: %s %s", summary.status, summary.message, summary.counts)
    return summary


async def _while_leased(work: Coroutine[Any, Any, SyncSummary], lost: asyncio.Event) -> SyncSummary:
    """The sync's summary, or a failure as soon as the lease is lost (the sync cancelled)."""
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(lost.wait())
    await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
    watching.cancel()
    if not working.done():
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        return SyncSummary(
            "failed",
            "the sync stopped: another process took the feed lease (this one stalled past "
            "its time); what was done is kept, the next sync finishes it",
        )
    return working.result()


@contextlib.asynccontextmanager
async def _renewing(
    engine: SearchEngine, store: FeedStore, holder: str, ttl: timedelta
) -> AsyncIterator[asyncio.Event]:
    """Renew the lease every third of its time while the body runs; the event is set once
    it is lost."""
    lost = asyncio.Event()

    async def renew() -> None:
        while True:
            await asyncio.sleep(ttl.total_seconds() / 3)
            if not await engine.run(store.renew_lease, holder, now=datetime.now(UTC), ttl=ttl):
                log.warning("feed sync: the lease was lost (another process took it); stopping")
                lost.set()
                return

    task = asyncio.create_task(renew())
    try:
        yield lost
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _sync(
    engine: SearchEngine,
    store: FeedStore,
    options: SyncOptions,
    hooks: ProgressHooks,
) -> SyncSummary:
    try:
        contents: FeedContents = await engine.run(
            read_feed,
            options.source,
            categories=options.categories,
            default_currency=options.default_currency,
            now=datetime.now(UTC),
            max_images=options.max_images,
            max_bytes=options.max_feed_bytes,
            zone=options.time_zone,
            allow_private=options.fetch.allow_private,
        )
    except (FeedSourceError, FeedFormatError) as exc:
        return SyncSummary("failed", f"the feed could not be read: {exc}; nothing changed")
    catalogue = await engine.run(catalogue_snapshot, engine)
    owned = await engine.run(store.owned)
    images = await engine.run(store.images)
    plan = plan_sync(contents.products, catalogue, owned, images)
    counts = {
        "rows": contents.rows,
        "products": len(contents.products),
        "skipped_rows": len(contents.skipped),
        **plan.counts(),
    }
    problems = [*contents.skipped, *contents.problems]
    refusal = _refusal(contents, plan, options)
    if refusal is not None and not options.force:
        # A dry run of a feed the real run would refuse says so (and the CLI exits 3).
        prefix = "dry run: " if options.dry_run else ""
        message = f"{prefix}{refusal}; nothing changed; use --force if this is right"
        return SyncSummary("refused", message, counts, problems, plan)
    if options.dry_run:
        message = "dry run: nothing changed" + (f" (forced past: {refusal})" if refusal else "")
        return SyncSummary("dry-run", message, counts, problems, plan)

    failed = await engine.run(apply_changes, engine, store, plan, contents.products)
    problems.extend(failed)
    hooks.on_total(len(plan.images))
    image_counts, imported = await import_photos(
        engine,
        store,
        plan,
        contents.products,
        catalogue,
        fetch=options.fetch,
        concurrency=options.concurrency,
        batch_size=options.batch_size,
        progress=hooks.advance,
    )
    await engine.run(finish_new_products, engine, plan, imported)
    retired = await engine.run(
        retire_replaced_photos,
        engine,
        store,
        contents.products,
        images,
        downloaded=image_counts.downloaded_skus,
        failed=image_counts.failed_skus,
        skipped=set(plan.kept_removed),
    )
    problems.extend(image_counts.problems)
    problems.extend(retired.problems)
    counts.update(
        {
            "added": len(imported.added),
            "photos_added": len(imported.images_added),
            "images_downloaded": image_counts.downloaded,
            "images_not_modified": image_counts.not_modified,
            "images_same_bytes": image_counts.same_bytes,
            "images_failed": image_counts.failed,
            "images_rejected": len(imported.skipped),
            "featurised": imported.featurised,
            "photos_retired": retired.photos,
            "not_added": len(plan.add) - len(imported.added),
            "change_errors": len(failed),
        }
    )
    message = "synced" + (f" (forced past: {refusal})" if refusal else "")
    return SyncSummary("ok", message, counts, problems, plan)


def _refusal(contents: FeedContents, plan: SyncPlan, options: SyncOptions) -> str | None:
    """Why this feed looks like a broken export, or None."""
    if not contents.products:
        return (
            f"the feed lists no usable product ({contents.rows} rows); refusing to hide the "
            "catalogue"
        )
    if plan.hide_share > options.max_hide_share:
        return (
            f"the feed would hide {len(plan.hide)} of {plan.active_before} active products "
            f"({plan.hide_share:.0%} > FEED_MAX_HIDE_SHARE {options.max_hide_share:.0%})"
        )
    return None
