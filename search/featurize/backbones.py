"""The Keras backbones the catalogue can be featurised with: name, vector size, input.

Imports neither TensorFlow nor Keras (nor numpy) on purpose: fast code (settings,
preprocessing, the service) needs a backbone's input size and vector size without them.
`search.featurize.runtimes.keras` maps each name to its `keras.applications` class.

Each backbone is the ImageNet classifier without its top, global average pooling over the
last feature map. `preprocessing` is what that model's `keras.applications.<module>.
preprocess_input` does to RGB 0..255 pixels (checked against the Keras 3 sources):

- "caffe" (vgg16, resnet50): RGB->BGR, minus the ImageNet BGR mean, no scaling.
- "tf" (inception_v3): x / 127.5 - 1, i.e. [-1, 1].
- "torch" (densenet121): x / 255, minus the ImageNet RGB mean, divided by the RGB std.
- "none" (efficientnet_b0): Keras' EfficientNet rescales and normalises inside the model;
  its preprocess_input returns the pixels unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "Preprocessing",
    "backbone_of_model_name",
    "get_backbone",
]

Preprocessing: TypeAlias = Literal["caffe", "tf", "torch", "none"]

_POOLING_SUFFIX = "_avgpool"


@dataclass(frozen=True, slots=True)
class BackboneSpec:
    """One backbone: what the rest of the code needs to know without building it."""

    name: str  # the key in BACKBONES, e.g. "vgg16"
    dim: int  # vector size after global average pooling
    input_size: tuple[int, int]  # (height, width) the images are resized to
    preprocessing: Preprocessing

    @property
    def model_name(self) -> str:
        """The name vectors are stored under in the database, e.g. "vgg16_avgpool"."""
        return f"{self.name}{_POOLING_SUFFIX}"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, 3): one preprocessed image, channels last."""
        return (*self.input_size, 3)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", 512, (224, 224), "caffe"),
        BackboneSpec("resnet50", 2048, (224, 224), "caffe"),
        BackboneSpec("inception_v3", 2048, (299, 299), "tf"),
        BackboneSpec("densenet121", 1024, (224, 224), "torch"),
        BackboneSpec("efficientnet_b0", 1280, (224, 224), "none"),
    )
}

DEFAULT_BACKBONE = "vgg16"


def get_backbone(name: str) -> BackboneSpec:
    """The backbone called `name` (case and surrounding spaces ignored).

    Raises ValueError naming the known backbones for anything else.
    """
    spec = BACKBONES.get(name.strip().lower())
    if spec is None:
        known = ", ".join(BACKBONES)
        raise ValueError(f"unknown backbone {name!r}; use one of {known}")
    return spec


def backbone_of_model_name(model_name: str) -> BackboneSpec:
    """The backbone whose vectors are stored as `model_name` ("resnet50_avgpool" -> resnet50).

    Raises ValueError for a name no known backbone stores its vectors under.
    """
    for spec in BACKBONES.values():
        if spec.model_name == model_name:
            return spec
    known = ", ".join(spec.model_name for spec in BACKBONES.values())
    raise ValueError(f"no backbone stores its vectors as {model_name!r}; known: {known}")
