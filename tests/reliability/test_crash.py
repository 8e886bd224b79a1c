"""kill -9 at random moments during adds and removes: afterwards the database is intact, rows,
files and index agree, nothing promised is lost, and a restart gives the same answers."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, text

from db import repository as repo
from db.database import create_db_engine
from db.tables import Embedding, Product, ProductImage
from lookalike.settings import Settings
from search import SearchQuery
from search.featurize.featurizer import Featurizer
from tests import images
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, bot_settings_for
from tests.bot.process import start_bot, wait_for_log
from tests.conftest import REPO_ROOT, database_url_for, open_test_engine
from tests.fakebotapi import ApiCall, FakeBotAPI
from tests.reliability.crash_driver import open_engine, product_photo

KILLS = 30


def kill_at_random(root: Path, database_url: str, run: int, rng: random.Random) -> list[str]:
    """Start the driver, let it work for a random moment, SIGKILL it; return its promises."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_driver", str(root), str(run), database_url],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().strip()
    assert ready == "READY", process.stderr.read() if process.stderr else ""
    time.sleep(rng.uniform(0.0, 0.6))  # the kill moment, not a wait for anything
    process.kill()
    # Read through the same stream readline used (it may hold lines read ahead), to the end.
    out = process.stdout.read()
    err = process.stderr.read() if process.stderr else ""
    process.wait(timeout=30)
    assert process.returncode == -9, err
    # A line is a promise once complete: the kill may cut the last one short.
    return out.split("\n")[:-1]


ORPHAN_ROWS = {
    "images without product": "SELECT count(*) FROM product_images i "
    "LEFT JOIN products p ON p.id = i.product_id WHERE p.id IS NULL",
    "vectors without image": "SELECT count(*) FROM embeddings e "
    "LEFT JOIN product_images i ON i.id = e.image_id WHERE i.id IS NULL",
}


def assert_database_intact(database_url: str) -> None:
    """After a kill -9: SQLite's own checks of its file, and on any backend no row that
    points at a missing parent."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            for what, query in ORPHAN_ROWS.items():
                assert connection.execute(text(query)).scalar() == 0, what
    finally:
        engine.dispose()


def check_consistent(root: Path, database_url: str, promises: list[str]) -> int:
    """Assert everything agrees after a crash; returns how many orphan files were swept."""
    assert_database_intact(database_url)
    # What a restarted bot does: migrate, load the index...
    engine = open_engine(root, database_url)
    # ...and remove files left by an interrupted add (no other writer runs now: no grace).
    swept = engine.catalog.sweep_orphan_files(grace_seconds=0)
    try:
        with engine.sessions() as session:
            products = {p.sku: p for p in session.scalars(select(Product))}
            images = list(session.scalars(select(ProductImage)))
            embedded = set(session.scalars(select(Embedding.image_id)))
            referenced = repo.referenced_files(session)
        for line in promises:
            verb, sku = line.split()
            assert sku in products, f"{sku} was reported {verb} but is not in the database"
            if verb == "REMOVED":
                assert products[sku].removed
        # Every image row has its file and its vector; every file has its row.
        for image in images:
            assert (engine.media.path_for(image.file_name)).is_file()
            assert image.id in embedded
        on_disk = {
            p.relative_to(engine.media.root).as_posix()
            for p in engine.media.root.rglob("*")
            if p.is_file()
        }
        assert on_disk == referenced
        assert len(engine.models.index) == len(images)
        # Each active product's own photo finds it first, in this process and a fresh one.
        active = [sku for sku, p in products.items() if not p.removed]
        probes = active[-3:]
        first = {sku: top_sku(engine, sku) for sku in probes}
        assert all(first[sku] == sku for sku in probes)
        again = open_engine(root, database_url)
        assert {sku: top_sku(again, sku) for sku in probes} == first
        again.close()
    finally:
        engine.close()
    return len(swept)


def top_sku(engine, sku: str) -> str:  # type: ignore[no-untyped-def]
    run, step = sku[1:].split("-")
    result = engine.searcher.search_image(
        product_photo(int(run) * 100_000 + int(step)), SearchQuery(k=1)
    )
    return str(result.items[0].product.sku)


@pytest.mark.slow
def test_kill_9_during_adds_and_removes_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    database_url = database_url_for(tmp_path)
    promises: list[str] = []
    swept = 0
    for run in range(1, KILLS + 1):
        promises += kill_at_random(tmp_path, database_url, run, rng)
        swept += check_consistent(tmp_path, database_url, promises)
    added = [line for line in promises if line.startswith("ADDED")]
    assert len(added) >= KILLS  # the kills landed at many different points
    print(f"{KILLS} kills, {len(added)} adds promised and kept, {swept} orphan files swept")


def test_projection_featurizer_is_deterministic() -> None:
    from tests.reliability.crash_driver import ProjectionFeaturizer

    batch = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
    first, second = ProjectionFeaturizer().embed(batch), ProjectionFeaturizer().embed(batch)
    assert first.shape == (2, 512) and np.array_equal(first, second)


def admin_promises(api: FakeBotAPI, after: int) -> tuple[set[str], set[str]]:
    """(SKUs the bot said were added, SKUs it said were removed) in messages sent so far."""
    return admin_promises_in(api.calls[after:])


def admin_promises_in(calls: Iterable[ApiCall]) -> tuple[set[str], set[str]]:
    """(SKUs said added, SKUs said removed) in these calls' successful messages."""
    added: set[str] = set()
    removed: set[str] = set()
    for call in calls:
        if call.method != "sendMessage" or not call.ok:
            continue
        text = str(call.params.get("text", ""))
        if match := re.search(r"Added <b>([^<]+)</b>", text):
            added.add(match.group(1))
        if match := re.search(r"<b>([^<]+)</b> is removed", text):
            removed.add(match.group(1))
    return added, removed


def confirms(kind: str, sku: str) -> Callable[[ApiCall], bool]:
    """A predicate: the bot's message confirming that `sku` was added or removed."""

    def check(call: ApiCall) -> bool:
        added, removed = admin_promises_in([call])
        return sku in (added if kind == "added" else removed)

    return check


# Where each round's kill lands: at a random moment (often mid-add: download, model, store),
# right after the remove was confirmed (the add is usually still running), right after the add
# was confirmed (the remove may still be running).
KILL_MOMENTS = ("random", "removed", "added")


@pytest.mark.slow
def test_kill_9_of_the_bot_during_add_and_remove(
    catalog_settings: Settings,
    fake_bot_api: FakeBotAPI,
    extractor: Featurizer,
    catalog_photos: list[Path],
    tmp_path: Path,
) -> None:
    """The real `lookalike bot` process, killed while admins add and remove."""
    settings = bot_settings_for(catalog_settings, fake_bot_api)
    rng = random.Random(11)
    added: set[str] = set()
    removed: set[str] = set()
    for round_, moment in enumerate(KILL_MOMENTS):
        new_sku, gone_sku = f"KILL-{round_}", catalog_photos[round_].stem
        log_path = tmp_path / f"bot-{round_}.log"
        process = start_bot(settings, log_path)
        try:
            wait_for_log(log_path, "ready: @", process)
            mark = fake_bot_api.mark()
            photo = Image.open(catalog_photos[100 + round_]).rotate(3 + round_)
            fake_bot_api.send_photo(
                user_id=ADMIN_ID,
                image=images.encode(photo, "JPEG"),
                caption=f"/add {new_sku} | Killed mid-add {round_} | 10",
            )
            fake_bot_api.send_text(user_id=ADMIN_ID, text=f"/remove {gone_sku}")
            if moment == "random":
                time.sleep(rng.uniform(0.0, 0.6))  # the kill moment, not a wait for anything
            else:
                sku = gone_sku if moment == "removed" else new_sku
                fake_bot_api.wait_for_call(
                    "sendMessage", after=mark, predicate=confirms(moment, sku), timeout=120
                )
        finally:
            process.kill()
            process.wait(timeout=30)
        said_added, said_removed = admin_promises(fake_bot_api, mark)
        if moment != "random":  # the bot got that far before the kill
            assert (gone_sku in said_removed) if moment == "removed" else (new_sku in said_added)
        added |= said_added
        removed |= said_removed
        assert_database_intact(settings.database_url)
        engine = open_test_engine(settings, extractor)
        engine.catalog.sweep_orphan_files(grace_seconds=0)  # the killed bot was the only writer
        with engine.sessions() as session:
            images_rows = list(session.scalars(select(ProductImage)))
            referenced = repo.referenced_files(session)
        on_disk = {
            p.relative_to(engine.media.root).as_posix()
            for p in engine.media.root.rglob("*")
            if p.is_file()
        }
        assert on_disk == referenced and len(engine.models.index) == len(images_rows)
        for sku in added:
            assert engine.catalog.get(sku) is not None, f"{sku} was said added but is missing"
        for sku in removed:
            product = engine.catalog.get(sku)
            assert product is not None and product.removed
        engine.close()

    # The restarted bot answers exactly as the stored catalogue says.
    log_path = tmp_path / "bot-final.log"
    process = start_bot(settings, log_path)
    try:
        wait_for_log(log_path, "ready: @", process)
        query = catalog_photos[150].read_bytes()
        mark = fake_bot_api.mark()
        fake_bot_api.send_photo(user_id=CUSTOMER_ID, image=query)
        album = fake_bot_api.wait_for_call("sendMediaGroup", after=mark, timeout=60)
    finally:
        process.terminate()
        process.wait(timeout=60)
    engine = open_test_engine(settings, extractor)
    expected = [item.product.name for item in engine.searcher.search_image(query).items]
    shown = [m["caption"].split("</b> ", 1)[1].split("\n")[0] for m in album.params["media"]]
    assert shown == expected
    assert added and removed  # promises were made before kills, and kept
    print(f"3 kills of the bot: {len(added)} adds and {len(removed)} removes promised and kept")
