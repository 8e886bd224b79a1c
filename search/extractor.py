"""Keras backbone feature extractor: the only module that imports TensorFlow and Keras.

A keras.applications ImageNet model (search.backbones: VGG16 by default, ResNet50,
InceptionV3, DenseNet121, EfficientNetB0) without its classifier, global average pooling:
one preprocessed image (H, W, 3) -> one vector of the backbone's size, float32 (VGG16:
(224, 224, 3) -> 512). The model is built once and saved under MODELS_DIR as
<backbone>_avgpool-<weights tag>.keras; later runs load it from there.

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

The measurements are VGG16's. Every runtime is tried for every backbone: one that cannot
convert or run a backbone (ONNX Runtime rejects the EfficientNetB0 export: its Normalization
constants become graph inputs) is replaced by "keras", with a warning in the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

import keras
import tensorflow as tf

from search.backbones import BACKBONES, DEFAULT_BACKBONE, BackboneSpec, get_backbone
from search.featurizer import ModelUnavailableError

log = logging.getLogger(__name__)

# VGG16's, the default backbone's (kept for callers written before there were several).
INPUT_SHAPE = BACKBONES[DEFAULT_BACKBONE].input_shape
FEATURE_DIM = BACKBONES[DEFAULT_BACKBONE].dim
MODEL_NAME = BACKBONES[DEFAULT_BACKBONE].model_name
KERAS_NOTOP_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
RUNTIMES = ("auto", "openvino", "keras", "keras-xla", "onnxruntime", "openvino-bf16")
RUNTIME_ENV = "MODEL_RUNTIME"


@dataclass(frozen=True, slots=True)
class _KerasApplication:
    """How Keras builds one backbone: its keras.applications class and the name of its
    ImageNet no-top weights file (what Keras downloads to ~/.keras/models)."""

    constructor: str
    notop_weights_file: str


_KERAS_APPLICATIONS: dict[str, _KerasApplication] = {
    "vgg16": _KerasApplication("VGG16", KERAS_NOTOP_WEIGHTS_FILE),
    "resnet50": _KerasApplication(
        "ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "inception_v3": _KerasApplication(
        "InceptionV3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "densenet121": _KerasApplication(
        "DenseNet121", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "efficientnet_b0": _KerasApplication("EfficientNetB0", "efficientnetb0_notop.h5"),
}


def _backbone(backbone: str | BackboneSpec) -> BackboneSpec:
    """The spec for a name (or a spec), as ModelUnavailableError when unknown: the error
    every caller of `KerasExtractor.load` already reports to the operator."""
    if isinstance(backbone, BackboneSpec):
        return backbone
    try:
        return get_backbone(backbone)
    except ValueError as exc:
        raise ModelUnavailableError(str(exc)) from exc


def weights_tag(weights: str, seed: int, backbone: str | BackboneSpec = DEFAULT_BACKBONE) -> str:
    """A short name for the weights, part of the cached model's file name."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return f"random-seed{seed}"
    path = Path(weights)
    if not path.is_file():
        spec = _backbone(backbone)
        example = _KERAS_APPLICATIONS[spec.name].notop_weights_file
        raise ModelUnavailableError(
            f"MODEL_WEIGHTS points to {weights!r}, which is not a file. Give the path of a "
            f"{spec.name} weights file (e.g. {example}), 'imagenet' or 'none'."
        )
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"file-{digest.hexdigest()[:12]}"


def cached_model_path(
    models_dir: Path, weights: str, seed: int, backbone: str | BackboneSpec = DEFAULT_BACKBONE
) -> Path:
    """models_dir/<backbone>_avgpool-<weights tag>.keras, e.g. vgg16_avgpool-imagenet.keras."""
    spec = _backbone(backbone)
    return models_dir / f"{spec.model_name}-{weights_tag(weights, seed, spec)}.keras"


def _build(spec: BackboneSpec, weights: str, seed: int) -> Any:
    """keras.applications.<Class>(include_top=False, pooling="avg") at the spec's input size."""
    application = _KERAS_APPLICATIONS[spec.name]
    if weights.lower() == "none":
        log.warning(
            "MODEL_WEIGHTS=none: %s has RANDOM weights (seed %d). Every mechanism works, but "
            "results are NOT visually meaningful. Use MODEL_WEIGHTS=imagenet or a weights file "
            "for real searches.",
            spec.name,
            seed,
        )
        keras.utils.set_random_seed(seed)
        keras_weights: str | None = None
    elif weights == "imagenet":
        keras_weights = "imagenet"
    else:
        keras_weights = weights  # a file: weights_tag() has checked that it exists
        if spec.name == "efficientnet_b0":
            # Keras adds a Rescaling(1 / sqrt(ImageNet std)) layer after the Normalization
            # only when weights == "imagenet"; built from a file, the graph lacks it.
            log.warning(
                "efficientnet_b0 from a weights file: Keras builds it without the extra "
                "ImageNet-std rescaling it adds for weights='imagenet', so Keras' own ImageNet "
                "file gives different vectors this way. For ImageNet features offline, copy "
                "%s to ~/.keras/models/ and set MODEL_WEIGHTS=imagenet.",
                application.notop_weights_file,
            )
    try:
        return getattr(keras.applications, application.constructor)(
            include_top=False, weights=keras_weights, input_shape=spec.input_shape, pooling="avg"
        )
    except Exception as exc:
        if weights == "imagenet":
            raise ModelUnavailableError(
                f"Could not get {spec.name}'s ImageNet weights (Keras downloads them once and "
                "caches them in ~/.keras/models; is this machine offline?). Copy "
                f"{application.notop_weights_file} here and set MODEL_WEIGHTS=/path/to/it, or "
                f"set MODEL_WEIGHTS=none for an offline trial. Cause: {exc}"
            ) from exc
        raise ModelUnavailableError(
            f"Could not load {spec.name} weights from {weights!r}: {exc}"
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
    model: Any, keras_path: Path | None, precision: str = "f32", label: str = MODEL_NAME
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
                    log.info("exported %s to OpenVINO IR at %s", label, xml)
                except OSError as exc:
                    log.warning("could not cache the OpenVINO model in %s: %s", xml.parent, exc)
        compiled = core.compile_model(ir_model, "CPU", config)
    request = compiled.create_infer_request()

    def forward(batch: np.ndarray) -> np.ndarray:
        request.infer({0: batch})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy

    return forward


def _onnxruntime_forward(
    model: Any, keras_path: Path | None, input_shape: tuple[int, int, int] = INPUT_SHAPE
) -> Callable[[np.ndarray], np.ndarray]:
    """The model exported to ONNX (tf2onnx, cached beside `keras_path`) on ONNX Runtime.
    `input_shape`: one image, (H, W, 3)."""
    import onnxruntime as ort

    path = keras_path.with_suffix(".onnx") if keras_path is not None else None
    if path is None or not path.is_file():
        import tempfile

        if path is None:
            path = Path(tempfile.mkdtemp()) / "model.onnx"
        model(np.zeros((1, *input_shape), dtype=np.float32))  # export needs a called model
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


def _check_forward(forward: Callable[[np.ndarray], np.ndarray], spec: BackboneSpec) -> None:
    """One all-zero image through a converted model: some exports only fail when run
    (ONNX Runtime on EfficientNetB0), and this is the moment to fall back to Keras."""
    out = forward(np.zeros((1, *spec.input_shape), dtype=np.float32))
    if out.shape != (1, spec.dim) or not np.isfinite(out).all():
        raise RuntimeError(
            f"a probe image gave {out.shape} values (finite: {np.isfinite(out).all()})"
        )


class KerasExtractor:
    """A Keras backbone's avg-pool features. `embed` is thread-safe (calls are serialised).

    `spec` says which backbone; `model_name` (the name vectors are stored under), `dim` and
    `input_size` (height, width) are the spec's.
    """

    def __init__(
        self,
        model: Any,
        *,
        source: str,
        runtime: str | None = None,
        cache_path: Path | None = None,
        backbone: str | BackboneSpec = DEFAULT_BACKBONE,
    ) -> None:
        self.spec = _backbone(backbone)
        self.model_name = self.spec.model_name
        self.dim = self.spec.dim
        self.input_size = self.spec.input_size
        self._model = model
        self.source = source  # where the model came from, for logs
        self._lock = threading.Lock()
        spec = self.spec
        chosen = _resolve_runtime(runtime)
        forward: Callable[[np.ndarray], np.ndarray] | None = None
        if chosen in ("openvino", "openvino-bf16", "onnxruntime", "keras-xla"):
            try:
                if chosen == "onnxruntime":
                    forward = _onnxruntime_forward(model, cache_path, spec.input_shape)
                elif chosen == "keras-xla":
                    forward = _keras_forward(model, spec, jit_compile=True)
                else:
                    precision = "bf16" if chosen == "openvino-bf16" else "f32"
                    forward = _openvino_forward(model, cache_path, precision, spec.model_name)
                _check_forward(forward, spec)
            except ImportError as exc:
                if runtime is not None and runtime != "auto":
                    raise ModelUnavailableError(f"runtime {chosen!r} is not installed") from exc
                log.warning("%s is not usable (%s): running the model on Keras", chosen, exc)
                chosen, forward = "keras", None
            except Exception as exc:  # conversion or compilation failed for this backbone
                log.warning(
                    "runtime %s cannot run %s (%s: %s): running it on Keras instead",
                    chosen,
                    spec.model_name,
                    type(exc).__name__,
                    exc,
                )
                chosen, forward = "keras", None
        if forward is None:
            chosen = "keras"
            forward = _keras_forward(model, spec, jit_compile=False)
        self.runtime = chosen
        self._run = forward
        log.info("%s runs on %s", spec.model_name, chosen)

    @property
    def keras_model(self) -> Any:
        """The Keras model itself (for benchmarks and exports)."""
        return self._model

    @classmethod
    def load(
        cls,
        *,
        models_dir: Path,
        backbone: str | BackboneSpec = DEFAULT_BACKBONE,
        weights: str = "imagenet",
        seed: int = 1234,
        runtime: str | None = None,
    ) -> KerasExtractor:
        """Load the cached model from `models_dir`, or build it and cache it there.

        `backbone`: a name from search.backbones.BACKBONES (default "vgg16") or its spec; an
        unknown name raises ModelUnavailableError. `weights`: "imagenet", "none" (random,
        from `seed`) or the path of a weights file. `runtime`: "auto" (default, or
        MODEL_RUNTIME), "keras", "keras-xla", "openvino", "openvino-bf16" or "onnxruntime".
        """
        spec = _backbone(backbone)
        path = cached_model_path(models_dir, weights, seed, spec)
        if path.is_file():
            try:
                loaded = keras.models.load_model(path, compile=False)
                # A file of that name holding another model (renamed by hand, say) is rebuilt.
                shapes = (tuple(loaded.input_shape[1:]), tuple(loaded.output_shape[1:]))
                if shapes != (spec.input_shape, (spec.dim,)):
                    raise ValueError(f"it maps {shapes[0]} to {shapes[1]}")
            except Exception as exc:  # a half-written or foreign file: rebuild it
                log.warning("cached model %s is unusable (%s); rebuilding it", path, exc)
            else:
                log.info("loaded %s from %s", spec.model_name, path)
                if weights.lower() == "none":
                    log.warning(
                        "using RANDOM %s weights (MODEL_WEIGHTS=none): not for real use", spec.name
                    )
                return cls(
                    loaded, source=str(path), runtime=runtime, cache_path=path, backbone=spec
                )
        model = _build(spec, weights, seed)
        models_dir.mkdir(parents=True, exist_ok=True)
        # Write to a temporary name and rename, so a crash never leaves a truncated model file.
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
        cache_path: Path | None = path
        try:
            model.save(partial)
            os.replace(partial, path)
            log.info("built %s (%s weights) and saved it to %s", spec.model_name, weights, path)
        except OSError as exc:
            log.warning("could not cache the model in %s: %s", models_dir, exc)
            cache_path = None
        finally:
            partial.unlink(missing_ok=True)
        # Files derived from an older model of that name (OpenVINO IR, ONNX) are stale now.
        for suffix in (".openvino.xml", ".openvino.bin", ".onnx"):
            with contextlib.suppress(OSError):
                path.with_suffix(suffix).unlink(missing_ok=True)
        return cls(
            model,
            source=f"built ({weights})",
            runtime=runtime,
            cache_path=cache_path,
            backbone=spec,
        )

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) float32 images preprocessed for this backbone -> (n, dim) float32.

        (H, W) is `input_size`; the preprocessing is `spec.preprocessing` (VGG16: 224x224,
        caffe), as search.preprocess.to_model_input produces it.
        """
        expected = self.spec.input_shape
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"expected (n, {', '.join(map(str, expected))}), got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        contiguous = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            return self._run(contiguous)

    def warm_up(self) -> None:
        """Run one batch so the first customer does not pay for graph tracing."""
        self.embed(np.zeros((1, *self.spec.input_shape), dtype=np.float32))


# The name from before there were several backbones: VGG16Extractor.load(...) without a
# backbone still loads VGG16, and the cache file names are unchanged.
VGG16Extractor = KerasExtractor


def _keras_forward(
    model: Any, spec: BackboneSpec, *, jit_compile: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """A traced tf.function of the model ("keras"; with XLA, "keras-xla"), float32."""
    # One traced graph for every batch size: much faster than model.predict for small
    # batches (predict builds a tf.data pipeline per call).
    traced = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec(shape=(None, *spec.input_shape), dtype=tf.float32)],
        reduce_retracing=True,
        jit_compile=jit_compile,
    )

    def forward(batch: np.ndarray) -> np.ndarray:
        out = traced(tf.convert_to_tensor(batch, dtype=tf.float32))
        return np.asarray(out, dtype=np.float32)

    return forward
