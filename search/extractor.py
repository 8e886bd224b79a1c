"""VGG16 feature extractor: the only module that imports TensorFlow and Keras.

VGG16 without its classifier, global average pooling: one image (224, 224, 3) -> 512 float32.
The model is built once and saved under MODELS_DIR; later runs load it from there.

Keras defines, builds and loads the model. The forward pass runs on one of these runtimes
(`MODEL_RUNTIME`, default "auto"; docs/benchmarks.md has the measurements behind the choice):

- "openvino-bf16": the Keras model exported once to OpenVINO IR (cached beside the .keras
  file) and compiled for the CPU in bfloat16. On a CPU with native bf16 (AVX512_BF16, AMX) it
  runs twice as fast as any float32 runtime; its vectors are within 0.5% (relative) of Keras'
  float32 ones, cosine >= 0.99998. "auto" picks it when the CPU has native bf16.
- "keras": a traced tf.function of the Keras model (TensorFlow with oneDNN), float32. "auto"
  picks it otherwise: float32 OpenVINO and ONNX Runtime were measured no faster, with more
  memory. "keras-xla" is the same compiled with XLA (measured slower).
- "openvino" (float32, the same numbers as Keras to ~1e-7) and "onnxruntime" (needs tf2onnx):
  measured side by side, chosen only explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

import keras
import tensorflow as tf

from search.featurizer import ModelUnavailableError

log = logging.getLogger(__name__)

INPUT_SHAPE = (224, 224, 3)
FEATURE_DIM = 512
MODEL_NAME = "vgg16_avgpool"
KERAS_NOTOP_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
RUNTIMES = ("auto", "openvino", "keras", "keras-xla", "onnxruntime", "openvino-bf16")
RUNTIME_ENV = "MODEL_RUNTIME"


def weights_tag(weights: str, seed: int) -> str:
    """A short name for the weights, part of the cached model's file name."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return f"random-seed{seed}"
    path = Path(weights)
    if not path.is_file():
        raise ModelUnavailableError(
            f"MODEL_WEIGHTS points to {weights!r}, which is not a file. Give the path of a "
            f"VGG16 weights file (e.g. {KERAS_NOTOP_WEIGHTS_FILE}), 'imagenet' or 'none'."
        )
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"file-{digest.hexdigest()[:12]}"


def cached_model_path(models_dir: Path, weights: str, seed: int) -> Path:
    return models_dir / f"{MODEL_NAME}-{weights_tag(weights, seed)}.keras"


def _build_vgg16(weights: str, seed: int) -> Any:
    if weights.lower() == "none":
        log.warning(
            "MODEL_WEIGHTS=none: VGG16 has RANDOM weights (seed %d). Every mechanism works, but "
            "results are NOT visually meaningful. Use MODEL_WEIGHTS=imagenet or a weights file "
            "for real searches.",
            seed,
        )
        keras.utils.set_random_seed(seed)
        keras_weights: str | None = None
    elif weights == "imagenet":
        keras_weights = "imagenet"
    else:
        keras_weights = weights  # a file: weights_tag() has checked that it exists
    try:
        return keras.applications.VGG16(
            include_top=False, weights=keras_weights, input_shape=INPUT_SHAPE, pooling="avg"
        )
    except Exception as exc:
        if weights == "imagenet":
            raise ModelUnavailableError(
                "Could not get VGG16's ImageNet weights (Keras downloads them once and caches "
                "them in ~/.keras/models; is this machine offline?). Copy "
                f"{KERAS_NOTOP_WEIGHTS_FILE} here and set MODEL_WEIGHTS=/path/to/it, or set "
                f"MODEL_WEIGHTS=none for an offline trial. Cause: {exc}"
            ) from exc
        raise ModelUnavailableError(
            f"Could not load VGG16 weights from {weights!r}: {exc}"
        ) from exc


def _resolve_runtime(runtime: str | None) -> str:
    """Runtime "auto" (or unset) -> "openvino-bf16" on a CPU with native bfloat16 when
    OpenVINO is installed, else "keras"."""
    # Settings.model_runtime passes MODEL_RUNTIME in; the environment is read here too so the
    # benchmark's child processes (which build extractors directly) follow it.
    choice = (runtime or os.environ.get(RUNTIME_ENV) or "auto").strip().lower()
    if choice not in RUNTIMES:
        raise ModelUnavailableError(
            f"{RUNTIME_ENV}={choice!r} is not a runtime; use one of {', '.join(RUNTIMES)}"
        )
    if choice == "auto":
        try:
            import openvino as ov

            capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        except Exception:  # not installed, or no CPU plugin: plain Keras
            return "keras"
        return "openvino-bf16" if "BF16" in capabilities else "keras"
    return choice


def _write_atomically(targets: list[Path], write: Callable[[list[Path]], None]) -> None:
    """write(temporary paths), then rename each to its target in order: no half-written file."""
    partials = [t.with_name(f".{t.name}.{os.getpid()}.partial{t.suffix}") for t in targets]
    try:
        write(partials)
        for partial, target in zip(partials, targets, strict=True):
            os.replace(partial, target)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)


def _openvino_forward(
    model: Any, keras_path: Path | None, precision: str = "f32"
) -> Callable[[np.ndarray], np.ndarray]:
    """The model exported to OpenVINO IR (cached beside `keras_path`), compiled for the CPU.

    float32 precision (the CPU plugin would otherwise pick bfloat16 on CPUs that have it) and
    the latency hint: one stream over every core, which suits one batch at a time.
    """
    import tempfile

    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    with tempfile.TemporaryDirectory(prefix="lookalike-ov-") as scratch:
        xml = keras_path.with_suffix(".openvino.xml") if keras_path is not None else None
        ir_model = None
        if (
            xml is not None
            and keras_path is not None
            and xml.is_file()
            and xml.with_suffix(".bin").is_file()
            and xml.stat().st_mtime >= keras_path.stat().st_mtime  # not older than the model
        ):
            try:
                ir_model = core.read_model(xml)
            except Exception as exc:  # a half-written or foreign file: export it again
                log.warning(
                    "cached OpenVINO model %s is unreadable (%s); exporting again", xml, exc
                )
        if ir_model is None:
            exported = Path(scratch) / "model.xml"
            model.export(str(exported), format="openvino", verbose=False)
            ir_model = core.read_model(exported)
            if xml is not None:
                # The .xml finds its weights by stem: the .bin is renamed into place first.
                def copy(paths: list[Path]) -> None:
                    os.replace(exported.with_suffix(".bin"), paths[0])
                    os.replace(exported, paths[1])

                try:
                    _write_atomically([xml.with_suffix(".bin"), xml], copy)
                    log.info("exported %s to OpenVINO IR at %s", MODEL_NAME, xml)
                except OSError as exc:
                    log.warning("could not cache the OpenVINO model in %s: %s", xml.parent, exc)
        compiled = core.compile_model(ir_model, "CPU", config)
    request = compiled.create_infer_request()

    def forward(batch: np.ndarray) -> np.ndarray:
        request.infer({0: batch})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy

    return forward


def _onnxruntime_forward(model: Any, keras_path: Path | None) -> Callable[[np.ndarray], np.ndarray]:
    """The model exported to ONNX (tf2onnx, cached beside `keras_path`) on ONNX Runtime."""
    import onnxruntime as ort

    path = keras_path.with_suffix(".onnx") if keras_path is not None else None
    if path is None or not path.is_file():
        import tempfile

        if path is None:
            path = Path(tempfile.mkdtemp()) / "model.onnx"
        model(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))  # export needs a called model
        _write_atomically(
            [path], lambda paths: model.export(str(paths[0]), format="onnx", verbose=False)
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0], dtype=np.float32)

    return forward


class VGG16Extractor:
    """VGG16 avg-pool features. `embed` is thread-safe (calls are serialised)."""

    model_name = MODEL_NAME
    dim = FEATURE_DIM

    def __init__(
        self,
        model: Any,
        *,
        source: str,
        runtime: str | None = None,
        cache_path: Path | None = None,
    ) -> None:
        self._model = model
        self.source = source  # where the model came from, for logs
        self._lock = threading.Lock()
        chosen = _resolve_runtime(runtime)
        forward: Callable[[np.ndarray], np.ndarray] | None = None
        if chosen in ("openvino", "openvino-bf16", "onnxruntime"):
            try:
                if chosen == "onnxruntime":
                    forward = _onnxruntime_forward(model, cache_path)
                else:
                    precision = "bf16" if chosen == "openvino-bf16" else "f32"
                    forward = _openvino_forward(model, cache_path, precision)
            except ImportError as exc:
                if runtime is not None and runtime != "auto":
                    raise ModelUnavailableError(f"runtime {chosen!r} is not installed") from exc
                log.warning("%s is not usable (%s): running the model on Keras", chosen, exc)
                chosen = "keras"
        if forward is None:
            chosen = "keras-xla" if chosen == "keras-xla" else "keras"
            # One traced graph for every batch size: much faster than model.predict for small
            # batches (predict builds a tf.data pipeline per call).
            traced = tf.function(
                lambda x: model(x, training=False),
                input_signature=[tf.TensorSpec(shape=(None, *INPUT_SHAPE), dtype=tf.float32)],
                reduce_retracing=True,
                jit_compile=chosen == "keras-xla",
            )

            def forward(batch: np.ndarray) -> np.ndarray:
                out = traced(tf.convert_to_tensor(batch, dtype=tf.float32))
                return np.asarray(out, dtype=np.float32)

        self.runtime = chosen
        self._run = forward
        log.info("%s runs on %s", MODEL_NAME, chosen)

    @property
    def keras_model(self) -> Any:
        """The Keras model itself (for benchmarks and exports)."""
        return self._model

    @classmethod
    def load(
        cls,
        *,
        models_dir: Path,
        weights: str = "imagenet",
        seed: int = 1234,
        runtime: str | None = None,
    ) -> VGG16Extractor:
        """Load the cached model from `models_dir`, or build it and cache it there.

        `runtime`: "auto" (default, or MODEL_RUNTIME), "openvino", "keras" or "onnxruntime".
        """
        path = cached_model_path(models_dir, weights, seed)
        if path.is_file():
            try:
                loaded = keras.models.load_model(path, compile=False)
            except Exception as exc:  # a half-written or foreign file: rebuild it
                log.warning("cached model %s is unreadable (%s); rebuilding it", path, exc)
            else:
                log.info("loaded %s from %s", MODEL_NAME, path)
                if weights.lower() == "none":
                    log.warning("using RANDOM VGG16 weights (MODEL_WEIGHTS=none): not for real use")
                return cls(loaded, source=str(path), runtime=runtime, cache_path=path)
        model = _build_vgg16(weights, seed)
        models_dir.mkdir(parents=True, exist_ok=True)
        # Write to a temporary name and rename, so a crash never leaves a truncated model file.
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
        cache_path: Path | None = path
        try:
            model.save(partial)
            os.replace(partial, path)
            log.info("built %s (%s weights) and saved it to %s", MODEL_NAME, weights, path)
        except OSError as exc:
            log.warning("could not cache the model in %s: %s", models_dir, exc)
            cache_path = None
        finally:
            partial.unlink(missing_ok=True)
        # Files derived from an older model of that name (OpenVINO IR, ONNX) are stale now.
        for suffix in (".openvino.xml", ".openvino.bin", ".onnx"):
            with contextlib.suppress(OSError):
                path.with_suffix(suffix).unlink(missing_ok=True)
        return cls(model, source=f"built ({weights})", runtime=runtime, cache_path=cache_path)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(n, 224, 224, 3) float32 caffe-preprocessed images -> (n, 512) float32 vectors."""
        if batch.ndim != 4 or batch.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected (n, 224, 224, 3), got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        contiguous = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            return self._run(contiguous)

    def warm_up(self) -> None:
        """Run one batch so the first customer does not pay for graph tracing."""
        self.embed(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))
