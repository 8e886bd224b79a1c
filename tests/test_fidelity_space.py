"""The fidelity gate judges where searches rank: on the shop's real VGG16 vectors
(../shared/footwear/vgg16_avgpool_reference.npy), a perturbation that the raw-space gate
let through is refused after the post-processing; the gate's post-processing is the one
searches use; the figures are scored on held-out photos. numpy only: no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.featurize.choice import split_photos
from search.featurize.fidelity import DEFAULT_GATE, Fidelity, measure_fidelity, ranking_space
from search.postprocess import PostProcessor


@pytest.fixture(scope="module")
def reference(footwear: Path) -> np.ndarray:
    """(300, 512) float32: the real VGG16 avg-pool vectors of the shop's catalogue."""
    return np.load(footwear / "vgg16_avgpool_reference.npy")


def test_a_perturbation_that_passes_in_raw_space_is_refused_where_searches_rank(
    reference: np.ndarray,
) -> None:
    # Gaussian noise of 2% of the vectors' standard deviation (seeded): what a slightly
    # imprecise runtime does to every value.
    rng = np.random.default_rng(0)
    noisy = reference + rng.normal(0.0, 0.02 * reference.std(), reference.shape)
    fidelity = measure_fidelity(reference, noisy.astype(np.float32))
    assert fidelity.raw_cosine is not None and fidelity.raw_top8_overlap is not None
    raw = Fidelity(fidelity.raw_cosine, fidelity.raw_top8_overlap, fidelity.photos)
    assert DEFAULT_GATE.refusal(raw) is None, raw  # the gate as it was: passed (0.9998, 98.4%)
    refusal = DEFAULT_GATE.refusal(fidelity)  # where searches rank: 0.982, 93.8%
    assert refusal is not None and "mean cosine" in refusal and "top-8" in refusal, fidelity


def test_the_gates_post_processing_is_the_one_searches_use(reference: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    candidate = reference * rng.uniform(0.9, 1.1, reference.shape)
    fitted = PostProcessor.fit(reference, power=0.5, centre=True)  # what the catalogue gets
    ref_space, cand_space = ranking_space(reference, candidate)
    np.testing.assert_allclose(ref_space, fitted.transform(reference), atol=1e-5)
    np.testing.assert_allclose(cand_space, fitted.transform(candidate), atol=1e-5)


def test_the_figures_are_scored_on_the_held_out_half(reference: np.ndarray) -> None:
    calibration, held_out = split_photos(96)
    assert len(calibration) == len(held_out) == 48
    assert not set(calibration) & set(held_out) and set(calibration) | set(held_out) == set(
        range(96)
    )
    assert np.array_equal(split_photos(96)[1], held_out)  # seeded: the same split every time
    # A candidate exact on the held-out photos, wrong on the calibration ones (as an int8
    # model over-fitted to them could not be, but the figures must say which were scored).
    vectors = reference[:96]
    candidate = vectors.copy()
    candidate[calibration] = vectors[calibration][::-1]
    scored = measure_fidelity(vectors, candidate, queries=held_out)
    everything = measure_fidelity(vectors, candidate)
    assert scored.photos == 48 and everything.photos == 96
    assert scored.raw_cosine == pytest.approx(1.0) and everything.raw_cosine < 0.99
