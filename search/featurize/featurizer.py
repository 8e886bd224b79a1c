"""What the service needs of a feature extractor, without importing TensorFlow."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Featurizer(Protocol):
    """Anything that turns a batch of preprocessed images into vectors."""

    model_name: str
    dim: int

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) float32 in the backbone's input size and preprocessing -> (n, dim)
        float32."""
        ...
