"""Pixels to vectors on this CPU: everything between a photo's bytes and its (dim,) vector.

- `ImagePreparer` checks and decodes bytes into a `PreparedImage` (search.featurize.images,
  search.featurize.preprocess: header checks before decoding, so a bomb costs nothing);
- `BACKBONES`: the Keras models a catalogue can be featurised with (search.featurize.backbones);
- `ModelLoader` gives the `Featurizer` a process serves (search.featurize.loader): the
  exported model on the runtime chosen for this CPU (search.featurize.choice measures, the
  fidelity gate of search.featurize.fidelity refuses, search.featurize.record keeps the
  choice, search.featurize.child measures in a process of its own), served by
  search.featurize.served over one module per runtime (search.featurize.runtimes).

Importing this facade imports neither TensorFlow nor any runtime.
"""

from search.errors import ModelUnavailableError
from search.featurize.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    BackboneSpec,
    backbone_of_model_name,
    get_backbone,
)
from search.featurize.featurizer import Featurizer
from search.featurize.fidelity import DEFAULT_GATE, Fidelity, FidelityGate, measure_fidelity
from search.featurize.files import ModelFiles, cached_model_path, weights_tag
from search.featurize.images import ImagePreparer, PreparedImage, content_hash
from search.featurize.loader import ModelLoader
from search.featurize.preprocess import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    InvalidImageError,
    load_rgb,
    preprocess_image,
)
from search.featurize.record import RuntimeDecision, RuntimeTrial, cpu_signature
from search.featurize.served import SERVED_RUNTIMES, ServedFeaturizer

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "DEFAULT_GATE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "SERVED_RUNTIMES",
    "BackboneSpec",
    "Featurizer",
    "Fidelity",
    "FidelityGate",
    "ImagePreparer",
    "InvalidImageError",
    "ModelFiles",
    "ModelLoader",
    "ModelUnavailableError",
    "PreparedImage",
    "RuntimeDecision",
    "RuntimeTrial",
    "ServedFeaturizer",
    "backbone_of_model_name",
    "cached_model_path",
    "content_hash",
    "cpu_signature",
    "get_backbone",
    "load_rgb",
    "measure_fidelity",
    "preprocess_image",
    "weights_tag",
]
