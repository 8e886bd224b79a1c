"""OpenVINO runs one photo on its latency stream and splits a batch over its throughput
streams (search.featurize.runtimes.openvino): every photo's vector is the one it gets alone,
in the batch's order, whatever the batch's size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.featurize import Featurizer
from search.featurize.files import ModelFiles, cached_model_path
from search.featurize.preprocess import preprocess_image
from search.featurize.runtimes.openvino import openvino_forward
from tests.conftest import MODEL_SEED


@pytest.mark.parametrize("size", [2, 3, 7])
def test_a_split_batch_gives_each_photo_its_own_vector_in_order(
    extractor: Featurizer, models_dir: Path, catalog_photos: list[Path], size: int
) -> None:
    files = ModelFiles(cached_model_path(models_dir, "none", MODEL_SEED, "vgg16"))
    forward = openvino_forward(files.openvino_xml, "f32")
    batch = np.stack([preprocess_image(p.read_bytes()) for p in catalog_photos[:size]])
    alone = np.concatenate([forward(batch[i : i + 1]) for i in range(size)])  # (size, dim)

    together = forward(batch)
    backwards = forward(batch[::-1].copy())

    assert together.shape == alone.shape == (size, 512)
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(backwards, alone[::-1], rtol=1e-4, atol=1e-5)
