"""The row storage under `search.index.memory.VectorIndex`: preallocated numpy arrays, one row per
product image, with per-row copies of the product facts the search filters read.

This module only stores and renumbers rows (grow by doubling, compact away removed rows, bulk
load); locking, searching and the approximate index are `VectorIndex`'s. Nothing here takes a
lock: every method is called by `VectorIndex` with its lock held (or before the index is shared).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from search.index.distance import normalised_with_norms
from search.index.protocol import FloatRows, ProductFacts

__all__ = ["VectorRows"]

_MIN_CAPACITY = 1024  # rows preallocated by an empty index; grows by doubling
_NO_CATEGORY = np.int32(-1)  # category code of a product without a category


class VectorRows:
    """Normalised image vectors with per-row product facts (the storage, no search).

    Storage, all of length ``capacity`` and valid in ``[:used]``:
      vectors     (capacity, dim) float32, unit rows (zero rows allowed)
      norms       (capacity,) float32  each row's length before normalising (other metrics)
      image_id    (capacity,) int64
      product_id  (capacity,) int64
      live        (capacity,) bool     False once the image is removed (row awaiting compaction)
      active      (capacity,) bool     cached ProductFacts.active of the row's product
      price       (capacity,) float64  cached ProductFacts.price
      category    (capacity,) int32    cached category code, -1 for None
    The caches duplicate the product's facts on each of its rows so that a query builds its
    filter mask with a few vectorised comparisons instead of a Python loop over products.
    """

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._facts: dict[int, ProductFacts] = {}
        self._category_codes: dict[str, np.int32] = {}
        self._row_of_image: dict[int, int] = {}
        self._rows_of_product: dict[int, set[int]] = {}
        self._used = 0  # rows [0, used) have been written; some may be dead
        self._dead = 0  # rows in [0, used) with live == False
        self._allocate(_MIN_CAPACITY)

    def _allocate(self, capacity: int) -> None:
        """Fresh arrays of `capacity` rows, keeping rows [0, used) (bulk copy, not per add)."""
        n = self._used
        old = getattr(self, "_vectors", None)
        vectors = np.zeros((capacity, self._dim), dtype=np.float32)
        norms = np.zeros(capacity, dtype=np.float32)
        image_id = np.zeros(capacity, dtype=np.int64)
        product_id = np.zeros(capacity, dtype=np.int64)
        live = np.zeros(capacity, dtype=bool)
        active = np.zeros(capacity, dtype=bool)
        price = np.zeros(capacity, dtype=np.float64)
        category = np.full(capacity, _NO_CATEGORY, dtype=np.int32)
        if old is not None and n:
            vectors[:n] = self._vectors[:n]
            norms[:n] = self._norms[:n]
            image_id[:n] = self._image_id[:n]
            product_id[:n] = self._product_id[:n]
            live[:n] = self._live[:n]
            active[:n] = self._active[:n]
            price[:n] = self._price[:n]
            category[:n] = self._category[:n]
        self._vectors: FloatRows = vectors
        self._norms: FloatRows = norms
        self._image_id: npt.NDArray[np.int64] = image_id
        self._product_id: npt.NDArray[np.int64] = product_id
        self._live: npt.NDArray[np.bool_] = live
        self._active: npt.NDArray[np.bool_] = active
        self._price: npt.NDArray[np.float64] = price
        self._category: npt.NDArray[np.int32] = category

    def _ensure_capacity(self, rows: int) -> None:
        capacity = self._vectors.shape[0]
        if rows <= capacity:
            return
        while capacity < rows:
            capacity *= 2  # doubling: amortised O(1) copies per added row
        self._allocate(capacity)

    def _compact(self) -> None:
        """Drop dead rows; keeps row order, so answers are unchanged (rows are renumbered)."""
        keep = np.flatnonzero(self._live[: self._used])  # (live_rows,) indices of survivors
        n = int(keep.size)
        capacity = max(_MIN_CAPACITY, 2 * n)  # room to grow again before the next doubling
        vectors = np.zeros((capacity, self._dim), dtype=np.float32)
        vectors[:n] = self._vectors[keep]
        norms = np.zeros(capacity, dtype=np.float32)
        norms[:n] = self._norms[keep]
        image_id = np.zeros(capacity, dtype=np.int64)
        image_id[:n] = self._image_id[keep]
        product_id = np.zeros(capacity, dtype=np.int64)
        product_id[:n] = self._product_id[keep]
        live = np.zeros(capacity, dtype=bool)
        live[:n] = True
        active = np.zeros(capacity, dtype=bool)
        active[:n] = self._active[keep]
        price = np.zeros(capacity, dtype=np.float64)
        price[:n] = self._price[keep]
        category = np.full(capacity, _NO_CATEGORY, dtype=np.int32)
        category[:n] = self._category[keep]
        self._vectors, self._image_id, self._product_id = vectors, image_id, product_id
        self._norms = norms
        self._live, self._active, self._price, self._category = live, active, price, category
        self._used, self._dead = n, 0
        self._row_of_image = {int(image): row for row, image in enumerate(image_id[:n].tolist())}
        self._rows_of_product = {pid: set() for pid in self._rows_of_product}
        for row, pid in enumerate(product_id[:n].tolist()):
            self._rows_of_product[int(pid)].add(row)

    def _category_code(self, category: str | None) -> np.int32:
        if category is None:
            return _NO_CATEGORY
        code = self._category_codes.get(category)
        if code is None:
            code = np.int32(len(self._category_codes))
            self._category_codes[category] = code
        return code

    def _write_row_facts(self, rows: npt.NDArray[np.intp], facts: ProductFacts) -> None:
        """Copy a product's facts into the per-row caches of `rows` (its image rows)."""
        self._active[rows] = facts.active
        self._price[rows] = facts.price
        self._category[rows] = self._category_code(facts.category)

    def _product_rows(self, product_id: int) -> npt.NDArray[np.intp]:
        rows = self._rows_of_product.get(product_id, set())
        return np.fromiter(sorted(rows), dtype=np.intp, count=len(rows))

    def _load_rows(
        self, image_ids: npt.ArrayLike, product_ids: npt.ArrayLike, array: npt.NDArray[Any]
    ) -> None:
        """Bulk write of an empty store: (n,) image ids, (n,) product ids, (n, dim) vectors.

        Every product id must have facts already; ValueError, before anything is written, on
        repeated image ids, unknown products, mismatched lengths or NaN/inf.
        """
        images = np.asarray(image_ids).astype(np.int64, copy=False).reshape(-1)  # (n,)
        products = np.asarray(product_ids).astype(np.int64, copy=False).reshape(-1)  # (n,)
        n = int(array.shape[0])
        if images.size != n or products.size != n:
            raise ValueError(f"{images.size} image ids, {products.size} product ids, {n} vectors")
        if np.unique(images).size != n:
            raise ValueError("image ids repeat")
        unknown = set(np.unique(products).tolist()) - self._facts.keys()
        if unknown:
            raise ValueError(f"vectors of products without facts: {sorted(unknown)[:10]}")
        unit, lengths = normalised_with_norms(array, self._dim, "vectors")  # (n, dim), (n,)
        self._ensure_capacity(n)
        self._vectors[:n] = unit
        self._norms[:n] = lengths
        self._image_id[:n] = images
        self._product_id[:n] = products
        self._live[:n] = True
        self._used = n
        self._row_of_image = {int(image): row for row, image in enumerate(images.tolist())}
        for row, pid in enumerate(products.tolist()):
            self._rows_of_product[int(pid)].add(row)
        # Per-row fact caches in one go: facts per distinct product, spread by `inverse`.
        distinct, inverse = np.unique(products, return_inverse=True)  # (p,), (n,)
        ordered = [self._facts[int(pid)] for pid in distinct.tolist()]
        self._active[:n] = np.array([f.active for f in ordered], dtype=bool)[inverse]
        self._price[:n] = np.array([f.price for f in ordered], dtype=np.float64)[inverse]
        codes = [self._category_code(f.category) for f in ordered]
        self._category[:n] = np.array(codes, dtype=np.int32)[inverse]
