"""The vector indexes: where a search's k nearest products are found.

`SearchIndex` is what every index offers (`search(query, k=, query_filter=SearchFilter(...),
metric=)` -> `Hit`s); `VectorIndex` keeps the vectors in memory (numpy, with a faiss IVF for
large catalogues), `PgVectorIndex` asks PostgreSQL (pgvector, an HNSW index per model), and
`LiveIndex` is the one a process searches, kept equal to the database.
"""

from search.index.distance import l2_normalise, pairwise_distances
from search.index.hnsw import ensure_hnsw_index, hnsw_index_name, index_info
from search.index.live import LiveIndex, facts_of
from search.index.memory import VectorIndex
from search.index.postgres import PgVectorIndex
from search.index.protocol import (
    METRICS,
    NO_FILTER,
    Hit,
    Metric,
    ProductFacts,
    SearchFilter,
    SearchIndex,
)

__all__ = [
    "METRICS",
    "NO_FILTER",
    "Hit",
    "LiveIndex",
    "Metric",
    "PgVectorIndex",
    "ProductFacts",
    "SearchFilter",
    "SearchIndex",
    "VectorIndex",
    "ensure_hnsw_index",
    "facts_of",
    "hnsw_index_name",
    "index_info",
    "l2_normalise",
    "pairwise_distances",
]
