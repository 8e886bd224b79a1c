"""search.postprocess: the three metrics by hand, the fitted steps, exact serialisation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances as sk_pairwise_distances

from search.index import l2_normalise, pairwise_distances
from search.postprocess import PostProcessor, expand_query


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """Non-negative like VGG16 avg-pool activations: (40, 16) float32."""
    rng = np.random.default_rng(7)
    return (rng.gamma(1.0, 2.0, size=(40, 16)) * (rng.random((40, 16)) > 0.3)).astype(np.float32)


def test_metrics_by_hand() -> None:
    q = np.array([[1.0, 0.0]])
    x = np.array([[2.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0]])
    # cosine: same direction 0, orthogonal 1, opposite 2, zero vector 1 (no direction)
    assert pairwise_distances(q, x, "cosine").tolist() == [[0.0, 1.0, 2.0, 1.0]]
    # euclidean: |(1,0)-(2,0)| = 1, |(1,0)-(0,2)| = sqrt(1+4), |(1,0)-(-3,0)| = 4, |(1,0)| = 1
    assert pairwise_distances(q, x, "euclidean") == pytest.approx(
        np.array([[1.0, np.sqrt(5.0), 4.0, 1.0]]), abs=1e-12
    )
    # inner product, negated so smaller is closer: -(2), -(0), -(-3), -(0)
    assert pairwise_distances(q, x, "inner_product").tolist() == [[-2.0, 0.0, 3.0, 0.0]]
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise_distances(q, x, "manhattan")  # type: ignore[arg-type]


def test_metrics_agree_with_scikit_learn(vectors: np.ndarray) -> None:
    for metric in ("cosine", "euclidean"):
        ours = pairwise_distances(vectors[:5], vectors, metric)
        theirs = sk_pairwise_distances(vectors[:5].astype(np.float64), vectors, metric=metric)
        np.testing.assert_allclose(
            ours, theirs, atol=1e-6
        )  # sklearn rounds a self-distance to 1.7e-7


def test_identity_by_default(vectors: np.ndarray) -> None:
    identity = PostProcessor()
    assert identity.is_identity
    np.testing.assert_array_equal(identity.transform(vectors), vectors)
    assert PostProcessor.from_json(identity.to_json()) == identity
    fitted = PostProcessor.fit(vectors)  # no steps asked for: still the identity
    assert fitted.is_identity and fitted.fitted_on == 40


def test_sqrt_and_centre(vectors: np.ndarray) -> None:
    processor = PostProcessor.fit(vectors, power=0.5, centre=True)
    assert processor.normalize and not processor.is_identity
    out = processor.transform(vectors)
    assert out.dtype == np.float32 and out.shape == vectors.shape
    expected = l2_normalise(np.sqrt(vectors.astype(np.float64)))
    np.testing.assert_allclose(out, expected - expected.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-6)  # centred on the catalogue
    # One vector and a batch give the same answer.
    np.testing.assert_array_equal(processor.transform(vectors[3]), out[3])


def test_whitening_decorrelates(vectors: np.ndarray) -> None:
    processor = PostProcessor.fit(vectors, whiten=True, shrinkage=0.0)  # n = 40 > d = 16
    out = processor.transform(vectors).astype(np.float64)
    covariance = out.T @ out / len(out)
    np.testing.assert_allclose(covariance, np.eye(16), atol=1e-4)
    reduced = PostProcessor.fit(vectors, whiten=True, whiten_dim=4)
    assert reduced.output_dim == 4 and reduced.transform(vectors).shape == (40, 4)


@pytest.mark.parametrize(
    "steps",
    [
        {},
        {"power": 0.5},
        {"centre": True},
        {"power": 0.5, "centre": True},
        {"power": 0.5, "whiten": True, "whiten_dim": 8, "shrinkage": 0.5},
    ],
)
def test_round_trip_gives_identical_transforms(
    vectors: np.ndarray, steps: dict[str, object]
) -> None:
    processor = PostProcessor.fit(vectors, **steps)  # type: ignore[arg-type]
    for copy in (
        PostProcessor.from_json(processor.to_json()),
        PostProcessor.from_bytes(processor.to_bytes()),
    ):
        assert copy == processor
        assert copy.to_json() == processor.to_json()
        queries = vectors[::3] * 1.7 + 0.01  # unseen vectors, not only the fitted ones
        np.testing.assert_array_equal(copy.transform(queries), processor.transform(queries))


def test_bad_input_is_refused(vectors: np.ndarray) -> None:
    processor = PostProcessor.fit(vectors, centre=True)
    with pytest.raises(ValueError, match="expected"):
        processor.transform(np.zeros((2, 15)))
    with pytest.raises(ValueError, match="post-processor"):
        PostProcessor.from_json('{"format": "something else", "version": 1}')
    with pytest.raises(ValueError, match="NaN"):
        PostProcessor.fit(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="power"):
        PostProcessor(power=0.0)


def test_expand_query_averages_unit_vectors() -> None:
    # (1,0) and (0,5) normalised are (1,0) and (0,1): their mean is (0.5, 0.5).
    expanded = expand_query([1.0, 0.0], [[0.0, 5.0]])
    np.testing.assert_allclose(expanded, [0.5, 0.5])
    # Other metrics average the raw vectors: ((1,0) + (0,5)) / 2.
    np.testing.assert_allclose(
        expand_query([1.0, 0.0], [[0.0, 5.0]], metric="euclidean"), [0.5, 2.5]
    )
