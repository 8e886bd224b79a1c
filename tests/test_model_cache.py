"""The session model's cache (tests/model_cache.py): what the session built is kept, and a
later session's copy of it is served as it is, without building or measuring again."""

from __future__ import annotations

from pathlib import Path

from search.featurize import ModelLoader
from tests.conftest import MODEL_SEED, session_model_cache


def test_the_session_model_is_kept_and_a_copy_of_it_holds_as_recorded(
    session_model: ModelLoader, models_dir: Path, catalog_photos: list[Path], tmp_path: Path
) -> None:
    cache = session_model_cache(session_model, catalog_photos)
    stem = session_model.files("vgg16").keras.stem
    kept = {path.name for path in cache.entry.iterdir()}
    assert {f"{stem}.keras", f"{stem}.runtime.json", f"{stem}.openvino.xml"} <= kept, kept
    assert f"{stem}.int8.openvino.bin" in kept and not any(n.endswith(".lock") for n in kept)

    copy = tmp_path / "models"
    copy.mkdir()
    assert cache.restore(copy)
    for name in kept:  # byte for byte, modification times kept
        ours, theirs = copy / name, models_dir / name
        assert ours.read_bytes() == theirs.read_bytes(), name
        assert ours.stat().st_mtime_ns == theirs.stat().st_mtime_ns, name
    # The record names the model by size and mtime: it still holds for the copy.
    loader = ModelLoader(models_dir=copy, weights="none", seed=MODEL_SEED)
    assert loader.current_decision("vgg16") == session_model.current_decision("vgg16") is not None
