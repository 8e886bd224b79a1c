"""The feature model served from its exported files, without TensorFlow.

Once search.featurize.runtimes.keras has built the Keras model and exported it (OpenVINO IR, int8
IR, ONNX; search.featurize.files names them), the bot, the web server and `lookalike search` load
only the runtime that runs it: OpenVINO (float32, bfloat16 or int8) or ONNX Runtime. Importing this
module imports neither TensorFlow nor Keras (tests/test_served.py checks it in a subprocess).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from search.featurize.backbones import BackboneSpec
from search.featurize.files import ModelFiles
from search.featurize.runtimes.forward import Forward
from search.featurize.runtimes.onnx import onnxruntime_forward
from search.featurize.runtimes.openvino import openvino_forward

__all__ = [
    "SERVED_RUNTIMES",
    "Forward",
    "ServedFeaturizer",
    "check_vectors",
    "embed_checked",
    "forward_for",
    "load_served",
    "runtime_file",
]

log = logging.getLogger(__name__)


# The runtimes that run an exported file. OpenVINO's precision hint: "f32" keeps float32 (the
# CPU plugin would otherwise pick bfloat16 on CPUs that have it); the int8 IR runs its
# quantised layers in int8 and the rest in float32.
SERVED_RUNTIMES = ("openvino", "openvino-bf16", "openvino-int8", "onnxruntime")
_OPENVINO_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}


def runtime_file(files: ModelFiles, runtime: str) -> Path:
    """The exported file a served runtime runs."""
    if runtime == "onnxruntime":
        return files.onnx
    if runtime == "openvino-int8":
        return files.int8_xml
    return files.openvino_xml


def forward_for(files: ModelFiles, runtime: str) -> Forward:
    """The forward function of a served runtime over its exported file."""
    path = runtime_file(files, runtime)
    if runtime == "onnxruntime":
        return onnxruntime_forward(path)
    return openvino_forward(path, _OPENVINO_PRECISION[runtime])


def check_vectors(vectors: object, *, rows: int, dim: int) -> None:
    """Raise ValueError (one line) unless `vectors` is a (rows, dim) array of finite floats:
    what every runtime must return before it may be measured or serve."""
    shape = getattr(vectors, "shape", None)
    if not isinstance(vectors, np.ndarray) or shape != (rows, dim):
        raise ValueError(f"returned shape {shape}, expected ({rows}, {dim})")
    if not np.isfinite(vectors).all():
        raise ValueError("returned non-finite values (NaN or infinity)")


def embed_checked(
    forward: Forward, lock: threading.Lock, spec: BackboneSpec, batch: np.ndarray
) -> np.ndarray:
    """`forward(batch)` under `lock`, once the batch is checked: (n, H, W, 3) in the
    backbone's input shape -> (n, dim) float32; an empty batch never reaches the runtime."""
    expected = spec.input_shape
    if batch.ndim != 4 or batch.shape[1:] != expected:
        raise ValueError(f"expected (n, {', '.join(map(str, expected))}), got {batch.shape}")
    if batch.shape[0] == 0:
        return np.zeros((0, spec.dim), dtype=np.float32)
    contiguous = np.ascontiguousarray(batch, dtype=np.float32)
    with lock:
        return forward(contiguous)


class ServedFeaturizer:
    """A backbone's avg-pool features from an exported file. `embed` is thread-safe (calls
    are serialised: one inference request)."""

    def __init__(self, spec: BackboneSpec, forward: Forward, *, runtime: str, source: str) -> None:
        self.spec = spec
        self.model_name = spec.model_name
        self.dim = spec.dim
        self.input_size = spec.input_size
        self.runtime = runtime
        self.source = source  # the file it runs, for logs and `lookalike model list`
        self._forward = forward
        self._lock = threading.Lock()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) float32 images preprocessed for this backbone -> (n, dim) float32."""
        return embed_checked(self._forward, self._lock, self.spec, batch)

    def warm_up(self) -> None:
        """Run one batch so the first customer does not pay for the first inference, and
        check its output: a runtime that gives another shape or non-finite values raises
        ValueError (load_served then refuses it)."""
        batch = np.zeros((1, *self.spec.input_shape), dtype=np.float32)
        check_vectors(self.embed(batch), rows=1, dim=self.dim)


def load_served(files: ModelFiles, spec: BackboneSpec, runtime: str) -> ServedFeaturizer | None:
    """The served model for `runtime`, or None when its exported file is missing, older than
    the .keras model, or unreadable (the caller exports it again)."""
    path = runtime_file(files, runtime)
    if not files.fresh(path):
        return None
    try:
        forward = forward_for(files, runtime)
        featurizer = ServedFeaturizer(spec, forward, runtime=runtime, source=str(path))
        featurizer.warm_up()
    except ImportError as exc:
        log.warning("runtime %s is not installed (%s)", runtime, exc)
        return None
    except Exception as exc:  # a half-written or foreign file: export it again
        log.warning("exported model %s is unusable (%s: %s)", path, type(exc).__name__, exc)
        return None
    log.info("%s runs on %s from %s (no TensorFlow)", spec.model_name, runtime, path)
    return featurizer
