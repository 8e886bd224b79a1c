"""Synthetic catalogues of VGG16-like vectors, calibrated on the shop's real reference vectors.

Real VGG16 avg-pool vectors (../shared/footwear/vgg16_avgpool_reference.npy, 300 x 512) are
non-negative (ReLU then averaging), sparse (about 28% zeros, per dimension from 0% to 92%),
heavy-tailed, and clustered: every pair of photos is already at cosine ~0.53 (median), a photo's
nearest neighbour at ~0.81. Gaussian noise has none of that (pairs at cosine ~0), and an ANN's
recall measured on it says little about recall on a real catalogue.

The generator here is hierarchical:
- a family centre is a random mix of two reference vectors, times log-normal noise
  (sigma_centre): families spread along the real vectors' manifold, non-negative;
- a product is its family's centre times log-normal noise (sigma_item), then each dimension is
  zeroed with the probability that brings its zero rate to the reference's rate for that
  dimension;
- a query (a customer's photo) is one more product of a random family, not in the catalogue.

`calibrate` picks the two sigmas on a grid so that a 300-vector synthetic sample matches the
reference on median pairwise cosine, median nearest-neighbour cosine and their 10th
percentiles; `describe` reports those statistics for both, so the match can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["SyntheticCatalog", "calibrate", "describe", "load_reference"]

Floats = npt.NDArray[np.float32]

PRODUCTS_PER_FAMILY = 10
_SIGMA_CENTRE_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
_SIGMA_ITEM_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_CHUNK = 65_536


def load_reference(path: Path) -> Floats:
    array: Floats = np.load(path).astype(np.float32)
    if array.ndim != 2 or (array < 0).any():
        raise ValueError(f"{path}: expected non-negative (n, dim) vectors, got {array.shape}")
    return array


def describe(vectors: Floats) -> dict[str, float]:
    """Statistics that matter for nearest-neighbour search, on at most 2,000 vectors."""
    sample = vectors[:2000].astype(np.float64)
    unit = sample / np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.max(axis=1)
    pairs = sims[np.triu_indices(len(sims), k=1)]
    return {
        "zero_fraction": float((sample == 0).mean()),
        "pair_cos_median": float(np.median(pairs)),
        "pair_cos_p10": float(np.percentile(pairs, 10)),
        "nn_cos_median": float(np.median(nearest)),
        "nn_cos_p10": float(np.percentile(nearest, 10)),
    }


@dataclass
class SyntheticCatalog:
    """Families sampled once; products and queries drawn from them on demand."""

    reference: Floats
    families: int
    sigma_centre: float
    sigma_item: float
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        ref = self.reference
        n_ref, dim = ref.shape
        self._zero_target = (ref == 0).mean(axis=0)  # (dim,) per-dimension zero rate
        self.centres = np.empty((self.families, dim), dtype=np.float32)
        for start in range(0, self.families, _CHUNK):
            m = min(_CHUNK, self.families - start)
            a = ref[rng.integers(n_ref, size=m)]
            b = ref[rng.integers(n_ref, size=m)]
            w = rng.uniform(0.0, 1.0, size=(m, 1)).astype(np.float32)
            noise = np.exp(self.sigma_centre * rng.standard_normal((m, dim), dtype=np.float32))
            self.centres[start : start + m] = (w * a + (1 - w) * b) * noise
        # The zero rate of the centres' products before dropout, estimated once on a sample.
        probe = self.centres[rng.integers(self.families, size=min(self.families, 4096))]
        have = (probe == 0).mean(axis=0)
        self._drop = np.clip((self._zero_target - have) / np.maximum(1 - have, 1e-9), 0, 1)
        self._rng = np.random.default_rng(self.seed + 1)

    def draw(self, n: int) -> tuple[Floats, npt.NDArray[np.int64]]:
        """(n, dim) new products (or queries) and the family of each."""
        rng = self._rng
        dim = self.centres.shape[1]
        out = np.empty((n, dim), dtype=np.float32)
        family = rng.integers(self.families, size=n)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            x = self.centres[family[start : start + m]]
            x *= np.exp(self.sigma_item * rng.standard_normal((m, dim), dtype=np.float32))
            x[rng.random((m, dim), dtype=np.float32) < self._drop] = 0.0
            out[start : start + m] = x
        return out, family


def calibrate(reference: Floats, *, seed: int = 0) -> tuple[float, float, dict[str, float]]:
    """(sigma_centre, sigma_item, synthetic statistics) best matching the reference's
    pairwise and nearest-neighbour cosine statistics on a sample of the same size."""
    target = describe(reference)
    keys = ("pair_cos_median", "pair_cos_p10", "nn_cos_median", "nn_cos_p10")
    best: tuple[float, float, float, dict[str, float]] | None = None
    n = len(reference)
    for sigma_centre in _SIGMA_CENTRE_GRID:
        for sigma_item in _SIGMA_ITEM_GRID:
            catalog = SyntheticCatalog(
                reference,
                families=max(1, n // PRODUCTS_PER_FAMILY),
                sigma_centre=sigma_centre,
                sigma_item=sigma_item,
                seed=seed,
            )
            stats = describe(catalog.draw(n)[0])
            error = sum((stats[key] - target[key]) ** 2 for key in keys)
            if best is None or error < best[2]:
                best = (sigma_centre, sigma_item, error, stats)
    assert best is not None
    return best[0], best[1], best[3]
