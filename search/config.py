"""What the engine is told by whoever assembles it (the composition root reads Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from search.featurize import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from search.index import Metric

__all__ = ["EngineConfig", "PostprocessKind", "VectorSearch"]

PostprocessKind = Literal["sqrt-centre", "none"]
VectorSearch = Literal["memory", "pgvector"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    database_url: str
    media_dir: Path
    top_k: int = 8
    # Cosine distance in the post-processed space under which another product's photo counts
    # as "almost the same" (a warning on add; no query expansion for such a query).
    near_duplicate_distance: float = 0.12
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_image_bytes: int = DEFAULT_MAX_BYTES
    metric: Metric = "cosine"
    postprocess: PostprocessKind = "sqrt-centre"
    vector_search: VectorSearch = "memory"  # "pgvector": the k-nearest query in PostgreSQL
    hnsw_ef_search: int = 100
    infer_category: bool = True  # the live defaults (docs/evaluation.md)
    query_expansion: int = 3  # neighbours averaged into the query; 0 = off
    # w in (1 - w) * VGG similarity + w * colour similarity, after the category step; 0 = VGG
    # alone. 0 here (an engine assembled by hand ranks as before); Settings' default is 0.6.
    colour_weight: float = 0.0
    # Whether every photo that enters (catalogue or query) gets its colour descriptor. Always on
    # in the application; off only to measure what colour costs (`lookalike bench`).
    describe_colours: bool = True
    inference_batch_size: int = 32  # photos featurised together by the batching worker
    # Days a search-log row (and its votes and opens) is kept; then folded into daily counts.
    search_log_retention_days: int = 90
    # The served model's weights, as search.featurize.files.weights_tag names them
    # ("imagenet", "random-seed1234", "file-<digest>"): stored vectors of other weights are
    # never compared with its queries. None: not checked (a stand-in model in tests, benches).
    model_weights: str | None = None
