"""Carrying out a sync plan through the engine; every catalogue change is the engine's own
atomic write, and each is audited (user_id 0: the feed, not a person).

Order, chosen so a sync killed at any moment leaves nothing the next one cannot finish:
1. the feed's SKUs are claimed (feed_products) before anything is added, so a product the
   feed added is always known as the feed's;
2. field, stock, restore and hide changes, and the variant (link, price, colour name) of photos
   a product already holds (no photo is featurised for them); a product is marked hidden_by_feed
   before it is hidden, so it is restored when it comes back;
3. photos: downloaded concurrently (conditional requests), their validators saved before the
   photo is handed to the pipelined import, which featurises and stores them. The next sync
   trusts a saved validator only when the catalogue holds that photo for that product;
4. photos the feed replaced or dropped are retired (feed.retire).

Audit actions: feed-update, feed-stock, feed-hide, feed-restore, feed-add (a new product),
feed-photos (new photos of an existing product), feed-variants (a held photo's variant link,
price or colour changed); the run itself is audited as feed-sync.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from db import FeedImageRecord
from feed.diff import CatalogueProduct, ImageJob, SyncPlan
from feed.grouping import FeedProduct
from feed.images import Download, FetchOptions, download
from feed.state import FeedStore
from search import (
    CatalogError,
    ImportEntry,
    ImportSummary,
    SearchEngine,
    import_entries,
    set_photo_variants,
)

FEED_USER_ID = 0
Progress = Callable[[int], None]


@dataclass
class ImageCounts:
    checked: int = 0
    downloaded: int = 0
    not_modified: int = 0
    same_bytes: int = 0  # downloaded, but the catalogue already holds these bytes
    failed: int = 0
    failed_skus: set[str] = field(default_factory=set)  # products with a photo that failed
    downloaded_skus: set[str] = field(default_factory=set)  # products with a photo sent in full
    problems: list[tuple[str, str]] = field(default_factory=list)


def audit(engine: SearchEngine, action: str, target: str, **details: Any) -> None:
    engine.history.audit(
        user_id=FEED_USER_ID, action=action, outcome="ok", target=target[:64], details=details
    )


def apply_changes(
    engine: SearchEngine, store: FeedStore, plan: SyncPlan, feed: Mapping[str, FeedProduct]
) -> list[tuple[str, str]]:
    """Steps 1 and 2 (blocking). Returns the changes that failed, as (sku, reason)."""
    failed: list[tuple[str, str]] = []
    store.claim(feed.keys(), datetime.now(UTC))
    for product, changes in plan.update:
        try:
            engine.catalog.update(product.fields)
        except CatalogError as exc:
            failed.append((product.sku, str(exc)))
            continue
        audit(engine, "feed-update", product.sku, fields=list(changes))
    for sku, in_stock in plan.stock:
        try:
            engine.catalog.set_stock(sku, in_stock=in_stock)
        except CatalogError as exc:
            failed.append((sku, str(exc)))
            continue
        audit(engine, "feed-stock", sku, in_stock=in_stock)
    for sku in plan.restore:
        try:
            engine.catalog.restore(sku)
        except CatalogError as exc:
            failed.append((sku, str(exc)))
            continue
        store.set_hidden(sku, hidden=False)
        audit(engine, "feed-restore", sku)
    for sku in plan.hide:
        store.set_hidden(sku, hidden=True)  # first: a kill after it still restores later
        try:
            engine.catalog.remove(sku)
        except CatalogError as exc:
            failed.append((sku, str(exc)))
            continue
        audit(engine, "feed-hide", sku)
    for sku in sorted(set(plan.variants) | set(plan.colours)):
        variants, colours = plan.variants.get(sku, {}), plan.colours.get(sku, {})
        try:
            set_photo_variants(engine, sku, variants, colours)
        except CatalogError as exc:
            failed.append((sku, str(exc)))
            continue
        audit(engine, "feed-variants", sku, photos=len(set(variants) | set(colours)))
    return failed


def close_killed_runs(engine: SearchEngine, store: FeedStore, run_id: int) -> list[int]:
    """Close the runs a kill left "running" (this run holds the lease: they are dead) and
    write the feed-add audit rows they did not get to; returns their ids."""
    killed = store.close_killed_runs(current=run_id, now=datetime.now(UTC))
    if killed:
        since = min(started for _, started in killed)
        for sku in store.unaudited_additions(since=since, action="feed-add"):
            audit(engine, "feed-add", sku, by_killed_run=[number for number, _ in killed])
    return [number for number, _ in killed]


def finish_new_products(engine: SearchEngine, plan: SyncPlan, summary: ImportSummary) -> None:
    """Audit what the import added (created with the feed's stock flag by its first photo)."""
    added = set(summary.added)
    for product in plan.add:
        if product.sku not in added:
            continue
        audit(engine, "feed-add", product.sku, in_stock=product.in_stock)
    for sku in sorted(set(summary.images_added) - added):
        audit(engine, "feed-photos", sku, photos=summary.images_added.count(sku))


async def import_photos(
    engine: SearchEngine,
    store: FeedStore,
    plan: SyncPlan,
    feed: Mapping[str, FeedProduct],
    catalogue: Mapping[str, CatalogueProduct],
    *,
    fetch: FetchOptions,
    concurrency: int,
    batch_size: int,
    progress: Progress,
) -> tuple[ImageCounts, ImportSummary]:
    """Step 3: download every photo of the plan and import the new ones."""
    loop = asyncio.get_running_loop()
    counts = ImageCounts()
    queue: asyncio.Queue[ImportEntry | None] = asyncio.Queue(maxsize=2 * batch_size)

    def entries() -> Iterator[ImportEntry]:
        """The import thread's view of the queue (waits on the event loop, never blocks it)."""
        while (entry := asyncio.run_coroutine_threadsafe(queue.get(), loop).result()) is not None:
            yield entry

    importing = asyncio.ensure_future(
        engine.run(import_entries, engine, entries(), batch_size=batch_size, progress=progress)
    )

    async def offer(entry: ImportEntry | None) -> None:
        putting = asyncio.ensure_future(queue.put(entry))
        await asyncio.wait({putting, importing}, return_when=asyncio.FIRST_COMPLETED)
        if not putting.done():  # the import stopped early: its error says why
            putting.cancel()
            importing.result()
            raise RuntimeError("the photo import stopped early")

    pending: list[tuple[FeedImageRecord, ImportEntry | None]] = []

    async def flush() -> None:
        if not pending:
            return
        # Validators first: once the import has stored a photo, its validator is known.
        await engine.run(store.save_images, [record for record, _ in pending], datetime.now(UTC))
        for _, entry in pending:
            if entry is not None:
                await offer(entry)
        pending.clear()

    try:
        async for result in download(plan.images, fetch, concurrency=concurrency):
            counts.checked += 1
            handled = _classify(result, catalogue, counts)
            if handled is None:
                progress(1)
                continue
            record, data = handled
            if data is None:
                progress(1)
                pending.append((record, None))
            else:
                variant = feed[record.sku].variant_of(result.job.url)
                entry = ImportEntry(
                    label=f"{record.sku} photo {result.job.position + 1}",
                    fields=feed[record.sku].fields,
                    load=_loader(data),
                    update_fields=False,
                    in_stock=feed[record.sku].in_stock,
                    colour_name=variant.colour_name if variant is not None else None,
                    variant=feed[record.sku].photo_variant(result.job.url),
                )
                pending.append((record, entry))
            if len(pending) >= batch_size:
                await flush()
        await flush()
        await offer(None)
        summary = await importing
    except BaseException:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)  # lets the import thread finish what it has
        await asyncio.gather(importing, return_exceptions=True)
        raise
    counts.problems.extend(summary.skipped)
    return counts, summary


def _loader(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _classify(
    result: Download, catalogue: Mapping[str, CatalogueProduct], counts: ImageCounts
) -> tuple[FeedImageRecord, bytes | None] | None:
    """(validator record, bytes to import or None when the product already has them); None
    when there is nothing to save (a failure, or not modified)."""
    job: ImageJob = result.job
    if result.fetched is None:
        counts.failed += 1
        counts.failed_skus.add(job.sku)
        counts.problems.append((f"{job.sku} photo {job.position + 1}", result.error or "failed"))
        return None
    if result.fetched.data is None:
        counts.not_modified += 1
        return None
    counts.downloaded += 1
    counts.downloaded_skus.add(job.sku)
    data = result.fetched.data
    record = FeedImageRecord(
        sku=job.sku,
        url=job.url,
        etag=result.fetched.etag,
        last_modified=result.fetched.last_modified,
        content_hash=hashlib.sha256(data).hexdigest(),
    )
    held = catalogue.get(job.sku)
    if held is not None and record.content_hash in held.image_hashes:
        counts.same_bytes += 1  # e.g. the server sends no validators, or a new ETag
        return record, None
    return record, data
