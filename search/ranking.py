"""The steps that rank one search, each small and named: the filtered k-nearest query, average
query expansion, category inference, and the colour blend. `Searcher` runs them in that order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from search.colour import blend, similarities
from search.index import Hit, Metric, SearchFilter, SearchIndex
from search.postprocess import expand_query

__all__ = [
    "CATEGORY_MAJORITY",
    "COLOUR_CANDIDATES",
    "blend_colour",
    "majority_category",
    "nearest_expanded",
]

# A category is inferred when more than half of the k nearest products share it.
CATEGORY_MAJORITY = 0.5

# With colour on, the colour blend reorders this many nearest products (at least k): more than
# a demo category holds (~50 of 300), so there it reorders the whole inferred category, as
# measured (docs/evaluation.md); and within HNSW_EF_SEARCH's default 100 on pgvector.
COLOUR_CANDIDATES = 64


def nearest_expanded(
    index: SearchIndex,
    query: np.ndarray,
    k: int,
    query_filter: SearchFilter,
    *,
    metric: Metric,
    neighbours: int,
    near_duplicate_distance: float,
) -> list[Hit]:
    """Average query expansion (docs/evaluation.md: precision@8 0.853 -> 0.872 on top of
    sqrt+centre): the query and its `neighbours` nearest products averaged, then searched
    again. Not for a photo of a catalogue product itself (its best match is a near duplicate):
    such a query already sits on the catalogue."""
    if neighbours <= 0:
        return index.search(query, k=k, query_filter=query_filter, metric=metric)
    first = index.search(query, k=neighbours, query_filter=query_filter, metric=metric)
    if not first or 1.0 - first[0].similarity / 100.0 <= near_duplicate_distance:
        return index.search(query, k=k, query_filter=query_filter, metric=metric)
    around = np.stack(
        [index.product_vectors(hit.product_id).mean(axis=0) for hit in first]
    )  # (m, dim) index space
    expanded = expand_query(query, around, metric=metric).astype(np.float32)
    return index.search(expanded, k=k, query_filter=query_filter, metric=metric)


def majority_category(index: SearchIndex, hits: Sequence[Hit], k: int) -> str | None:
    """The category shared by more than half of the k asked for (not of the hits found: 3
    products of which 2 are boots say little), or None. Read from the index's facts, the ones
    its category filter then applies (no database read for an in-memory index)."""
    known = index.categories_of(hit.product_id for hit in hits)
    categories = Counter(category for category in known.values() if category)
    if not categories:
        return None
    category, count = categories.most_common(1)[0]
    return category if count > CATEGORY_MAJORITY * k else None


def blend_colour(
    hits: Sequence[Hit],
    query_colour: np.ndarray,
    stored: Mapping[int, np.ndarray],
    weight: float,
) -> list[Hit]:
    """Hits (best first) reordered by (1 - w) * VGG similarity + w * colour similarity, both in
    [0, 1]; each hit's `similarity` becomes that score in percent, so the number shown is the
    one ranked by. `query_colour`: (colour DIM,); `stored`: image id -> (colour DIM,) of the
    hits' images. A hit whose image has no colour yet keeps its VGG similarity as its score
    (neither helped nor pushed down). Ties keep the VGG order."""
    vgg = np.array([hit.similarity / 100.0 for hit in hits], dtype=np.float32)  # (n,)
    score = vgg.copy()
    known = [i for i, hit in enumerate(hits) if hit.image_id in stored]
    if known:
        matrix = np.stack([stored[hits[i].image_id] for i in known])  # (m, colour DIM)
        score[known] = blend(vgg[known], similarities(query_colour, matrix), weight)
    order = np.argsort(-score, kind="stable")
    shown = (100.0 * np.clip(score, 0.0, 1.0)).tolist()  # (n,) percent, as Python floats
    return [replace(hits[i], similarity=shown[i]) for i in order.tolist()]
