"""A sync's record and what the catalogue shows while it runs: new products are created with
the feed's stock flag (never shown in stock meanwhile), and a run a kill left "running" is
closed by the next one, which also writes the feed-add audit rows the killed run did not; a
sync whose lease another process took stops."""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bench.fake_shop import ShopItem, ShopServer, changed, feed_bytes
from db import Leases
from db.tables import AuditEntry, FeedRun
from feed import sync_options
from feed.state import LEASE_NAME, FeedStore
from feed.sync import ProgressHooks, sync_feed
from lookalike.settings import Settings
from search import SearchEngine, clean_product_fields
from tests.images import encode, photo_like


async def test_new_products_are_never_shown_in_stock_when_the_feed_says_out_of_stock(
    engine: SearchEngine, settings: Settings, shop: ShopServer, demo: list[ShopItem]
) -> None:
    items = demo[:12]
    for n in range(0, 12, 3):
        items = changed(items, n, availability="out_of_stock")
    out = {items[n].id for n in range(0, 12, 3)}
    url = shop.publish("/feed.xml", feed_bytes("rss", items, shop.base))
    wrongly_in_stock: set[str] = set()

    def look(_n: int) -> None:
        """Called as each photo is stored (the import's writer thread): the catalogue as a
        customer would see it at that moment."""
        shown = {p.sku for p in engine.catalog.products() if p.in_stock}
        wrongly_in_stock.update(shown & out)

    summary = await sync_feed(
        engine, sync_options(settings, url), progress=ProgressHooks(advance=look)
    )
    assert summary.status == "ok", summary
    assert summary.counts["added"] == 12
    assert wrongly_in_stock == set()
    assert {p.sku for p in engine.catalog.products() if not p.in_stock} == out


async def test_the_next_run_closes_a_killed_run_and_audits_what_it_added(
    engine: SearchEngine, settings: Settings, shop: ShopServer, demo: list[ShopItem]
) -> None:
    items = demo[:3]
    store = FeedStore(engine.sessions)
    # What a run killed mid-way leaves: its row "running", the feed's SKUs claimed, a product
    # it added, and no feed-add audit row for it.
    killed = store.start_run(source="feed.xml", forced=False, now=datetime.now(UTC))
    store.claim([item.id for item in items], datetime.now(UTC))
    fields = clean_product_fields(
        sku=items[0].id, name=items[0].title, price="10", currency="EUR", url=None
    )
    engine.catalog.add(fields, encode(photo_like(seed=5), "JPEG"))

    url = shop.publish("/feed.xml", feed_bytes("rss", items, shop.base))
    summary = await sync_feed(engine, sync_options(settings, url))
    assert summary.status == "ok", summary
    with engine.sessions() as session:
        runs = {row.id: row for row in session.scalars(select(FeedRun))}
        adds = {
            row.target: row.details
            for row in session.scalars(select(AuditEntry).where(AuditEntry.action == "feed-add"))
        }
    assert runs[killed].status == "killed"
    assert runs[killed].finished_at is not None
    assert [row.status for number, row in runs.items() if number != killed] == ["ok"]
    assert adds[items[0].id] == {"by_killed_run": [killed]}
    assert {adds[item.id]["in_stock"] for item in items[1:]} == {True}
    assert len(adds) == 3  # one row per product, none twice


class _Seen(logging.Handler):
    """Sets `event` when a record with `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_sync_whose_lease_was_taken_stops(
    engine: SearchEngine, settings: Settings, shop: ShopServer, demo: list[ShopItem]
) -> None:
    url = shop.publish("/feed.xml", feed_bytes("rss", demo[:12], shop.base))
    options = dataclasses.replace(sync_options(settings, url), lease_ttl=timedelta(seconds=0.6))
    leases = Leases(engine.sessions)
    lost = _Seen("the lease was lost")
    logging.getLogger("feed.sync").addHandler(lost)
    taken = threading.Event()

    def steal(_n: int) -> None:
        """At the first stored photo (the import's writer thread): another process takes the
        lease, as after a stall past its time; the sync goes on only once it has noticed."""
        if taken.is_set():
            return
        taken.set()
        now = datetime.now(UTC)
        current = leases.holder(LEASE_NAME, now=now)
        assert current is not None
        leases.replace_holder(
            LEASE_NAME, old=current, new="thief", now=now, ttl=timedelta(minutes=10)
        )
        assert lost.event.wait(60), "the sync never noticed"

    try:
        summary = await sync_feed(engine, options, progress=ProgressHooks(advance=steal))
    finally:
        logging.getLogger("feed.sync").removeHandler(lost)
    assert summary.status == "failed"
    assert "another process took the feed lease" in summary.message
    assert leases.holder(LEASE_NAME, now=datetime.now(UTC)) == "thief"
    run = FeedStore(engine.sessions).last_run()
    assert run is not None and run.status == "failed"
