"""How close a runtime's vectors are to float32 Keras' on the shop's photos, and the gate a
runtime must pass before `auto` may choose it.

Two figures over the same n photos: the mean cosine between each photo's two vectors, and the
share of each photo's 8 nearest neighbours among the n photos (cosine, itself excluded) that
stay the same. With random weights (tests, CI, MODEL_WEIGHTS=none) the vectors of different
photos are much closer to each other than with ImageNet weights, so the same runtime scores a
different overlap: the gate then measures the mechanism, not the quality customers get.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_GATE", "Fidelity", "FidelityGate", "measure_fidelity"]

NEIGHBOURS = 8


@dataclass(frozen=True, slots=True)
class Fidelity:
    cosine: float  # mean over photos of cos(reference vector, candidate vector)
    top8_overlap: float  # mean over photos of |same 8 nearest| / 8
    photos: int


@dataclass(frozen=True, slots=True)
class FidelityGate:
    min_cosine: float = 0.995
    min_top8_overlap: float = 0.95

    def refusal(self, fidelity: Fidelity) -> str | None:
        """Why a runtime with these figures may not be chosen, or None when it passes."""
        reasons = []
        if not fidelity.cosine >= self.min_cosine:  # `not >=`: NaN fails too
            reasons.append(f"mean cosine {fidelity.cosine:.4f} < {self.min_cosine}")
        if not fidelity.top8_overlap >= self.min_top8_overlap:
            reasons.append(
                f"top-8 overlap {fidelity.top8_overlap:.1%} < {self.min_top8_overlap:.0%}"
            )
        return "; ".join(reasons) or None


DEFAULT_GATE = FidelityGate()


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(n, dim) -> (n, dim) float64, each row of length 1 (a zero row stays zero)."""
    rows = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def _nearest(unit: np.ndarray, k: int) -> np.ndarray:
    """(n, dim) unit rows -> (n, k) indices of each row's k most similar other rows."""
    similarity = unit @ unit.T  # (n, n)
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def measure_fidelity(reference: np.ndarray, candidate: np.ndarray) -> Fidelity:
    """reference, candidate: (n, dim) vectors of the same n photos (n > 8)."""
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(f"shapes differ: {reference.shape} vs {candidate.shape}")
    count = reference.shape[0]
    if count <= NEIGHBOURS:
        raise ValueError(f"need more than {NEIGHBOURS} photos, got {count}")
    ref, cand = _unit_rows(reference), _unit_rows(candidate)
    cosine = float(np.mean(np.sum(ref * cand, axis=1)))
    ref_nearest, cand_nearest = _nearest(ref, NEIGHBOURS), _nearest(cand, NEIGHBOURS)
    kept = [len(set(a) & set(b)) for a, b in zip(ref_nearest, cand_nearest, strict=True)]
    return Fidelity(cosine=cosine, top8_overlap=float(np.mean(kept)) / NEIGHBOURS, photos=count)
