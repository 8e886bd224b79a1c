"""`lookalike reindex`: vectors of another backbone for every image, and the switch-over only
once every image has one (an interrupted run leaves searches on the old model)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.composition import open_engine
from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from search.fields import clean_product_fields
from search.reindexing import reindex
from tests.conftest import MODEL_SEED

NEW_BACKBONE = "efficientnet_b0"  # the smallest of the backbones: quickest to build and run
PHOTOS = 12


@pytest.fixture(scope="module")
def new_extractor(models_dir: Path) -> Featurizer:
    from search.featurize.runtimes.keras import KerasExtractor

    return KerasExtractor.load(
        models_dir=models_dir,
        backbone=NEW_BACKBONE,
        weights="none",
        seed=MODEL_SEED,
        runtime="keras",
    )


@pytest.fixture
def provider(extractor: Featurizer, new_extractor: Featurizer) -> Callable[[str], Featurizer]:
    models = {"vgg16": extractor, NEW_BACKBONE: new_extractor}
    return lambda backbone: models[backbone]


@pytest.fixture
def small_catalog(
    settings: Settings, provider: Callable[[str], Featurizer], catalog_photos: list[Path]
) -> Iterator[SearchEngine]:
    engine = open_engine(settings, featurizer=provider)
    for photo in catalog_photos[:PHOTOS]:
        fields = clean_product_fields(sku=photo.stem, name=photo.stem, price="10", currency="EUR")
        engine.catalog.add(fields, photo.read_bytes())
    yield engine
    engine.close()


class SimulatedCrashError(Exception):
    pass


def interrupt_after(images: int) -> Callable[[int], None]:
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done >= images:
            raise SimulatedCrashError  # as Ctrl-C or a crash would, between two committed batches

    return progress


def test_an_interrupted_reindex_keeps_the_old_model_and_the_next_run_finishes_it(
    small_catalog: SearchEngine,
    settings: Settings,
    provider: Callable[[str], Featurizer],
    catalog_photos: list[Path],
) -> None:
    engine = small_catalog
    query = catalog_photos[3].read_bytes()
    before = engine.searcher.search_image(query)
    assert before.model_name == "vgg16_avgpool"

    with pytest.raises(SimulatedCrashError):
        reindex(engine, NEW_BACKBONE, batch_size=4, progress=interrupt_after(PHOTOS // 2))

    # Half way: some vectors of the new model are stored, searches still use the old one,
    # here and in a process that opens the catalogue now.
    with engine.sessions() as session:
        from db import repository as repo

        stored = repo.count_embeddings(session, model_name=f"{NEW_BACKBONE}_avgpool")
        assert 0 < stored < PHOTOS
        active = repo.active_model(session)
        assert active is not None and active.name == "vgg16_avgpool"
    assert engine.models.active.name == "vgg16_avgpool"
    again = engine.searcher.search_image(query)
    assert again.model_name == "vgg16_avgpool"
    assert [i.product.sku for i in again.items] == [i.product.sku for i in before.items]
    other = open_engine(settings, featurizer=provider)
    assert other.models.active.name == "vgg16_avgpool"
    assert other.searcher.search_image(query).items[0].product.sku == catalog_photos[3].stem

    # A product added meanwhile (through the old model) gets its new vector too.
    late = catalog_photos[PHOTOS]
    engine.catalog.add(
        clean_product_fields(sku=late.stem, name="late", price="5", currency="EUR"),
        late.read_bytes(),
    )

    summary = reindex(engine, NEW_BACKBONE, batch_size=4)
    assert summary.switched
    assert summary.already == stored  # the interrupted run's batches were kept, not redone
    assert summary.computed == PHOTOS + 1 - stored
    assert engine.models.active.name == f"{NEW_BACKBONE}_avgpool"
    assert engine.models.active.dim == 1280
    after = engine.searcher.search_image(query)
    assert after.model_name == f"{NEW_BACKBONE}_avgpool"
    assert after.items[0].product.sku == catalog_photos[3].stem
    assert after.items[0].distance == pytest.approx(0.0, abs=1e-4)
    assert engine.searcher.search_image(late.read_bytes()).items[0].product.sku == late.stem

    # The other process switches at its next sync, and finds the same.
    assert other.models.sync() > 0
    assert other.models.active.name == f"{NEW_BACKBONE}_avgpool"
    assert [i.product.sku for i in other.searcher.search_image(query).items] == [
        i.product.sku for i in after.items
    ]
    # Both models' vectors stay stored: switching back needs no computing.
    back = reindex(engine, "vgg16", batch_size=4)
    assert back.switched and back.computed == 0
    assert engine.models.active.name == "vgg16_avgpool"
    np.testing.assert_array_equal(
        [i.product.id for i in engine.searcher.search_image(query).items][:1],
        [before.items[0].product.id],
    )


def test_reindex_refuses_an_unknown_backbone(small_catalog: SearchEngine) -> None:
    with pytest.raises(ValueError, match="resnet50"):
        reindex(small_catalog, "alexnet")
    assert small_catalog.models.active.name == "vgg16_avgpool"
