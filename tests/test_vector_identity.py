"""Every stored vector knows what produced it (search_models.weights, .runtime; migration
0007): vectors of other weights are never compared with a query (serving refuses, one line,
naming `lookalike model build`, which featurises the catalogue again), legacy rows are adopted
once, and after the `make catalog` steps the catalogue's vectors come from the served runtime."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest

from cli.main import main
from search import ModelUnavailableError, SearchEngine, refeaturize
from search.featurize import ServedFeaturizer, weights_tag
from search.featurize.loader import ModelLoader
from search.featurize.record import read_decision, write_decision
from search.importer import import_directory
from tests.conftest import MODEL_SEED, make_settings, open_test_engine, settings_env

PHOTOS = 20


@pytest.fixture
def photos(catalog_photos: list[Path], tmp_path: Path) -> Path:
    """A folder of 20 of the shop's photos (a small shop: cheap to featurise twice)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in catalog_photos[:: len(catalog_photos) // PHOTOS][:PHOTOS]:
        (folder / path.name).symlink_to(path)
    return folder


def _producer(engine: SearchEngine) -> tuple[str | None, str | None, int]:
    (model,) = engine.stored_models()
    return model.weights, model.runtime, model.vectors


def test_vectors_of_other_weights_are_refused_then_featurised_again(
    extractor: ServedFeaturizer, models_dir: Path, photos: Path, tmp_path: Path
) -> None:
    random_weights = make_settings(tmp_path, models_dir)  # MODEL_WEIGHTS=none
    engine = open_test_engine(random_weights, extractor)
    assert len(import_directory(engine, photos).added) == PHOTOS
    assert _producer(engine) == ("random-seed1234", extractor.runtime, PHOTOS)
    engine.close()

    # The shop sets MODEL_WEIGHTS to a weights file (its bytes are what the tag is made of;
    # the session's model stands in for the model built from it).
    weights_file = tmp_path / "vgg16_notop.h5"
    weights_file.write_bytes(b"the shop's own weights")
    tag = weights_tag(str(weights_file), MODEL_SEED)
    engine = open_test_engine(
        make_settings(tmp_path, models_dir, model_weights=str(weights_file)), extractor
    )
    query = next(photos.iterdir()).read_bytes()
    with pytest.raises(ModelUnavailableError) as refused:
        engine.searcher.search_image(query)
    message = str(refused.value)
    assert "\n" not in message and "random-seed1234" in message and tag in message
    assert "`lookalike model build`" in message

    summary = refeaturize(engine, extractor, weights=tag)  # what `model build` runs
    assert summary.computed == PHOTOS and summary.previous.startswith("random-seed1234")
    assert _producer(engine) == (tag, extractor.runtime, PHOTOS)
    assert len(engine.searcher.search_image(query).items) == 8
    engine.close()

    # Going back to random weights is refused the same way: no silent mix either direction.
    engine = open_test_engine(random_weights, extractor)
    with pytest.raises(ModelUnavailableError, match="lookalike model build"):
        engine.searcher.search_image(query)
    engine.close()


def test_vectors_stored_before_the_producer_was_recorded_are_adopted_once(
    extractor: ServedFeaturizer,
    models_dir: Path,
    photos: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(tmp_path, models_dir)
    engine = open_test_engine(settings, extractor)
    import_directory(engine, photos)
    with engine.sessions.begin() as session:  # as migration 0007 leaves older databases
        from db import repository as repo

        row = repo.get_model(session, name="vgg16_avgpool")
        assert row is not None
        row.weights = row.runtime = None
    engine.close()
    with caplog.at_level(logging.WARNING, logger="search.active_model"):
        engine = open_test_engine(settings, extractor)
        engine.models.warm_up()
        engine.close()
        engine = open_test_engine(settings, extractor)
        engine.models.warm_up()
    adopted = [r for r in caplog.records if "adopted" in r.getMessage()]
    assert len(adopted) == 1, caplog.text
    assert _producer(engine) == ("random-seed1234", extractor.runtime, PHOTOS)
    engine.close()


def test_after_the_make_catalog_steps_every_vector_comes_from_the_served_runtime(
    extractor: ServedFeaturizer,
    models_dir: Path,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Makefile's steps on a fresh shop: db upgrade, model build (provisional: too few
    photos to measure on), catalog import, model build (measured on the photos: here the
    session's measurement stands in for it, so nothing is measured twice)."""
    models = tmp_path / "models"
    models.mkdir()
    for path in models_dir.glob("vgg16_avgpool-random-seed*"):
        shutil.copy2(path, models / path.name)
    loader = ModelLoader(models_dir=models, weights="none", seed=MODEL_SEED)
    measured = read_decision(loader.files("vgg16").decision)
    assert measured is not None
    provisional = "openvino" if measured.chosen != "openvino" else "openvino-bf16"
    write_decision(
        loader.files("vgg16").decision,
        dataclasses.replace(measured, chosen=provisional, photos=0, trials=[]),
    )
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    for key, value in settings_env(make_settings(tmp_path / "shop", models)).items():
        monkeypatch.setenv(key, value)

    assert main(["db", "upgrade"]) == 0
    assert main(["model", "build"]) == 0
    assert main(["catalog", "import", str(photos)]) == 0
    capsys.readouterr()
    write_decision(loader.files("vgg16").decision, measured)  # measured on the shop's photos
    assert main(["model", "build", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"made on {provisional}, queries run on {measured.chosen}" in out, out
    assert f"{PHOTOS} vector(s) of vgg16_avgpool now from random-seed1234 on " in out
    assert main(["model", "list"]) == 0
    assert f"random-seed1234 on {measured.chosen}" in capsys.readouterr().out
    served = loader("vgg16")
    assert isinstance(served, ServedFeaturizer) and served.runtime == measured.chosen
