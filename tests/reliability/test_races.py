"""Several processes, one truth: what one process does to the shared database and MEDIA_DIR
must never undo or hide what another one is doing. Each test runs the second process for real
(tests/reliability/race_driver.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.tables import Embedding
from lookalike.settings import Settings
from search import SearchEngine
from search.fields import clean_product_fields
from tests.conftest import REPO_ROOT
from tests.reliability.race_driver import open_engine, projection_provider

NEW_BACKBONE = "resnet50"


def second_process(*args: str) -> str:
    """Run the race driver to the end; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.race_driver", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def fields(sku: str):  # type: ignore[no-untyped-def]
    return clean_product_fields(sku=sku, name=f"Product {sku}", price="10.00", currency="EUR")


@pytest.fixture
def shared(settings: Settings) -> Iterator[SearchEngine]:
    """This process's engine over the test's database and MEDIA_DIR."""
    engine = open_engine(settings.database_url, settings.media_dir)
    yield engine
    engine.close()


class CommitGate:
    """A session class whose first commit after `arm()` waits until `open()`: an add paused
    after its image file is written and before its row is committed."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.reached = threading.Event()
        self.released = threading.Event()
        gate = self

        class GatedSession(Session):
            def commit(self) -> None:
                if gate.armed.is_set() and not gate.reached.is_set():
                    gate.reached.set()
                    assert gate.released.wait(120), "the test never let the commit go on"
                super().commit()

        self.session_class = GatedSession


def test_a_starting_instance_never_sweeps_an_add_in_flight(
    shared: SearchEngine, settings: Settings, catalog_photos: list[Path]
) -> None:
    gate = CommitGate()
    adder = SearchEngine(
        shared.config,
        sessions=sessionmaker(bind=shared.sessions.kw["bind"], class_=gate.session_class),
        featurizer_provider=projection_provider,
    )
    adder.models.reload()
    outcome: list[object] = []
    gate.armed.set()
    worker = threading.Thread(
        target=lambda: outcome.append(
            adder.catalog.add(fields("INFLIGHT-1"), catalog_photos[0].read_bytes())
        )
    )
    worker.start()
    try:
        assert gate.reached.wait(60), "the add never got to its commit"
        written = list(settings.media_dir.rglob("*.jpg"))
        assert len(written) == 1  # the add's file is on disk, its row not yet committed
        # Another instance starts meanwhile and sweeps what no row references.
        swept = json.loads(second_process("sweep", settings.database_url, str(settings.media_dir)))
    finally:
        gate.released.set()
        worker.join(60)
    assert swept == []
    assert outcome, "the add failed"
    product = shared.catalog.require("INFLIGHT-1")
    assert shared.media.read(product.images[0].file_name) == catalog_photos[0].read_bytes()


def test_an_add_by_an_instance_that_missed_a_model_switch_is_found_under_the_new_model(
    shared: SearchEngine, settings: Settings, catalog_photos: list[Path]
) -> None:
    for photo in catalog_photos[:4]:
        shared.catalog.add(fields(photo.stem), photo.read_bytes())
    assert shared.models.active.name == "vgg16_avgpool"
    # Another process reindexes with another backbone and switches to it...
    out = second_process("reindex", settings.database_url, str(settings.media_dir), NEW_BACKBONE)
    assert "SWITCHED" in out.split()
    # ...while this one has not synced yet and adds a product with the model it knows.
    late = catalog_photos[10]
    shared.catalog.add(fields("LATE-1"), late.read_bytes())

    image_id = shared.catalog.require("LATE-1").images[0].id
    with shared.sessions() as session:
        stored = set(
            session.scalars(select(Embedding.model_name).where(Embedding.image_id == image_id))
        )
    assert f"{NEW_BACKBONE}_avgpool" in stored
    # Any process, now or later, finds it under the new model.
    fresh = open_engine(settings.database_url, settings.media_dir)
    try:
        assert fresh.models.active.name == f"{NEW_BACKBONE}_avgpool"
        found = fresh.searcher.search_image(late.read_bytes())
        assert found.items[0].product.sku == "LATE-1"
        assert found.model_name == f"{NEW_BACKBONE}_avgpool"
    finally:
        fresh.close()
    assert shared.models.active.name == f"{NEW_BACKBONE}_avgpool"
    assert shared.searcher.search_image(late.read_bytes()).items[0].product.sku == "LATE-1"
