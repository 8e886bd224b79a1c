"""VGG16 feature extractor: the only module that imports TensorFlow and Keras.

VGG16 without its classifier, global average pooling: one image (224, 224, 3) -> 512 float32.
The model is built once and saved under MODELS_DIR; later runs load it from there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
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


class VGG16Extractor:
    """VGG16 avg-pool features. `embed` is thread-safe (calls are serialised)."""

    model_name = MODEL_NAME
    dim = FEATURE_DIM

    def __init__(self, model: Any, *, source: str) -> None:
        self._model = model
        self.source = source  # where the model came from, for logs
        self._lock = threading.Lock()
        # One traced graph for every batch size: much faster than model.predict for small
        # batches (predict builds a tf.data pipeline per call).
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec(shape=(None, *INPUT_SHAPE), dtype=tf.float32)],
            reduce_retracing=True,
        )

    @classmethod
    def load(
        cls, *, models_dir: Path, weights: str = "imagenet", seed: int = 1234
    ) -> VGG16Extractor:
        """Load the cached model from `models_dir`, or build it and cache it there."""
        path = cached_model_path(models_dir, weights, seed)
        if path.is_file():
            try:
                model = keras.models.load_model(path, compile=False)
                log.info("loaded %s from %s", MODEL_NAME, path)
                if weights.lower() == "none":
                    log.warning("using RANDOM VGG16 weights (MODEL_WEIGHTS=none): not for real use")
                return cls(model, source=str(path))
            except Exception as exc:  # a half-written or foreign file: rebuild it
                log.warning("cached model %s is unreadable (%s); rebuilding it", path, exc)
        model = _build_vgg16(weights, seed)
        models_dir.mkdir(parents=True, exist_ok=True)
        # Write to a temporary name and rename, so a crash never leaves a truncated model file.
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
        try:
            model.save(partial)
            os.replace(partial, path)
            log.info("built %s (%s weights) and saved it to %s", MODEL_NAME, weights, path)
        except OSError as exc:
            log.warning("could not cache the model in %s: %s", models_dir, exc)
        finally:
            partial.unlink(missing_ok=True)
        return cls(model, source=f"built ({weights})")

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(n, 224, 224, 3) float32 caffe-preprocessed images -> (n, 512) float32 vectors."""
        if batch.ndim != 4 or batch.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected (n, 224, 224, 3), got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        with self._lock:
            out = self._forward(tf.convert_to_tensor(batch, dtype=tf.float32))
        return np.asarray(out, dtype=np.float32)

    def warm_up(self) -> None:
        """Run one batch so the first customer does not pay for graph tracing."""
        self.embed(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))
