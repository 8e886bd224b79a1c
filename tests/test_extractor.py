"""The VGG16 extractor: shapes, batching, the cache under MODELS_DIR, weights from a file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from search.errors import ModelUnavailableError
from search.featurize.featurizer import Featurizer
from search.featurize.preprocess import preprocess_image

if TYPE_CHECKING:
    from search.featurize.runtimes.keras import KerasExtractor


@pytest.fixture(scope="module")
def photo_batch(catalog_photos: list[Path]) -> np.ndarray:
    """(8, 224, 224, 3): eight real catalogue photos, preprocessed."""
    return np.stack([preprocess_image(p.read_bytes()) for p in catalog_photos[:8]])


def test_vectors_are_512_float32_finite(extractor: Featurizer, photo_batch: np.ndarray) -> None:
    vectors = extractor.embed(photo_batch)
    assert vectors.shape == (8, 512)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    # Average pooling after ReLU: non-negative, and different photos give different vectors.
    assert (vectors >= 0).all()
    assert np.linalg.norm(vectors[0] - vectors[1]) > 0


def test_batch_equals_one_at_a_time(extractor: Featurizer, photo_batch: np.ndarray) -> None:
    batched = extractor.embed(photo_batch)
    single = np.concatenate([extractor.embed(photo_batch[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=1e-5)


def test_rejects_wrong_shapes(extractor: Featurizer) -> None:
    with pytest.raises(ValueError, match="224"):
        extractor.embed(np.zeros((1, 100, 100, 3), dtype=np.float32))
    assert extractor.embed(np.zeros((0, 224, 224, 3), dtype=np.float32)).shape == (0, 512)


def test_model_is_cached_under_models_dir_and_reloads_identically(
    keras_extractor: Featurizer, models_dir: Path, photo_batch: np.ndarray
) -> None:
    from search.featurize.runtimes.keras import VGG16Extractor, cached_model_path

    path = cached_model_path(models_dir, "none", 1234)
    assert path.is_file()
    reloaded = VGG16Extractor.load(
        models_dir=models_dir, weights="none", seed=1234, runtime="keras"
    )
    assert reloaded.source == str(path)
    np.testing.assert_allclose(
        reloaded.embed(photo_batch[:2]), keras_extractor.embed(photo_batch[:2]), atol=1e-6
    )


def test_local_weights_file(
    keras_extractor: KerasExtractor, tmp_path: Path, photo_batch: np.ndarray
) -> None:
    """MODEL_WEIGHTS=/path/to/file: how an offline shop machine gets the real weights."""
    from search.featurize.runtimes.keras import VGG16Extractor

    weights_file = tmp_path / "vgg16_notop.weights.h5"
    keras_extractor.keras_model.save_weights(weights_file)
    from_file = VGG16Extractor.load(
        models_dir=tmp_path / "models", weights=str(weights_file), seed=999, runtime="keras"
    )
    np.testing.assert_allclose(
        from_file.embed(photo_batch[:2]), keras_extractor.embed(photo_batch[:2]), atol=1e-6
    )
    assert (tmp_path / "models").is_dir() and any((tmp_path / "models").glob("*.keras"))


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    from search.featurize.runtimes.keras import VGG16Extractor

    with pytest.raises(ModelUnavailableError, match="not a file"):
        VGG16Extractor.load(models_dir=tmp_path, weights=str(tmp_path / "missing.h5"))
