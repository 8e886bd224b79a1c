"""Tests of search.index.memory.VectorIndex: invalid input rejected with nothing changed,
storage growth and compaction, bulk load equal to incremental adds, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from search.index import SearchFilter
from search.index.memory import VectorIndex
from tests.index_catalogue import (
    DIM,
    Catalogue,
    facts,
    ids,
    random_catalogue,
)

# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_rejected_and_nothing_changes(bad: float) -> None:
    rng = np.random.default_rng(12)
    cat = random_catalogue(rng, 10)
    q = rng.standard_normal(DIM)
    before = cat.index.search(q, k=20)
    size = len(cat.index)
    rows = rng.standard_normal((3, DIM))
    rows[2, 5] = bad
    # Image 1000 already exists: its replacement must not happen either.
    with pytest.raises(ValueError, match="NaN or infinity"):
        cat.index.add_vectors(product_id=1, image_ids=[1000, 77_777, 77_778], vectors=rows)
    assert len(cat.index) == size
    assert cat.index.search(q, k=20) == before
    assert cat.check(cat.images[1000][1])[0].image_id == 1000
    with pytest.raises(ValueError):
        cat.index.search(np.full(DIM, bad))


def test_invalid_arguments_are_rejected() -> None:
    index = VectorIndex(dim=DIM)
    v = np.ones((1, DIM))
    with pytest.raises(ValueError, match="upserted"):
        index.add_vectors(product_id=1, image_ids=[1], vectors=v)
    index.upsert_product(facts(1))
    with pytest.raises(ValueError):
        index.add_vectors(product_id=1, image_ids=[1, 2], vectors=v)  # 2 ids, 1 vector
    with pytest.raises(ValueError):
        index.add_vectors(product_id=1, image_ids=[1], vectors=np.ones((1, DIM + 1)))
    with pytest.raises(ValueError):
        index.add_vectors(product_id=1, image_ids=[1, 1], vectors=np.ones((2, DIM)))
    with pytest.raises(ValueError):
        index.search(np.ones(DIM + 1))
    with pytest.raises(ValueError):
        index.upsert_product(facts(2, price=float("inf")))
    with pytest.raises(KeyError):
        index.product_vectors(99)
    assert len(index) == 0
    with pytest.raises(ValueError, match="without facts"):
        VectorIndex.build(
            facts=[facts(1)], image_ids=np.array([1]), product_ids=np.array([2]), vectors=v
        )
    with pytest.raises(ValueError, match="repeat"):
        VectorIndex.build(
            facts=[facts(1)],
            image_ids=np.array([1, 1]),
            product_ids=np.array([1, 1]),
            vectors=np.ones((2, DIM)),
        )


# ---------------------------------------------------------------- storage


def test_growth_past_the_initial_capacity() -> None:
    rng = np.random.default_rng(13)
    cat = Catalogue()
    capacity = cat.index._vectors.shape[0]  # white-box: how many rows fit before the first growth
    image_id = 0
    pid = 0
    while image_id < 2 * capacity + 100:  # at least two doublings, by batches of 1..5 rows
        pid += 1
        cat.product(facts(pid, price=float(pid % 50)))
        n = int(rng.integers(1, 6))
        cat.add(pid, list(range(image_id, image_id + n)), rng.standard_normal((n, DIM)))
        image_id += n
    assert len(cat.index) == image_id
    assert cat.index._vectors.shape[0] >= 4 * capacity
    for _ in range(5):
        cat.check(rng.standard_normal(DIM))
        cat.check(rng.standard_normal(DIM), max_price=20.0)
    some = cat.images[image_id - 1][1]
    assert cat.index.search(some, k=1)[0].image_id == image_id - 1


def test_compaction_keeps_answers_identical() -> None:
    rng = np.random.default_rng(14)
    cat = random_catalogue(rng, 150, max_images=4)
    queries = rng.standard_normal((6, DIM))
    images = sorted(cat.images)
    survivors = set(images[::3])  # remove two thirds: compaction happens on the way
    used_before = cat.index._used  # white-box: rows written, dead ones included
    for image_id in images:
        if image_id not in survivors:
            cat.remove(image_id)
            if image_id % 37 == 0:
                for q in queries[:2]:
                    cat.check(q)
    assert cat.index._used < used_before  # compacted
    assert len(cat.index) == len(survivors)
    fresh = VectorIndex.build(
        facts=cat.facts.values(),
        image_ids=np.array(sorted(survivors)),
        product_ids=np.array([cat.images[i][0] for i in sorted(survivors)]),
        vectors=np.stack([cat.images[i][1] for i in sorted(survivors)]),
    )
    for q in queries:
        for filters in ({}, {"category": "boot"}, {"max_price": 90.0, "include_inactive": True}):
            hits = cat.check(q, k=10, **filters)
            again = fresh.search(q, k=10, query_filter=SearchFilter(**filters))  # type: ignore[arg-type]
            assert [(h.product_id, h.image_id) for h in hits] == [
                (h.product_id, h.image_id) for h in again
            ]
            np.testing.assert_allclose(
                [h.distance for h in hits], [h.distance for h in again], atol=1e-6
            )
    # Updates keep working on the compacted rows.
    some_pid = cat.images[images[0]][0]
    cat.index.set_active(some_pid, False)
    assert some_pid not in ids(cat.index.search(cat.images[images[0]][1], k=200))


def test_build_and_incremental_adds_give_the_same_results() -> None:
    rng = np.random.default_rng(15)
    n_products = 120
    all_facts = [
        facts(pid, ["a", "b", None][pid % 3], float(rng.integers(1, 100)), pid % 5 != 0)
        for pid in range(n_products)
    ]
    counts = rng.integers(1, 4, n_products)
    product_ids = np.repeat(np.arange(n_products), counts)
    image_ids = rng.permutation(len(product_ids)) + 500
    vectors = rng.random((len(product_ids), DIM)).astype(np.float32)  # non-negative, like VGG

    built = VectorIndex.build(
        facts=all_facts, image_ids=image_ids, product_ids=product_ids, vectors=vectors
    )
    incremental = VectorIndex(dim=DIM)
    for f in all_facts:
        incremental.upsert_product(f)
    for pid in rng.permutation(n_products).tolist():  # another row order than build's
        rows = np.flatnonzero(product_ids == pid)
        incremental.add_vectors(
            product_id=pid, image_ids=image_ids[rows].tolist(), vectors=vectors[rows]
        )
    assert len(built) == len(incremental) == len(product_ids)
    assert built.product_count() == incremental.product_count()
    for pid in (0, 7, 119):
        np.testing.assert_array_equal(built.product_vectors(pid), incremental.product_vectors(pid))
    for i in range(20):
        q = vectors[i * 7] if i % 2 else rng.random(DIM)
        for filters in ({}, {"category": "b"}, {"max_price": 40.0}, {"include_inactive": True}):
            a = built.search(q, k=8, query_filter=SearchFilter(**filters))  # type: ignore[arg-type]
            b = incremental.search(q, k=8, query_filter=SearchFilter(**filters))  # type: ignore[arg-type]
            assert [(h.product_id, h.image_id) for h in a] == [
                (h.product_id, h.image_id) for h in b
            ]
            np.testing.assert_allclose([h.distance for h in a], [h.distance for h in b], atol=1e-6)


# ---------------------------------------------------------------- threads


def test_thread_safety_smoke() -> None:
    rng = np.random.default_rng(16)
    stable = rng.random((200, DIM)).astype(np.float32)
    index = VectorIndex.build(
        facts=[facts(pid) for pid in range(200)],
        image_ids=np.arange(200),
        product_ids=np.arange(200),
        vectors=stable,
    )
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                pid = int(r.integers(200))
                hits = index.search(stable[pid], k=8)
                assert len(hits) == 8
                assert hits[0].product_id == pid and hits[0].distance < 1e-5
                assert len(set(ids(hits))) == 8
                assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def writer() -> None:
        w = np.random.default_rng(99)
        try:
            for step in range(400):
                pid = 1000 + step
                index.upsert_product(facts(pid, active=bool(step % 2)))
                index.add_vectors(
                    product_id=pid,
                    image_ids=[10_000 + 2 * step, 10_001 + 2 * step],
                    vectors=w.random((2, DIM)),
                )
                index.set_active(pid, True)
                if step >= 3:  # keep the volatile part small: compactions happen
                    index.remove_image(10_000 + 2 * (step - 3))
                    index.remove_image(10_001 + 2 * (step - 3))
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in readers:
        t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join(timeout=30)
    stop.set()
    for t in readers:
        t.join(timeout=30)
    assert not errors, errors[:3]
    assert len(index) == 200 + 6
    assert index.product_count() == 200 + 3
