"""Approximate nearest-neighbour candidates for large catalogues (faiss IVF, 8-bit codes).

`search.index.memory.VectorIndex` uses this above a size threshold: the IVF index proposes a few
hundred candidate rows for a query, and VectorIndex applies its filters and re-ranks them
exactly with its float32 vectors. Below the threshold, or when the candidates do not hold
enough products that pass the filters, VectorIndex scans every row exactly as before.

Why IVF with scalar-quantised codes (faiss `IndexIVFScalarQuantizer`, QT_8bit): it trains in
seconds even at a million rows on two cores (k-means on a sample), adds and removes single
rows cheaply, stores 512 bytes per row (a quarter of float32), and reaches recall@8 >= 0.99
on VGG16-like vectors with a few percent of the lists probed; the measurements are in
docs/benchmarks.md. faiss is imported lazily: small catalogues never load it.

Rows are identified by VectorIndex's row numbers (int64 ids in faiss). Vectors must be
L2-normalised float32; similarity is the inner product (= cosine).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["AnnBuild", "IvfAnn", "default_nlist", "default_nprobe"]

_TRAIN_POINTS_PER_LIST = 40  # k-means sample size per list (faiss warns below 39)
_MAX_TRAIN_POINTS = 131_072  # enough for k-means at any size here, bounded training time


def default_nlist(rows: int) -> int:
    """Inverted lists for `rows` vectors: about 2 * sqrt(rows), within [16, 4096], and no more
    than k-means can train with 40 points per list."""
    lists = min(round(2 * math.sqrt(max(rows, 1))), rows // _TRAIN_POINTS_PER_LIST)
    return int(min(4096, max(16, lists)))


def default_nprobe(nlist: int) -> int:
    """Lists probed per query: about 4 * sqrt(nlist), at least 32 (a quarter of the lists at
    10k rows, a tenth at 1M). Measured on calibrated synthetic vectors (bench.data):
    recall@8 >= 0.995 at 10k, 100k and 1M rows; see docs/benchmarks.md."""
    return int(min(nlist, max(32, round(4 * math.sqrt(nlist)))))


class IvfAnn:
    """faiss IVF-SQ8 over unit vectors, ids = row numbers. Not thread-safe on its own:
    VectorIndex calls it under its lock (building happens on a private instance)."""

    def __init__(self, dim: int, *, nlist: int, nprobe: int | None = None) -> None:
        import faiss

        self.dim = dim
        self.nlist = nlist
        self.nprobe = nprobe if nprobe is not None else default_nprobe(nlist)
        self._quantizer = faiss.IndexFlatIP(dim)
        self._index: Any = faiss.IndexIVFScalarQuantizer(
            self._quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        self._index.nprobe = self.nprobe

    @classmethod
    def build(
        cls,
        vectors: npt.NDArray[np.float32],
        rows: npt.NDArray[np.int64],
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 1234,
    ) -> IvfAnn:
        """Train on a sample of (n, dim) unit `vectors` and add them with ids `rows`."""
        n, dim = vectors.shape
        ann = cls(dim, nlist=nlist or default_nlist(n), nprobe=nprobe)
        sample_size = min(n, max(ann.nlist * _TRAIN_POINTS_PER_LIST, 1), _MAX_TRAIN_POINTS)
        rng = np.random.default_rng(seed)
        sample = (
            np.sort(rng.choice(n, size=sample_size, replace=False)) if sample_size < n else None
        )
        train = vectors[sample] if sample is not None else vectors
        ann._index.train(np.ascontiguousarray(train, dtype=np.float32))
        ann.add(rows, vectors)
        return ann

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, rows: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add (m,) row ids with their (m, dim) unit vectors (in chunks: bounded scratch)."""
        ids = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        array = np.asarray(vectors)
        for start in range(0, ids.size, 65_536):
            chunk = np.ascontiguousarray(array[start : start + 65_536], dtype=np.float32)
            self._index.add_with_ids(chunk, ids[start : start + 65_536])

    def remove(self, rows: npt.ArrayLike) -> None:
        import faiss

        ids = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        if ids.size:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))

    def search(self, query: npt.NDArray[np.float32], count: int) -> npt.NDArray[np.int64]:
        """Up to `count` candidate rows for one (dim,) unit query, best first."""
        _, ids = self._index.search(query.reshape(1, -1).astype(np.float32, copy=False), count)
        found: npt.NDArray[np.int64] = ids[0]
        return found[found >= 0]

    @property
    def nbytes(self) -> int:
        """Memory held: codes and ids in the lists, plus the centroids."""
        return int(self._index.ntotal) * (self.dim + 8) + self.nlist * self.dim * 4


class AnnBuild:
    """A background build of an IvfAnn from a snapshot of rows (a daemon thread)."""

    def __init__(
        self, vectors: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], generation: int
    ) -> None:
        self.generation = generation
        self.rows = rows
        self.result: IvfAnn | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._vectors = vectors
        self._thread = threading.Thread(target=self._run, name="ann-build", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = IvfAnn.build(self._vectors, self.rows)
        except BaseException as exc:  # reported by VectorIndex, which then stays exact
            self.error = exc
        finally:
            self._vectors = np.zeros((0, 0), dtype=np.float32)  # drop the snapshot reference
            self.done.set()
