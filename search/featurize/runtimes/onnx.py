"""ONNX Runtime: the ONNX export on the CPU provider."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from search.featurize.runtimes.forward import Forward

__all__ = ["onnxruntime_forward"]


def onnxruntime_forward(path: Path) -> Forward:
    """An ONNX file on ONNX Runtime's CPU provider, one thread per core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0], dtype=np.float32)

    return forward
