"""Tests of search.index.memory.VectorIndex: exactness against scikit-learn, ranking, filters
and metrics (validation, storage and threads: tests/test_index_storage.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from search.index import ProductFacts, SearchFilter
from search.index.memory import VectorIndex
from tests.index_catalogue import (
    DIM,
    Catalogue,
    facts,
    ids,
    random_catalogue,
)

SHARED_FOOTWEAR = Path(__file__).resolve().parents[1].parent / "shared" / "footwear"
REFERENCE_VECTORS = SHARED_FOOTWEAR / "vgg16_avgpool_reference.npy"


# ---------------------------------------------------------------- real VGG16 features


@pytest.fixture(scope="module")
def reference_vectors() -> np.ndarray:
    if not REFERENCE_VECTORS.exists():
        pytest.skip(f"reference vectors not found at {REFERENCE_VECTORS}")
    x = np.load(REFERENCE_VECTORS)
    assert x.shape == (300, 512) and x.dtype == np.float32
    return x


def test_ranking_matches_sklearn_for_every_reference_row(reference_vectors: np.ndarray) -> None:
    x = reference_vectors
    n = x.shape[0]
    index = VectorIndex.build(
        facts=[facts(i) for i in range(n)],
        image_ids=np.arange(n) + 10_000,
        product_ids=np.arange(n),
        vectors=x,
    )
    assert len(index) == n and index.product_count() == n
    nn = NearestNeighbors(n_neighbors=8, metric="cosine").fit(x)
    for i in range(n):
        want_d, want_i = nn.kneighbors(x[i : i + 1])
        hits = index.search(x[i], k=8)
        got_i = ids(hits)
        got_d = np.array([h.distance for h in hits])
        assert hits[0].product_id == i and 0.0 <= hits[0].distance < 1e-6
        assert hits[0].image_id == i + 10_000
        np.testing.assert_allclose(got_d, want_d[0], atol=1e-5, rtol=0)
        for j, (g, w) in enumerate(zip(got_i, want_i[0].tolist(), strict=True)):
            if g != w:  # only a tie (within 1e-6) may swap neighbours
                assert w in got_i
                assert abs(got_d[j] - got_d[got_i.index(w)]) <= 1e-6, (i, j)
        assert all(0.0 <= h.similarity <= 100.0 for h in hits)
        assert all(d >= 0.0 for d in got_d) and list(got_d) == sorted(got_d)


# ---------------------------------------------------------------- products and filters


def test_one_hit_per_product_and_best_image_wins() -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal(DIM)
    cat = Catalogue()
    cat.product(facts(1))
    cat.product(facts(2))
    far = -q + 0.1 * rng.standard_normal(DIM)
    near = q + 0.05 * rng.standard_normal(DIM)
    mid = q + 0.5 * rng.standard_normal(DIM)
    cat.add(1, [11, 12, 13], np.stack([far, near, mid]))
    cat.add(2, [21], (q + 0.3 * rng.standard_normal(DIM))[None, :])
    hits = cat.check(q)
    assert ids(hits) == [1, 2]
    assert hits[0].image_id == 12
    assert cat.index.product_count() == 2 and len(cat.index) == 4


def test_many_images_of_one_product_widen_the_candidate_window() -> None:
    # Product 1 owns the 100 closest rows: 4k = 32 candidates hold one product only.
    rng = np.random.default_rng(2)
    q = rng.standard_normal(DIM)
    cat = Catalogue()
    cat.product(facts(1))
    cat.add(1, list(range(100, 200)), q + 0.01 * rng.standard_normal((100, DIM)))
    for pid in range(2, 30):
        cat.product(facts(pid))
        cat.add(pid, [pid * 1000, pid * 1000 + 1], rng.standard_normal((2, DIM)))
    hits = cat.check(q, k=8)
    assert hits[0].product_id == 1 and len(hits) == 8 and len(set(ids(hits))) == 8


def test_category_and_max_price_filters() -> None:
    rng = np.random.default_rng(3)
    cat = random_catalogue(rng, 60)
    for _ in range(10):
        q = rng.standard_normal(DIM)
        for hit in cat.check(q, category="boot"):
            assert cat.facts[hit.product_id].category == "boot"
        for hit in cat.check(q, max_price=50.0):
            assert cat.facts[hit.product_id].price <= 50.0
        cat.check(q, category="sandal", max_price=120.0)
        cat.check(q, category="sandal", max_price=120.0, include_inactive=True)
    assert (
        cat.index.search(
            rng.standard_normal(DIM), query_filter=SearchFilter(category="no such category")
        )
        == []
    )
    assert (
        cat.index.search(rng.standard_normal(DIM), query_filter=SearchFilter(max_price=-1.0)) == []
    )
    # The price filter is inclusive.
    cat.product(facts(500, price=33.5))
    v = rng.standard_normal(DIM)
    cat.add(500, [50_000], v[None, :])
    assert 500 in ids(cat.index.search(v, k=1, query_filter=SearchFilter(max_price=33.5)))
    assert 500 not in ids(cat.index.search(v, k=100, query_filter=SearchFilter(max_price=33.49)))


def test_price_and_category_changes_apply_to_every_image_of_the_product() -> None:
    rng = np.random.default_rng(4)
    cat = Catalogue()
    cat.product(facts(1, category="boot", price=100.0))
    v = rng.standard_normal((3, DIM))
    cat.add(1, [1, 2, 3], v)
    assert cat.index.search(v[0], query_filter=SearchFilter(max_price=50.0)) == []
    cat.product(facts(1, category="sneaker", price=40.0))
    assert ids(cat.check(v[2], max_price=50.0, category="sneaker")) == [1]
    assert cat.index.search(v[2], query_filter=SearchFilter(category="boot")) == []


def test_include_inactive_and_set_active_hides_and_restores() -> None:
    rng = np.random.default_rng(5)
    cat = random_catalogue(rng, 40)
    q = cat.images[1000][1]  # an image of product 1, active
    assert cat.check(q)[0].product_id == 1
    cat.index.set_active(1, False)
    cat.facts[1] = facts(1, cat.facts[1].category, cat.facts[1].price, active=False)
    assert 1 not in ids(cat.check(q, k=50))
    assert cat.check(q, include_inactive=True)[0].product_id == 1
    assert cat.index.product_count() == cat.index.product_count(active_only=False) - 6
    cat.index.set_active(1, True)
    cat.facts[1] = facts(1, cat.facts[1].category, cat.facts[1].price, active=True)
    assert cat.check(q)[0].product_id == 1
    with pytest.raises(KeyError):
        cat.index.set_active(12345, False)


def test_remove_image() -> None:
    rng = np.random.default_rng(6)
    cat = Catalogue()
    cat.product(facts(1))
    cat.product(facts(2))
    v = rng.standard_normal((3, DIM))
    cat.add(1, [10, 11], v[:2])
    cat.add(2, [20], v[2:])
    assert cat.check(v[0])[0].image_id == 10
    cat.remove(10)
    hits = cat.check(v[0])
    assert 10 not in [h.image_id for h in hits] and len(cat.index) == 2
    cat.remove(11)  # product 1 has no image left: it cannot be found any more
    assert ids(cat.check(v[0])) == [2]
    assert cat.index.product_count() == 1
    assert cat.index.product_vectors(1).shape == (0, DIM)
    with pytest.raises(KeyError):
        cat.index.remove_image(10)


def test_readding_an_image_id_replaces_its_vector() -> None:
    rng = np.random.default_rng(7)
    cat = Catalogue()
    cat.product(facts(1))
    cat.product(facts(2))
    a, b = rng.standard_normal((2, DIM))
    cat.add(1, [10], a[None, :])
    cat.add(1, [10], b[None, :])
    assert len(cat.index) == 1
    hit = cat.check(b)[0]
    assert (hit.image_id, hit.distance) == (10, pytest.approx(0.0, abs=1e-6))
    # product_vectors gives the vectors back as they were given (length kept for other metrics)
    np.testing.assert_allclose(cat.index.product_vectors(1), b[None, :], rtol=1e-5, atol=1e-5)
    cat.add(2, [10], a[None, :])  # the same image id under another product moves there
    assert ids(cat.check(a)) == [2]
    assert cat.index.product_vectors(1).shape == (0, DIM)


def test_exclude_product_ids() -> None:
    rng = np.random.default_rng(8)
    cat = random_catalogue(rng, 30)
    q = cat.images[1000][1]
    first = cat.index.search(q)
    assert first[0].product_id == 1
    hits = cat.index.search(
        q, query_filter=SearchFilter(exclude_product_ids={1, first[1].product_id, 999_999})
    )
    assert ids(hits) == ids(first)[2:] + ids(hits)[6:] and len(hits) == 8


def test_fewer_products_than_k_and_k_larger_than_n() -> None:
    rng = np.random.default_rng(9)
    cat = Catalogue()
    for pid in (1, 2, 3):
        cat.product(facts(pid))
        cat.add(pid, [pid * 10, pid * 10 + 1], rng.standard_normal((2, DIM)))
    q = rng.standard_normal(DIM)
    assert len(cat.check(q, k=8)) == 3
    assert len(cat.check(q, k=1000)) == 3
    assert len(cat.check(q, k=2)) == 2
    assert cat.index.search(q, k=0) == []
    with pytest.raises(ValueError):
        cat.index.search(q, k=-1)


def test_empty_index() -> None:
    index = VectorIndex(dim=DIM)
    assert len(index) == 0 and index.product_count() == 0
    assert index.search(np.ones(DIM)) == []
    index.upsert_product(facts(1))
    assert index.search(np.ones(DIM)) == []
    empty = VectorIndex.build(
        facts=[], image_ids=np.array([]), product_ids=np.array([]), vectors=np.zeros((0, 7))
    )
    assert empty.dim == 7 and len(empty) == 0 and empty.search(np.ones(7)) == []


def test_zero_query_and_zero_rows_never_match() -> None:
    rng = np.random.default_rng(10)
    cat = Catalogue()
    for pid in (3, 1, 2):
        cat.product(facts(pid))
    cat.add(3, [30], rng.standard_normal((1, DIM)))
    cat.add(1, [10], rng.standard_normal((1, DIM)))
    cat.add(2, [20], np.zeros((1, DIM)))  # a zero row stays zero
    assert not cat.index.product_vectors(2).any()
    # A zero query is at distance 1.0 (similarity 0) from everything; ties go by product id.
    hits = cat.index.search(np.zeros(DIM))
    assert [(h.product_id, h.distance, h.similarity) for h in hits] == [
        (1, 1.0, 0.0),
        (2, 1.0, 0.0),
        (3, 1.0, 0.0),
    ]
    # The zero row is at distance exactly 1.0 from any query, even one "equal" to it.
    q = rng.standard_normal(DIM)
    zero_hit = next(h for h in cat.check(q) if h.product_id == 2)
    assert (zero_hit.distance, zero_hit.similarity) == (1.0, 0.0)


def test_identical_direction_is_distance_zero_and_ties_go_by_product_id() -> None:
    rng = np.random.default_rng(11)
    v = rng.random(DIM).astype(np.float32)
    index = VectorIndex(dim=DIM)
    for pid in (5, 3, 4):
        index.upsert_product(facts(pid))
        index.add_vectors(product_id=pid, image_ids=[pid], vectors=v[None, :])
    hits = index.search(v)
    assert ids(hits) == [3, 4, 5]  # equal vectors, equal distances: product id decides
    assert len({h.distance for h in hits}) == 1
    # More tied rows than the 4k candidate window: the smallest product ids still win.
    tied = VectorIndex(dim=DIM)
    for pid in rng.permutation(np.arange(100, 160)).tolist():
        tied.upsert_product(facts(pid))
        tied.add_vectors(product_id=pid, image_ids=[pid, pid + 1000], vectors=np.stack([v, v]))
    assert [(h.product_id, h.image_id) for h in tied.search(v)] == [
        (pid, pid) for pid in range(100, 108)
    ]
    # Same direction at other scales: distance ~0 (float32 rounding), never negative.
    index.upsert_product(facts(6))
    index.add_vectors(product_id=6, image_ids=[6], vectors=(v * 6.0)[None, :])
    for h in index.search(v * 7.0):
        assert 0.0 <= h.distance < 1e-6 and h.similarity > 99.999


def test_opposite_direction_clips_similarity_to_zero() -> None:
    index = VectorIndex(dim=DIM)
    index.upsert_product(facts(1))
    v = np.arange(1.0, DIM + 1.0)
    index.add_vectors(product_id=1, image_ids=[1], vectors=v[None, :])
    (hit,) = index.search(-v)
    assert hit.distance == pytest.approx(2.0, abs=1e-6) and hit.similarity == 0.0


def test_unpriced_product_never_passes_a_price_filter() -> None:
    """NaN price means "not priced yet": found without a filter, never "under 60"."""
    index = VectorIndex(DIM)
    index.upsert_product(facts(1, price=float("nan")))
    index.upsert_product(facts(2, price=10.0))
    index.add_vectors(product_id=1, image_ids=[1], vectors=np.ones((1, DIM)))
    index.add_vectors(product_id=2, image_ids=[2], vectors=np.ones((1, DIM)))
    assert {hit.product_id for hit in index.search(np.ones(DIM))} == {1, 2}
    assert [
        hit.product_id
        for hit in index.search(np.ones(DIM), query_filter=SearchFilter(max_price=1e9))
    ] == [2]


@pytest.mark.parametrize("metric", ["euclidean", "inner_product", "cosine"])
def test_other_metrics_rank_like_a_brute_force_on_the_vectors_as_given(metric: str) -> None:
    """Rows of very different lengths: euclidean and inner product must rank by the vectors as
    given (not their unit versions), cosine must ignore the lengths."""
    from search.index import pairwise_distances

    rng = np.random.default_rng(11)
    n = 60
    vectors = rng.standard_normal((n, DIM)) * rng.uniform(0.1, 10.0, size=(n, 1))  # (n, DIM)
    index = VectorIndex.build(
        facts=[facts(pid) for pid in range(n)],
        image_ids=np.arange(100, 100 + n),
        product_ids=np.arange(n),
        vectors=vectors,
    )
    for query in rng.standard_normal((5, DIM)) * 3.0:
        hits = index.search(query, k=8, metric=metric)  # type: ignore[arg-type]
        expected = pairwise_distances(query[None, :], vectors, metric)[0]  # type: ignore[arg-type]
        order = np.argsort(expected, kind="stable")[:8]
        assert ids(hits) == order.tolist()
        np.testing.assert_allclose(
            [h.distance for h in hits], expected[order], rtol=1e-4, atol=1e-4
        )
        cosine = 1.0 - pairwise_distances(query[None, :], vectors, "cosine")[0]
        for hit in hits:
            assert hit.similarity == pytest.approx(
                100.0 * min(1.0, max(0.0, cosine[hit.product_id])), abs=1e-3
            )
    if metric != "cosine":
        # The metrics really differ here: the lengths change the ranking.
        q = rng.standard_normal(DIM)
        assert ids(index.search(q, k=8, metric=metric)) != ids(  # type: ignore[arg-type]
            index.search(q, k=8, metric="cosine")
        )


def test_colours_are_forgotten_when_the_index_rewrites_an_image_or_a_read_raced_a_write() -> None:
    """The search's candidates' colours kept beside the index (search.index.colour_memo): an
    image written again or removed loses its entry, and a database read taken before such a
    write is not kept (it may be the old photo's)."""
    index = VectorIndex(dim=4)
    index.upsert_product(ProductFacts(product_id=1, category="boot", price=10.0, active=True))
    index.upsert_product(ProductFacts(product_id=2, category=None, price=5.0, active=True))
    index.add_vectors(product_id=1, image_ids=[7, 8], vectors=np.eye(4)[:2])
    memo = index.colour_memo
    assert memo is not None
    red, black = np.ones(3, np.float32), np.zeros(3, np.float32)
    memo.remember({7: red, 8: red}, epoch=memo.epoch)
    assert set(memo.known([7, 8, 9])) == {7, 8}
    index.add_vectors(product_id=2, image_ids=[7], vectors=np.eye(4)[2:3])  # 7 written again
    index.remove_image(8)
    assert memo.known([7, 8]) == {}
    read_at = memo.epoch  # a search reads 7's colour from the database now...
    index.add_vectors(product_id=1, image_ids=[9], vectors=np.eye(4)[3:])  # ...a write lands...
    memo.remember({7: black}, epoch=read_at)  # ...and the read comes back: not kept
    assert memo.known([7]) == {}
    memo.remember({7: black}, epoch=memo.epoch)
    assert memo.known([7])[7] is black
    # The category step reads the index's facts: unknown products are left out.
    assert index.categories_of([1, 2, 3]) == {1: "boot", 2: None}
