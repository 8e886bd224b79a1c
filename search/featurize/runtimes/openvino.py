"""OpenVINO: an exported IR file (float32, bfloat16 or int8) compiled for this CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search.featurize.runtimes.forward import Forward

__all__ = ["openvino_forward"]


def openvino_forward(xml: Path, precision: str = "f32") -> Forward:
    """An IR file compiled for the CPU with the latency hint: one stream over every core,
    which suits one batch at a time."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(core.read_model(xml), "CPU", config)
    request = compiled.create_infer_request()

    def forward(batch: np.ndarray) -> np.ndarray:
        request.infer({0: batch})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy

    return forward
