"""A VectorIndex next to the plain-Python truth it must agree with: the shared helpers of
tests/test_index.py and tests/test_index_storage.py (small synthetic catalogues, brute force)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from search.index import SearchFilter
from search.index.memory import VectorIndex
from search.index.protocol import Hit, ProductFacts

__all__ = [
    "DIM",
    "Catalogue",
    "assert_matches",
    "brute_force",
    "facts",
    "ids",
    "random_catalogue",
    "unit",
]

DIM = 32  # small vectors keep the synthetic tests fast; the reference test uses 512


def facts(
    pid: int, category: str | None = None, price: float = 10.0, active: bool = True
) -> ProductFacts:
    return ProductFacts(product_id=pid, category=category, price=price, active=active)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def ids(hits: Iterable[Hit]) -> list[int]:
    return [h.product_id for h in hits]


def brute_force(
    index_images: dict[int, tuple[int, np.ndarray]],
    all_facts: dict[int, ProductFacts],
    query: np.ndarray,
    k: int,
    *,
    category: str | None = None,
    max_price: float | None = None,
    include_inactive: bool = False,
) -> list[tuple[int, int, float]]:
    """Reference answer in float64 with Python loops: (product_id, image_id, distance)."""
    q = query.astype(np.float64)
    qn = np.linalg.norm(q)
    best: dict[int, tuple[float, int]] = {}
    for image_id, (pid, vec) in index_images.items():
        f = all_facts[pid]
        if not include_inactive and not f.active:
            continue
        if category is not None and f.category != category:
            continue
        if max_price is not None and f.price > max_price:
            continue
        v = vec.astype(np.float64)
        vn = np.linalg.norm(v)
        sim = 0.0 if qn == 0 or vn == 0 else float(q @ v / (qn * vn))
        dist = max(0.0, 1.0 - sim)
        if pid not in best or (dist, image_id) < best[pid]:
            best[pid] = (dist, image_id)
    ranked = sorted((d, pid, img) for pid, (d, img) in best.items())[:k]
    return [(pid, img, d) for d, pid, img in ranked]


def assert_matches(hits: list[Hit], expected: list[tuple[int, int, float]]) -> None:
    assert [(h.product_id, h.image_id) for h in hits] == [(p, i) for p, i, _ in expected]
    for h, (_, _, d) in zip(hits, expected, strict=True):
        assert h.distance == pytest.approx(d, abs=1e-5)


class Catalogue:
    """A VectorIndex plus the plain-Python truth it should agree with."""

    def __init__(self, dim: int = DIM) -> None:
        self.index = VectorIndex(dim=dim)
        self.images: dict[int, tuple[int, np.ndarray]] = {}
        self.facts: dict[int, ProductFacts] = {}

    def product(self, f: ProductFacts) -> None:
        self.index.upsert_product(f)
        self.facts[f.product_id] = f

    def add(self, pid: int, image_ids: list[int], vectors: np.ndarray) -> None:
        self.index.add_vectors(product_id=pid, image_ids=image_ids, vectors=vectors)
        for image_id, vec in zip(image_ids, vectors, strict=True):
            self.images[image_id] = (pid, vec.copy())

    def remove(self, image_id: int) -> None:
        self.index.remove_image(image_id)
        del self.images[image_id]

    def check(self, query: np.ndarray, k: int = 8, **filters: object) -> list[Hit]:
        hits = self.index.search(query, k=k, query_filter=SearchFilter(**filters))  # type: ignore[arg-type]
        assert_matches(hits, brute_force(self.images, self.facts, query, k, **filters))  # type: ignore[arg-type]
        return hits


def random_catalogue(
    rng: np.random.Generator, products: int, max_images: int = 3, dim: int = DIM
) -> Catalogue:
    cat = Catalogue(dim)
    image_id = 1000
    for pid in range(1, products + 1):
        cat.product(
            facts(
                pid,
                category=["sneaker", "boot", "sandal", None][pid % 4],
                price=float(rng.integers(5, 200)),
                active=bool(pid % 7 != 0),
            )
        )
        n = int(rng.integers(1, max_images + 1))
        cat.add(pid, list(range(image_id, image_id + n)), rng.standard_normal((n, dim)))
        image_id += n
    return cat
