"""kill -9 at random moments during adds and removes: afterwards the database is intact, rows,
files and index agree, nothing promised is lost, and a restart gives the same answers."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from db import repository as repo
from db.models import Embedding, Product, ProductImage
from tests.conftest import REPO_ROOT
from tests.reliability.crash_driver import open_service, product_photo

KILLS = 30


def kill_at_random(root: Path, run: int, rng: random.Random) -> list[str]:
    """Start the driver, let it work for a random moment, SIGKILL it; return its promises."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_driver", str(root), str(run)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().strip()
    assert ready == "READY", process.stderr.read() if process.stderr else ""
    time.sleep(rng.uniform(0.0, 0.6))
    process.kill()
    out, err = process.communicate(timeout=30)
    assert process.returncode == -9, err
    return out.splitlines()


def check_consistent(root: Path, promises: list[str]) -> int:
    """Assert everything agrees after a crash; returns how many orphan files were swept."""
    db_path = root / "lookalike.db"
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    service = open_service(root)  # what a restarted bot does: migrate, load the index...
    swept = service.sweep_orphan_files()  # ...and remove files left by an interrupted add
    try:
        with service.session() as session:
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
            assert (service.media.path_for(image.file_name)).is_file()
            assert image.id in embedded
        on_disk = {
            p.relative_to(service.media.root).as_posix()
            for p in service.media.root.rglob("*")
            if p.is_file()
        }
        assert on_disk == referenced
        assert len(service.index) == len(images)
        # Each active product's own photo finds it first, in this process and a fresh one.
        active = [sku for sku, p in products.items() if not p.removed]
        probes = active[-3:]
        first = {sku: top_sku(service, sku) for sku in probes}
        assert all(first[sku] == sku for sku in probes)
        again = open_service(root)
        assert {sku: top_sku(again, sku) for sku in probes} == first
        again.close()
    finally:
        service.close()
    return len(swept)


def top_sku(service, sku: str) -> str:  # type: ignore[no-untyped-def]
    run, step = sku[1:].split("-")
    result = service.search_image(product_photo(int(run) * 100_000 + int(step)), k=1)
    return str(result.items[0].product.sku)


@pytest.mark.slow
def test_kill_9_during_adds_and_removes_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    promises: list[str] = []
    swept = 0
    for run in range(1, KILLS + 1):
        promises += kill_at_random(tmp_path, run, rng)
        swept += check_consistent(tmp_path, promises)
    added = [line for line in promises if line.startswith("ADDED")]
    assert len(added) >= KILLS  # the kills landed at many different points
    print(f"{KILLS} kills, {len(added)} adds promised and kept, {swept} orphan files swept")


def test_projection_featurizer_is_deterministic() -> None:
    from tests.reliability.crash_driver import ProjectionFeaturizer

    batch = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
    first, second = ProjectionFeaturizer().embed(batch), ProjectionFeaturizer().embed(batch)
    assert first.shape == (2, 512) and np.array_equal(first, second)
