"""The served process never imports TensorFlow: once the model is exported and the runtime
chosen, the bot's and web server's start and `lookalike search` load only that runtime, and
its vectors match float32 Keras' within the fidelity gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from lookalike.settings import Settings
from search.featurize.fidelity import DEFAULT_GATE, measure_fidelity
from search.featurize.preprocess import preprocess_image
from search.featurize.runtimes.keras import KerasExtractor
from search.featurize.served import ServedFeaturizer
from tests.conftest import REPO_ROOT, settings_env


def test_a_served_process_never_imports_tensorflow(
    catalog_settings: Settings,
    extractor: ServedFeaturizer,
    keras_extractor: KerasExtractor,
    catalog_photos: list[Path],
    footwear: Path,
    tmp_path: Path,
) -> None:
    photos = catalog_photos[:: max(1, len(catalog_photos) // 24)][:24]  # the calibration set
    report = tmp_path / "served.json"
    env = {**settings_env(catalog_settings), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("MODEL_RUNTIME", None)  # auto: the runtime recorded for this CPU
    query = footwear / "queries" / "search_image_01.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "tests.served_driver", str(report), str(query)]
        + [str(p) for p in photos],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(report.read_text())
    assert seen["tensorflow"] == [] and seen["keras"] == [], "TensorFlow was imported to serve"
    assert seen["runtime"] == extractor.runtime
    assert seen["search_exit"] == 0 and seen["search_results"] == 8
    served = np.asarray(seen["vectors"], dtype=np.float32)
    expected = keras_extractor.embed(np.stack([preprocess_image(p.read_bytes()) for p in photos]))
    fidelity = measure_fidelity(expected, served)
    assert DEFAULT_GATE.refusal(fidelity) is None, fidelity
