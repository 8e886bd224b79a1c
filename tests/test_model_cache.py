"""The session model's cache (tests/model_cache.py): what the session built is kept, and a
later session's copy of it is served as it is, without building or measuring again."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from search.featurize import ModelLoader
from tests.conftest import MODEL_SEED, session_model_cache
from tests.model_cache import KEEP, ModelCache


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


def test_a_models_older_entries_are_pruned_and_one_in_use_is_left(tmp_path: Path) -> None:
    root, built = tmp_path / "cache", tmp_path / "built"
    built.mkdir()
    (built / "m.keras").write_bytes(b"model")
    entries, busy = [], None
    for n in range(KEEP + 2):
        cache = ModelCache("m", parameters=f"build {n}", photos=[], root=root)
        with cache.lock():
            cache.store(built)
        os.utime(cache.entry, (1_000_000 + n, 1_000_000 + n))  # stored in this order
        entries.append(cache.entry)
        if n == 0:  # the oldest is in use by another process from now on (restoring it, say)
            busy = (root / f"{cache.entry.name}.lock").open("a")
            fcntl.flock(busy, fcntl.LOCK_EX)
    assert busy is not None
    kept = sorted(path for path in root.iterdir() if path.is_dir())
    # The newest KEEP, and the one in use; the others gone, with their lock files.
    assert kept == sorted([entries[0], *entries[-KEEP:]])
    assert not (root / f"{entries[1].name}.lock").exists()
    busy.close()
