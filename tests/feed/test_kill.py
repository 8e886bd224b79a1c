"""A sync killed with SIGKILL at several moments, then a completing sync, leaves the same
catalogue as an uninterrupted sync, and photos stored before a kill are not downloaded again.

The full 300 demo products: feed A lists the first 150; feed B changes prices, hides some,
changes photos and adds the other 150. One database syncs A then B without interruption; a
copy of the A state syncs B in a subprocess killed after N photos were served (three N),
then once more to the end.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.fake_shop import ShopItem, ShopServer, feed_bytes
from db.tables import AuditEntry, FeedRun
from feed import sync_options
from feed.state import FeedStore
from feed.sync import sync_feed
from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from tests.conftest import REPO_ROOT, open_test_engine, settings_env
from tests.feed.conftest import feed_settings
from tests.images import encode, photo_like

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sqlite_only("copies the database file to start two catalogues from one state"),
]

SYNC_SCRIPT = """
import argparse, sys
from cli.sync import register, run
from lookalike.settings import Settings
parser = argparse.ArgumentParser()
register(parser.add_subparsers())
sys.exit(run(parser.parse_args(sys.argv[1:]), Settings()))
"""

State = dict[str, tuple[object, ...]]


def catalogue_state(engine: SearchEngine) -> State:
    return {
        p.sku: (
            p.name,
            p.price,
            p.currency,
            p.url,
            p.category,
            p.in_stock,
            p.removed,
            tuple(sorted(image.content_hash for image in p.images)),
        )
        for p in engine.catalog.products(include_removed=True)
    }


def feed_b(demo: list[ShopItem], shop: ShopServer) -> list[ShopItem]:
    items = list(demo)
    for n in range(0, 20, 2):
        items[n] = replace(items[n], price="19.99 EUR")
    for n in range(20, 25):  # changed photos, at new URLs of their own
        path = f"/img/changed-{n}.png"
        shop.files[path] = replace(
            shop.files[items[n].image], body=encode(photo_like(seed=100 + n), "PNG")
        )
        items[n] = replace(items[n], image=path)
    items[30] = replace(items[30], availability="out_of_stock")
    return [item for n, item in enumerate(items) if not 40 <= n < 55]  # 15 gone: 10 %


async def sync_in_process(engine: SearchEngine, settings: Settings, url: str) -> dict[str, int]:
    summary = await sync_feed(engine, sync_options(settings, url))
    assert summary.status == "ok", summary
    return summary.counts


def run_subprocess(settings: Settings, url: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "URL_FETCH_ALLOW_PRIVATE": "true",
            "FEED_IMAGE_TIMEOUT_SECONDS": "5",
            "INFERENCE_BATCH_SIZE": "8",
            "FEED_DOWNLOAD_CONCURRENCY": "4",
        }
    )
    # Files, not pipes: a full pipe nobody reads would stall the sync.
    with (cwd / "sync.out").open("ab") as out, (cwd / "sync.err").open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", SYNC_SCRIPT, "sync", url, "-q"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
        )


async def test_killed_syncs_end_in_the_same_catalogue(
    tmp_path: Path, models_dir: Path, extractor: Featurizer, shop: ShopServer, demo: list[ShopItem]
) -> None:
    reference_root, killed_root = tmp_path / "reference", tmp_path / "killed"
    reference_settings = feed_settings(reference_root, models_dir)
    reference = open_test_engine(reference_settings, extractor)
    url_a = shop.publish("/feed-a.xml", feed_bytes("rss", demo[:150], shop.base))
    await sync_in_process(reference, reference_settings, url_a)
    reference.close()
    shutil.copytree(reference_root, killed_root)

    items_b = feed_b(demo, shop)
    url_b = shop.publish("/feed-b.xml", feed_bytes("rss", items_b, shop.base))
    reference = open_test_engine(reference_settings, extractor)
    counts = await sync_in_process(reference, reference_settings, url_b)
    assert counts["added"] == 150 and counts["hide"] == 15 and counts["featurised"] == 155
    expected = catalogue_state(reference)
    reference.close()
    assert sum(1 for v in expected.values() if not v[6]) == 285
    assert expected[demo[0].id][1] == Decimal("19.99")

    killed_settings = feed_settings(killed_root, models_dir)
    partial_counts = []
    after_kills: list[tuple[set[str], dict[str, int]]] = []
    # 155 photos to download in all (150 new products, 5 changed photos); about 60 are in
    # flight between download and storage: the first kill comes before anything is stored,
    # the others after some photos were.
    for kill_after in (20, 110, 70):
        start = shop.images_served
        process = run_subprocess(killed_settings, url_b, tmp_path)
        try:
            reached = False
            for _ in range(300):  # until N photos were served, or the sync ended on its own
                reached = shop.wait_for_images(start + kill_after, timeout=1.0)
                if reached or process.poll() is not None:
                    break
        finally:
            process.kill()
            process.wait()
        assert reached, (tmp_path / "sync.err").read_text()[-3000:]
        engine = open_test_engine(killed_settings, extractor)
        state = catalogue_state(engine)
        engine.close()
        partial_counts.append(len(state))
        stored = {h for value in state.values() for h in value[7]}
        after_kills.append((stored, dict(shop.full)))

    engine = open_test_engine(killed_settings, extractor)
    try:
        await sync_in_process(engine, killed_settings, url_b)
        assert catalogue_state(engine) == expected
    finally:
        engine.close()
    assert any(150 < count < 300 for count in partial_counts), partial_counts
    # A photo stored before a kill was never downloaded in full again afterwards.
    for stored, served in after_kills:
        again = [
            path
            for path, count in shop.full.items()
            if path.startswith("/img/") and _hash(shop, path) in stored and count > served[path]
        ]
        assert again == []


def _hash(shop: ShopServer, path: str) -> str:
    return hashlib.sha256(shop.files[path].body).hexdigest()


async def test_a_first_sync_killed_never_shows_out_of_stock_products_in_stock(
    tmp_path: Path, models_dir: Path, extractor: Featurizer, shop: ShopServer, demo: list[ShopItem]
) -> None:
    """kill -9 during a first sync of 120 products, every third out of stock: what it stored
    before the kill is out of stock where the feed says so, its run stays "running" until the
    next run closes it as killed and writes the feed-add rows it did not get to."""
    items = [
        replace(item, availability="out_of_stock") if n % 3 == 0 else item
        for n, item in enumerate(demo[:120])
    ]
    out = {item.id for item in items if item.availability == "out_of_stock"}
    url = shop.publish("/first.xml", feed_bytes("rss", items, shop.base))
    settings = feed_settings(tmp_path / "first", models_dir)
    open_test_engine(settings, extractor).close()  # the database, migrated
    process = run_subprocess(settings, url, tmp_path)
    try:
        reached = False
        for _ in range(300):
            reached = shop.wait_for_images(100, timeout=1.0)
            if reached or process.poll() is not None:
                break
    finally:
        process.kill()
        process.wait()
    assert reached, (tmp_path / "sync.err").read_text()[-3000:]

    engine = open_test_engine(settings, extractor)
    try:
        stored = {p.sku: p.in_stock for p in engine.catalog.products()}
        assert 0 < len(stored) < 120, len(stored)
        assert {sku for sku, in_stock in stored.items() if not in_stock} == out & set(stored)
        store = FeedStore(engine.sessions)
        killed = store.last_run()
        assert killed is not None and killed.status == "running"

        await sync_in_process(engine, settings, url)
        with engine.sessions() as session:
            status = session.get(FeedRun, killed.id)
            added = session.scalars(
                select(AuditEntry.target).where(AuditEntry.action == "feed-add")
            ).all()
        assert status is not None and status.status == "killed"
        assert sorted(added) == sorted(item.id for item in items)  # each product once
        assert {p.sku for p in engine.catalog.products() if not p.in_stock} == out
    finally:
        engine.close()
