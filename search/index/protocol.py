"""What every search index offers and takes: the `SearchIndex` protocol, the `SearchFilter` a
search is asked with, `Hit` (what comes back) and `ProductFacts` (what the filters read).

The implementations: `search.index.memory.VectorIndex` (in memory, numpy) and
`search.index.postgres.PgVectorIndex` (the k-nearest query inside PostgreSQL); both rank with
the maths of `search.index.distance`. `Hit.similarity` is always the cosine similarity in
percent (what customers see), whatever the metric ranks by.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt

from search.index.colour_memo import ColourMemo

__all__ = [
    "METRICS",
    "NO_FILTER",
    "FloatRows",
    "Hit",
    "Metric",
    "ProductFacts",
    "SearchFilter",
    "SearchIndex",
    "check_facts",
]

FloatRows = npt.NDArray[np.float32]

# The distances a search can rank by (search.index.distance defines them).
Metric = Literal["cosine", "euclidean", "inner_product"]
METRICS: Final[tuple[Metric, ...]] = get_args(Metric)


@dataclass(frozen=True, slots=True)
class Hit:
    """One product in a search result, represented by its closest image."""

    product_id: int
    image_id: int
    distance: float  # in the search's metric, smaller is closer (cosine: 0 = same direction)
    similarity: float  # cosine similarity in percent, clipped to [0, 100], whatever the metric


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """What the search filters need to know of a product."""

    product_id: int
    category: str | None
    price: float  # in the shop's currency; filters compare <= max_price; NaN: not priced,
    # such a product never passes a max_price filter
    active: bool  # in stock and not removed


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Which products a search may return, besides its query vector: one object, as
    qdrant-client's `query_filter`, so every layer passes it on whole."""

    category: str | None = None
    max_price: float | None = None  # compared with <=; an unpriced product never passes
    include_inactive: bool = False  # also out-of-stock and removed products
    exclude_product_ids: Collection[int] = frozenset()

    def __post_init__(self) -> None:
        if self.max_price is not None and math.isnan(self.max_price):
            raise ValueError("max_price must not be NaN")


NO_FILTER: Final = SearchFilter()


class SearchIndex(Protocol):
    """What the search service needs of an index: the in-memory
    `search.index.memory.VectorIndex`, or `search.index.postgres.PgVectorIndex` (the k-nearest query
    inside PostgreSQL).

    Vectors are in the model's index space (post-processed, not necessarily unit length).
    The write methods are called after the database commit; an index that reads the database
    itself (pgvector) treats them as no-ops and says so with `reads_database`.
    """

    # True: the index answers from the database itself, so other processes' changes need no
    # syncing into it; False: it holds the vectors in this process.
    reads_database: bool
    # The candidates' colour descriptors remembered beside an in-memory index (None: read them
    # from the database every time, as an index that lives there does).
    colour_memo: ColourMemo | None

    @property
    def dim(self) -> int: ...

    def categories_of(self, product_ids: Iterable[int]) -> dict[int, str | None]:
        """product id -> its category, for those of `product_ids` the index knows (the facts
        its filters read)."""
        ...

    def image_ids_of(self, product_id: int) -> list[int]: ...

    def __len__(self) -> int: ...

    def product_count(self, *, active_only: bool = True) -> int: ...

    def product_vectors(self, product_id: int) -> FloatRows: ...

    def search(
        self,
        query: npt.ArrayLike,
        *,
        k: int = 8,
        query_filter: SearchFilter = NO_FILTER,
        metric: Metric = "cosine",
    ) -> list[Hit]: ...

    def upsert_product(self, facts: ProductFacts) -> None: ...

    def add_vectors(
        self, *, product_id: int, image_ids: Sequence[int], vectors: npt.ArrayLike
    ) -> None: ...

    def remove_image(self, image_id: int) -> None: ...


def check_facts(facts: ProductFacts) -> None:
    if math.isinf(facts.price):
        raise ValueError(f"product {facts.product_id}: price must be finite, got {facts.price!r}")
