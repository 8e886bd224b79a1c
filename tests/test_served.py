"""The served process never imports TensorFlow: once the model is exported and the runtime
chosen, the bot's and web server's start and `lookalike search` load only that runtime, and
its vectors match float32 Keras' within the fidelity gate."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from lookalike.settings import Settings
from search.featurize.fidelity import DEFAULT_GATE, measure_fidelity
from search.featurize.files import ModelFiles, cached_model_path
from search.featurize.preprocess import preprocess_image
from search.featurize.record import read_decision, write_decision
from search.featurize.runtimes.keras import KerasExtractor
from search.featurize.served import ServedFeaturizer
from tests.conftest import MODEL_SEED, REPO_ROOT, settings_env


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


def test_a_missing_int8_file_is_served_on_float32_openvino_without_tensorflow(
    extractor: ServedFeaturizer, models_dir: Path, footwear: Path, tmp_path: Path
) -> None:
    """The runtime recorded for this CPU is int8 but its file is gone (a models folder copied
    without it, a half-finished clean-up): the serving process neither quantises nor imports
    TensorFlow; it serves float32 OpenVINO and says, in one line, which command fixes it."""
    models = tmp_path / "models"
    models.mkdir()
    for path in models_dir.glob("vgg16_avgpool-random-seed*"):
        if "int8" not in path.name:
            shutil.copy2(path, models / path.name)
    files = ModelFiles(cached_model_path(models, "none", MODEL_SEED, "vgg16"))
    recorded = read_decision(files.decision)
    assert recorded is not None and not files.int8_xml.exists()
    write_decision(files.decision, dataclasses.replace(recorded, chosen="openvino-int8"))
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.choice_driver", str(models), str(tmp_path)],
        input="go\n",
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"runtime": "openvino", "tensorflow": False}
    said = [line for line in done.stderr.splitlines() if "lookalike model build" in line]
    assert len(said) == 1 and "openvino-int8" in said[0], done.stderr[-3000:]
    assert not files.int8_xml.exists()  # nothing was quantised
