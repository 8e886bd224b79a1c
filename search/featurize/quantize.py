"""Post-training int8 quantisation of the exported float32 model with OpenVINO's NNCF,
calibrated on the shop's own photos. Imports OpenVINO and NNCF, never TensorFlow."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from search.featurize.files import write_atomically

__all__ = ["quantize_int8"]

log = logging.getLogger(__name__)


def quantize_int8(source_xml: Path, target_xml: Path, samples: np.ndarray) -> Path:
    """The float32 IR at `source_xml` quantised to int8 (NNCF's default: 8-bit weights and
    activations, ranges from `samples`), saved atomically as `target_xml` (+ .bin).

    samples: (n, H, W, 3) float32 model inputs of the shop's photos (n >= 1; NNCF uses them
    all). Raises ImportError when NNCF is not installed.
    """
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(source_xml)
    dataset = nncf.Dataset(list(samples), lambda image: image[np.newaxis])  # (1, H, W, 3)
    # NNCF draws its progress bar on stdout; `lookalike search --json` owns stdout.
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(model, dataset, subset_size=len(samples))
    with tempfile.TemporaryDirectory(prefix="lookalike-int8-") as scratch:
        saved = Path(scratch) / "model.xml"
        ov.save_model(quantized, saved)

        # The .xml finds its weights by stem: the .bin is renamed into place first.
        def move(paths: list[Path]) -> None:
            os.replace(saved.with_suffix(".bin"), paths[0])
            os.replace(saved, paths[1])

        write_atomically([target_xml.with_suffix(".bin"), target_xml], move)
    log.info("quantised %s to int8 on %d photos: %s", source_xml.name, len(samples), target_xml)
    return target_xml
