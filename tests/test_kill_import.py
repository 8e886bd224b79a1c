"""kill -9 of `lookalike catalog import` on a fresh shop while the child it started (the model's
export) runs: the child dies with it, and the next import adds its photos (issue 20). The
cheap version of `lookalike bench`'s "kill" section (bench/kill_import.py: 20 kills at random
moments over the import's whole life)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.kill_import import kill_import_rounds, product_count, shop_env
from search.featurize import ModelFiles, cached_model_path
from tests.conftest import MODEL_SEED


@pytest.mark.slow
def test_a_killed_import_leaves_no_process_and_the_next_one_imports(
    keras_extractor: object, models_dir: Path, catalog_photos: list[Path], tmp_path: Path
) -> None:
    keras = ModelFiles(cached_model_path(models_dir, "none", MODEL_SEED, "vgg16")).keras
    root = tmp_path / "shop"
    run = kill_import_rounds(
        root,
        photos=catalog_photos[::10],
        keras_model=keras,
        weights="none",
        seed=MODEL_SEED,
        rounds=2,
        per_round=8,
        max_delay_s=1.0,
        after_child=True,  # killed 0-1 s after its exporting child loaded TensorFlow
    )
    assert [r.finished for r in run.rounds] == [False, False]
    assert all(r.children_at_kill >= 1 for r in run.rounds), run.rounds
    assert run.left == 0, [r.left for r in run.rounds]  # no child outlived its import
    assert [r.products for r in run.rounds] == [0, 0]  # killed before its first batch
    both = root / "both-rounds"  # the two killed rounds' photos, imported again
    both.mkdir()
    for photo in (root / "photos").glob("*/*.jpg"):
        (both / photo.name).symlink_to(photo.resolve())
    done = subprocess.run(
        [sys.executable, "-P", "-m", "cli", "catalog", "import", str(both), "-q"],
        cwd=root,
        env=shop_env(root, weights="none", seed=MODEL_SEED),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Nothing measured yet: it went on with the provisional runtime, and said so.
    assert "without measuring" in done.stderr
    assert product_count(root / "shop" / "lookalike.db") == 16
