"""The approximate index behind VectorIndex: same API, same filters, exact re-ranking, kept up
to date with every change, exact scan as the fallback (search.index.ivf, search.index.memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data import SyntheticCatalog, load_reference
from search.index import SearchFilter
from search.index.memory import VectorIndex
from search.index.protocol import ProductFacts

ROWS = 4000
THRESHOLD = 1000
CATEGORIES = ("sneaker", "boot", "heel", "sandal")


@pytest.fixture(scope="module")
def catalog(footwear: Path) -> tuple[np.ndarray, np.ndarray]:
    """(4000, 512) VGG16-like vectors (calibrated synthetic) and 100 queries."""
    reference = load_reference(footwear / "vgg16_avgpool_reference.npy")
    gen = SyntheticCatalog(reference, families=400, sigma_centre=0.05, sigma_item=0.5, seed=7)
    vectors, _ = gen.draw(ROWS)
    queries, _ = gen.draw(100)
    return vectors, queries


def facts_for(n: int, *, rare: int = 0) -> list[ProductFacts]:
    """Product i: category by i % 4 (the first `rare` products: "rare"), price i % 100."""
    return [
        ProductFacts(
            product_id=i,
            category="rare" if i < rare else CATEGORIES[i % len(CATEGORIES)],
            price=float(i % 100),
            active=True,
        )
        for i in range(n)
    ]


def build(vectors: np.ndarray, *, ann: bool, rare: int = 0) -> VectorIndex:
    n = len(vectors)
    ids = np.arange(n, dtype=np.int64)
    index = VectorIndex.build(
        facts=facts_for(n, rare=rare),
        image_ids=ids + 10_000,
        product_ids=ids,
        vectors=vectors,
        ann_min_rows=THRESHOLD if ann else None,
    )
    if ann:
        assert index.wait_for_ann(timeout=120)
    return index


def overlap(a: VectorIndex, b: VectorIndex, queries: np.ndarray, **filters: object) -> float:
    found = total = 0
    for q in queries:
        exact = {h.product_id for h in b.search(q, k=8, query_filter=SearchFilter(**filters))}  # type: ignore[arg-type]
        approx = {h.product_id for h in a.search(q, k=8, query_filter=SearchFilter(**filters))}  # type: ignore[arg-type]
        found += len(exact & approx)
        total += len(exact)
    return found / total


def test_small_catalogues_stay_exact() -> None:
    index = VectorIndex.build(
        facts=facts_for(300),
        image_ids=np.arange(300),
        product_ids=np.arange(300),
        vectors=np.random.default_rng(0).random((300, 512)),
    )
    assert index.wait_for_ann(timeout=10) is False
    assert index.ann_info()["ready"] is False


def test_ann_answers_like_the_exact_scan(catalog: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = catalog
    approx, exact = build(vectors, ann=True), build(vectors, ann=False)
    info = approx.ann_info()
    assert info["ready"] and info["rows"] == ROWS and 0 < info["nprobe"] <= info["nlist"]
    assert overlap(approx, exact, queries) >= 0.97
    # Scores are re-ranked exactly: a hit's distance is the exact one.
    q = queries[0]
    exact_by_id = {h.product_id: h.distance for h in exact.search(q, k=50)}
    for hit in approx.search(q, k=8):
        if hit.product_id in exact_by_id:
            assert hit.distance == pytest.approx(exact_by_id[hit.product_id], abs=1e-6)
    distances = [h.distance for h in approx.search(q, k=8)]
    assert distances == sorted(distances)


def test_filters_apply_to_ann_candidates(catalog: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = catalog
    approx, exact = build(vectors, ann=True), build(vectors, ann=False)
    for index in (approx, exact):
        for pid in range(0, ROWS, 3):
            index.set_active(pid, False)
    assert overlap(approx, exact, queries[:40], category="boot", max_price=60.0) >= 0.95
    for q in queries[:20]:
        for hit in approx.search(
            q, k=8, query_filter=SearchFilter(category="boot", max_price=60.0)
        ):
            assert hit.product_id % 4 == 1 and hit.product_id % 100 <= 60
            assert hit.product_id % 3 != 0  # inactive products never show
        excluded = {h.product_id for h in exact.search(q, k=3)}
        hits = approx.search(q, k=8, query_filter=SearchFilter(exclude_product_ids=excluded))
        assert excluded.isdisjoint(h.product_id for h in hits) and len(hits) == 8
        assert len(approx.search(q, k=8, query_filter=SearchFilter(include_inactive=True))) == 8


def test_a_narrow_filter_falls_back_to_the_exact_scan(
    catalog: tuple[np.ndarray, np.ndarray],
) -> None:
    vectors, queries = catalog
    approx = build(vectors, ann=True, rare=5)
    exact = build(vectors, ann=False, rare=5)
    for q in queries[:10]:
        assert approx.search(q, k=8, query_filter=SearchFilter(category="rare")) == exact.search(
            q, k=8, query_filter=SearchFilter(category="rare")
        )
        assert len(approx.search(q, k=8, query_filter=SearchFilter(category="rare"))) == 5


def test_changes_reach_the_ann(catalog: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = catalog
    index = build(vectors, ann=True)
    q = queries[5]
    # A new product whose photo is the query itself comes first.
    index.upsert_product(ProductFacts(product_id=99_999, category="boot", price=1.0, active=True))
    index.add_vectors(product_id=99_999, image_ids=[1], vectors=q[None, :])
    first = index.search(q, k=8)[0]
    assert (first.product_id, first.image_id) == (99_999, 1)
    assert first.distance == pytest.approx(0.0, abs=1e-6)
    # Its image replaced by another vector: it moves away from the query.
    index.add_vectors(product_id=99_999, image_ids=[1], vectors=queries[6][None, :])
    assert index.search(queries[6], k=1)[0].product_id == 99_999
    assert 99_999 not in {h.product_id for h in index.search(q, k=8)} or (
        index.search(q, k=8)[0].product_id != 99_999
    )
    # Removed images and hidden products never come back.
    top = index.search(q, k=8)
    index.remove_image(top[0].image_id)
    index.set_active(top[1].product_id, False)
    again = {h.product_id for h in index.search(q, k=8)}
    assert top[0].product_id not in again and top[1].product_id not in again
    assert index.ann_info()["ready"]


def test_compaction_rebuilds_the_ann(catalog: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = catalog
    index = build(vectors, ann=True)
    for image in range(10_000, 10_000 + ROWS // 2 + 10):  # more than half: compaction
        index.remove_image(image)
    assert not index.ann_info()["ready"]  # rows renumbered: the old ANN is gone
    survivors = VectorIndex.build(
        facts=facts_for(ROWS),
        image_ids=np.arange(ROWS // 2 + 10, ROWS) + 10_000,
        product_ids=np.arange(ROWS // 2 + 10, ROWS),
        vectors=vectors[ROWS // 2 + 10 :],
        ann_min_rows=None,
    )
    # Until the new ANN is ready the exact scan answers; either way the answers hold.
    assert overlap(index, survivors, queries[:20]) >= 0.97
    assert index.wait_for_ann(timeout=120)
    # Rows removed after the compaction stay in the ANN, masked, until the next compaction.
    assert len(index) == ROWS - (ROWS // 2 + 10) <= index.ann_info()["rows"] < ROWS // 2
    assert overlap(index, survivors, queries) >= 0.97


def test_changes_during_the_background_build_are_caught_up(
    catalog: tuple[np.ndarray, np.ndarray],
) -> None:
    vectors, queries = catalog
    ids = np.arange(ROWS, dtype=np.int64)
    index = VectorIndex.build(
        facts=facts_for(ROWS),
        image_ids=ids + 10_000,
        product_ids=ids,
        vectors=vectors,
        ann_min_rows=THRESHOLD,
    )
    # Whether or not the build has finished yet, these changes must end up in the ANN.
    q = queries[3]
    index.upsert_product(ProductFacts(product_id=77_777, category=None, price=5.0, active=True))
    index.add_vectors(product_id=77_777, image_ids=[2], vectors=q[None, :])
    index.add_vectors(product_id=0, image_ids=[10_000], vectors=queries[4][None, :])
    assert index.wait_for_ann(timeout=120)
    assert index.ann_info()["rows"] == ROWS + 1
    assert index.search(q, k=1)[0].product_id == 77_777
    assert index.search(queries[4], k=1)[0].product_id == 0
