"""What every runtime gives: a forward function over a batch of model inputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["Forward"]

# (n, H, W, 3) float32 model input -> (n, dim) float32 vectors.
Forward = Callable[[np.ndarray], np.ndarray]
