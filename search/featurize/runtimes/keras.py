"""Keras backbone feature extractor: the only module that imports TensorFlow and Keras.

A keras.applications ImageNet model (search.featurize.backbones: VGG16 by default, ResNet50,
InceptionV3, DenseNet121, EfficientNetB0) without its classifier, global average pooling:
one preprocessed image (H, W, 3) -> one vector of the backbone's size, float32 (VGG16:
(224, 224, 3) -> 512). The model is built once and saved under MODELS_DIR as
<backbone>_avgpool-<weights tag>.keras; later runs load it from there.

Keras defines, builds and exports the model; it is the source of truth every other runtime is
checked against. Serving does not need it: search.featurize.loader serves the exported files
(search.featurize.served) on the runtime chosen by measuring on this CPU (search.featurize.choice).
A KerasExtractor runs its forward pass on one of these runtimes:

- "keras": a traced tf.function of the Keras model (TensorFlow with oneDNN), float32: the
  reference. "keras-xla" is the same compiled with XLA (measured slower).
- "openvino" (float32, the same numbers as Keras to ~1e-7), "openvino-bf16" (bfloat16 on a
  CPU with native bf16), "openvino-int8" (the int8 IR the model loader quantised on the shop's
  photos) and "onnxruntime" (needs tf2onnx): the exported model, run in this process.
- "auto" (or unset): a guess from the CPU's flags, openvino-bf16 where the CPU has native
  bf16, else keras. It serves code that builds a KerasExtractor directly; the application's
  "auto" is the model loader's measured choice.

Every runtime is tried for every backbone: one that cannot convert or run a backbone (ONNX
Runtime rejects the EfficientNetB0 export: its Normalization constants become graph inputs)
is replaced by "keras", with a warning in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

import keras
import tensorflow as tf

from search.errors import ModelUnavailableError
from search.featurize.backbones import BACKBONES, DEFAULT_BACKBONE, BackboneSpec
from search.featurize.files import (
    NOTOP_WEIGHTS_FILES,
    ModelFiles,
    backbone_spec,
    cached_model_path,
    write_atomically,
)
from search.featurize.runtimes.forward import Forward
from search.featurize.runtimes.onnx import onnxruntime_forward
from search.featurize.runtimes.openvino import openvino_forward
from search.featurize.served import embed_checked

__all__ = [
    "RUNTIMES",
    "KerasExtractor",
    "VGG16Extractor",
    "cached_model_path",
    "export_onnx",
    "export_openvino",
]

log = logging.getLogger(__name__)

# VGG16's, the default backbone's (kept for callers written before there were several).
INPUT_SHAPE = BACKBONES[DEFAULT_BACKBONE].input_shape
FEATURE_DIM = BACKBONES[DEFAULT_BACKBONE].dim
MODEL_NAME = BACKBONES[DEFAULT_BACKBONE].model_name
RUNTIMES = (
    "auto",
    "openvino",
    "keras",
    "keras-xla",
    "onnxruntime",
    "openvino-bf16",
    "openvino-int8",
)
RUNTIME_ENV = "MODEL_RUNTIME"


@dataclass(frozen=True, slots=True)
class _KerasApplication:
    """How Keras builds one backbone: its keras.applications class and the name of its
    ImageNet no-top weights file (what Keras downloads to ~/.keras/models)."""

    constructor: str
    notop_weights_file: str


_KERAS_APPLICATIONS: dict[str, _KerasApplication] = {
    name: _KerasApplication(constructor, NOTOP_WEIGHTS_FILES[name])
    for name, constructor in (
        ("vgg16", "VGG16"),
        ("resnet50", "ResNet50"),
        ("inception_v3", "InceptionV3"),
        ("densenet121", "DenseNet121"),
        ("efficientnet_b0", "EfficientNetB0"),
    )
}


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


def export_openvino(model: Any, keras_path: Path | None, label: str = MODEL_NAME) -> Path:
    """The model exported to float32 OpenVINO IR beside `keras_path` (reused while it is not
    older than the model), or in a temporary folder when the model has no file. The .xml path."""
    import tempfile

    if keras_path is not None:
        files = ModelFiles(keras_path)
        if files.fresh(files.openvino_xml):
            return files.openvino_xml
    scratch = Path(tempfile.mkdtemp(prefix="lookalike-ov-"))
    exported = scratch / "model.xml"
    model.export(str(exported), format="openvino", verbose=False)
    if keras_path is None:
        return exported
    xml = ModelFiles(keras_path).openvino_xml

    # The .xml finds its weights by stem: the .bin is renamed into place first.
    def move(paths: list[Path]) -> None:
        os.replace(exported.with_suffix(".bin"), paths[0])
        os.replace(exported, paths[1])

    try:
        write_atomically([xml.with_suffix(".bin"), xml], move)
    except OSError as exc:
        log.warning("could not cache the OpenVINO model in %s: %s", xml.parent, exc)
        return exported
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("exported %s to OpenVINO IR at %s", label, xml)
    return xml


def export_onnx(
    model: Any, keras_path: Path | None, input_shape: tuple[int, int, int] = INPUT_SHAPE
) -> Path:
    """The model exported to ONNX (tf2onnx) beside `keras_path`, reused while not older than
    the model. `input_shape`: one image, (H, W, 3)."""
    import tempfile

    if keras_path is not None and ModelFiles(keras_path).fresh(ModelFiles(keras_path).onnx):
        return ModelFiles(keras_path).onnx
    path = ModelFiles(keras_path).onnx if keras_path is not None else None
    if path is None:
        path = Path(tempfile.mkdtemp()) / "model.onnx"
    model(np.zeros((1, *input_shape), dtype=np.float32))  # export needs a called model
    write_atomically(
        [path], lambda paths: model.export(str(paths[0]), format="onnx", verbose=False)
    )
    return path


def _openvino_forward(
    model: Any, keras_path: Path | None, precision: str = "f32", label: str = MODEL_NAME
) -> Forward:
    """The model exported to OpenVINO IR (cached beside `keras_path`), compiled for the CPU."""
    xml = export_openvino(model, keras_path, label)
    try:
        return openvino_forward(xml, precision)
    except Exception as exc:  # a half-written or foreign cached file: export it again
        if keras_path is None:
            raise
        log.warning("cached OpenVINO model %s is unusable (%s); exporting again", xml, exc)
        xml.unlink(missing_ok=True)
        return openvino_forward(export_openvino(model, keras_path, label), precision)


def _int8_forward(keras_path: Path | None) -> Forward:
    """The int8 model quantised beside `keras_path` (search.featurize.loader makes it: it needs the
    shop's photos to calibrate)."""
    files = ModelFiles(keras_path) if keras_path is not None else None
    if files is None or not files.fresh(files.int8_xml):
        raise RuntimeError("no int8 model yet: `lookalike model build` quantises it")
    return openvino_forward(files.int8_xml, "f32")


def _check_forward(forward: Forward, spec: BackboneSpec) -> None:
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
        self.spec = backbone_spec(backbone)
        self.model_name = self.spec.model_name
        self.dim = self.spec.dim
        self.input_size = self.spec.input_size
        self._model = model
        self._cache_path = cache_path
        self.source = source  # where the model came from, for logs
        self._lock = threading.Lock()
        spec = self.spec
        chosen = _resolve_runtime(runtime)
        forward: Forward | None = None
        if chosen in ("openvino", "openvino-bf16", "openvino-int8", "onnxruntime", "keras-xla"):
            try:
                if chosen == "openvino-int8":
                    forward = _int8_forward(cache_path)
                elif chosen == "onnxruntime":
                    path = export_onnx(model, cache_path, spec.input_shape)
                    forward = onnxruntime_forward(path)
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

    def export_openvino(self) -> Path:
        """The float32 OpenVINO IR of this model, beside its .keras file (exported once)."""
        return export_openvino(self._model, self._cache_path, self.model_name)

    def export_onnx(self) -> Path:
        """The ONNX export of this model, beside its .keras file (exported once)."""
        return export_onnx(self._model, self._cache_path, self.spec.input_shape)

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

        `backbone`: a name from search.featurize.backbones.BACKBONES (default "vgg16") or its spec;
        an unknown name raises ModelUnavailableError. `weights`: "imagenet", "none" (random, from
        `seed`) or the path of a weights file. `runtime`: "auto" (default, or MODEL_RUNTIME),
        "keras", "keras-xla", "openvino", "openvino-bf16" or "onnxruntime".
        """
        spec = backbone_spec(backbone)
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
        # Files derived from an older model of that name (IR, ONNX, the runtime record) are stale.
        for derived in ModelFiles(path).derived():
            with contextlib.suppress(OSError):
                derived.unlink(missing_ok=True)
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
        caffe), as search.featurize.preprocess.to_model_input produces it.
        """
        return embed_checked(self._run, self._lock, self.spec, batch)

    def warm_up(self) -> None:
        """Run one batch so the first customer does not pay for graph tracing."""
        self.embed(np.zeros((1, *self.spec.input_shape), dtype=np.float32))


# The name from before there were several backbones: VGG16Extractor.load(...) without a
# backbone still loads VGG16, and the cache file names are unchanged.
VGG16Extractor = KerasExtractor


def _keras_forward(model: Any, spec: BackboneSpec, *, jit_compile: bool) -> Forward:
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
