"""Where a feature model and the files derived from it live under MODELS_DIR.

Imports neither TensorFlow nor any runtime: the served path (search.featurize.served) finds its
files here without them. One model is `<backbone>_avgpool-<weights tag>.keras` (the source of truth,
built by search.featurize.runtimes.keras) and beside it, with the same stem:

- `.openvino.xml` / `.openvino.bin`: the float32 OpenVINO IR (runtimes openvino, openvino-bf16)
- `.int8.openvino.xml` / `.int8.openvino.bin`: the same quantised to int8 on the shop's photos
- `.onnx`: the ONNX export (onnxruntime)
- `.runtime.json`: which runtime `auto` chose on which CPU, and the measurements behind it
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from search.errors import ModelUnavailableError
from search.featurize.backbones import DEFAULT_BACKBONE, BackboneSpec, get_backbone

__all__ = ["ModelFiles", "backbone_spec", "cached_model_path", "weights_tag", "write_atomically"]

# Each backbone's Keras ImageNet no-top weights file, named in the error for a missing file.
NOTOP_WEIGHTS_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnet_b0": "efficientnetb0_notop.h5",
}


def backbone_spec(backbone: str | BackboneSpec) -> BackboneSpec:
    """The spec for a name (or a spec), as ModelUnavailableError when unknown: the error
    every caller of a model loader already reports to the operator."""
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
        spec = backbone_spec(backbone)
        raise ModelUnavailableError(
            f"MODEL_WEIGHTS points to {weights!r}, which is not a file. Give the path of a "
            f"{spec.name} weights file (e.g. {NOTOP_WEIGHTS_FILES[spec.name]}), 'imagenet' or "
            "'none'."
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
    spec = backbone_spec(backbone)
    return models_dir / f"{spec.model_name}-{weights_tag(weights, seed, spec)}.keras"


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The files of one model: `keras` (the source of truth) and what is derived from it."""

    keras: Path

    @property
    def openvino_xml(self) -> Path:
        return self.keras.with_suffix(".openvino.xml")

    @property
    def int8_xml(self) -> Path:
        return self.keras.with_suffix(".int8.openvino.xml")

    @property
    def onnx(self) -> Path:
        return self.keras.with_suffix(".onnx")

    @property
    def decision(self) -> Path:
        return self.keras.with_suffix(".runtime.json")

    def derived(self) -> list[Path]:
        """Every file made from the .keras model: stale once it is rebuilt."""
        return [
            self.openvino_xml,
            self.openvino_xml.with_suffix(".bin"),
            self.int8_xml,
            self.int8_xml.with_suffix(".bin"),
            self.onnx,
            self.decision,
        ]  # (the .runtime.lock beside them is only ever locked, never read)

    def fresh(self, derived: Path) -> bool:
        """`derived` exists (an IR: with its .bin) and is not older than the .keras model."""
        paths = [derived, derived.with_suffix(".bin")] if derived.suffix == ".xml" else [derived]
        if not all(p.is_file() for p in paths):
            return False
        if not self.keras.is_file():
            return True  # served from the exported files alone: nothing to be older than
        return all(p.stat().st_mtime >= self.keras.stat().st_mtime for p in paths)

    def model_stamp(self) -> str:
        """Size and modification time of the .keras file: a decision recorded for another
        build of the model is not reused."""
        if not self.keras.is_file():
            return ""
        stat = self.keras.stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}"


def write_atomically(targets: list[Path], write: Callable[[list[Path]], None]) -> None:
    """write(temporary paths), then rename each to its target in order: no half-written file."""
    partials = [t.with_name(f".{t.name}.{os.getpid()}.partial{t.suffix}") for t in targets]
    try:
        write(partials)
        for partial, target in zip(partials, targets, strict=True):
            os.replace(partial, target)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)
