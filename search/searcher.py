"""Searches: photo bytes, a stored product or a logged search in, a ranked SearchResult out.

Every search is written to the search log (the results, filters, model, metric and the query
vector), so a result set can be shared, rated, and run again cheaper or in all categories
without the photo.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import colours
from db import repository as repo
from db.product_rows import get_product_records
from db.records import ProductRecord, SearchRecord
from search.active_model import ModelManager
from search.colour import descriptor_of_bytes
from search.errors import CatalogError
from search.index import METRICS, Hit, Metric, SearchFilter
from search.ranking import COLOUR_CANDIDATES, blend_colour, majority_category, nearest_expanded
from search.results import SearchResult, items_of_hits, items_of_log

__all__ = ["CLI", "Requester", "SearchQuery", "Searcher"]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What a person asked for besides the photo. None: the engine's default."""

    k: int | None = None
    category: str | None = None
    max_price: Decimal | None = None
    metric: Metric | None = None
    # None: the engine's INFER_CATEGORY; a search with a category never infers one.
    infer_category: bool | None = None
    include_inactive: bool = False  # staff only: out-of-stock and removed products too
    # A colour name asked for ("red heels"): products of that colour first, the rest after
    # (a reordering, not a filter: a named colour is right for ~83% of photos, and a filter
    # would hide the product itself the other times). None: no colour asked.
    colour: str | None = None


@dataclass(frozen=True, slots=True)
class Requester:
    """Who searches, as the search log keeps it: a pseudonymous reference, and the door."""

    user_ref: str
    source: str  # "telegram", "link", "web", "cli"...


CLI = Requester(user_ref="cli", source="cli")


class Searcher:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        models: ModelManager,
        top_k: int,
        metric: Metric,
        infer_category: bool,
        query_expansion: int,
        near_duplicate_distance: float,
        colour_weight: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._models = models
        self.top_k = top_k
        self.metric: Metric = metric
        self.infer_category = infer_category
        self.query_expansion = query_expansion
        self.near_duplicate_distance = near_duplicate_distance
        # w of the colour blend after the category step; 0: VGG alone (docs/evaluation.md).
        self.colour_weight = colour_weight

    def search_image(
        self, data: bytes, query: SearchQuery = SearchQuery(), who: Requester = CLI
    ) -> SearchResult:
        """Photo bytes -> the k most similar products. Raises InvalidImageError."""
        started = time.perf_counter()
        prepared = self._models.prepare(data)
        vector = self._models.embed([prepared])[0]  # (dim,)
        # No query_hash is logged: the sha256 of a customer's photo identifies that photo.
        return self.search_vector(vector, query, who, colour=prepared.colour, started=started)

    def search_vector(
        self,
        vector: np.ndarray,
        query: SearchQuery = SearchQuery(),
        who: Requester = CLI,
        *,
        query_hash: str | None = None,
        colour: np.ndarray | None = None,
        exclude_product_ids: Iterable[int] = (),
        extra_filters: dict[str, Any] | None = None,
        started: float | None = None,
    ) -> SearchResult:
        """A raw (dim,) model vector -> ranked products, logged to the search log.

        With category inference on and no category asked for, the category more than half of
        the nearest products share becomes the filter (said in the result). With the query's
        (colour DIM,) `colour` and a colour weight, the nearest COLOUR_CANDIDATES products
        after that step are reordered by shape and colour (`ranking.blend_colour`).
        """
        started = time.perf_counter() if started is None else started
        k = self.top_k if query.k is None else query.k
        by_colour = colour is not None and self.colour_weight > 0
        reordered = by_colour or query.colour is not None
        wanted = max(k, COLOUR_CANDIDATES) if reordered else k  # what the last step ranks
        model, index = self._models.active, self._models.index
        point = model.post.transform(np.asarray(vector, dtype=np.float32))  # (dim,) index space
        metric = query.metric or self.metric
        query_filter = SearchFilter(
            category=query.category,
            max_price=float(query.max_price) if query.max_price is not None else None,
            include_inactive=query.include_inactive,
            exclude_product_ids=frozenset(exclude_product_ids),
        )

        def run(step_filter: SearchFilter) -> list[Hit]:
            return nearest_expanded(
                index,
                point,
                wanted,
                step_filter,
                metric=metric,
                neighbours=self.query_expansion,
                near_duplicate_distance=self.near_duplicate_distance,
            )

        hits = run(query_filter)
        inferred: str | None = None
        infer = self.infer_category if query.infer_category is None else query.infer_category
        if infer and query.category is None and hits:
            inferred = majority_category(index, hits[:k], k)
            if inferred is not None:
                hits = run(replace(query_filter, category=inferred))
        nearest: float | None = None  # cosine distance of the nearest, once colour reorders
        if by_colour and hits:
            assert colour is not None  # by_colour says so
            nearest = 1.0 - max(hit.similarity for hit in hits) / 100.0
            stored = self._stored_colours([hit.image_id for hit in hits])
            hits = blend_colour(hits, colour, stored, self.colour_weight)
        if query.colour is not None and hits:
            hits = self._asked_colour_first(hits, query.colour)
        hits = hits[:k]
        logged_filters: dict[str, Any] = {
            "k": k,
            **({"colour": query.colour} if query.colour else {}),
            "category": query.category or inferred,
            "max_price": str(query.max_price) if query.max_price is not None else None,
            **({"category_inferred": True} if inferred else {}),
            **(extra_filters or {}),
        }
        with self._sessions.begin() as session:
            items = items_of_hits(session, hits, max_price=query.max_price)
            latency_ms = (time.perf_counter() - started) * 1000
            entry = repo.log_search(
                session,
                user_ref=who.user_ref,
                source=who.source,
                query_hash=query_hash,
                model_name=model.name,
                filters=logged_filters,
                results=[
                    {
                        "product_id": i.product.id,
                        "image_id": i.image.id,
                        "distance": i.distance,
                        "similarity": i.similarity,
                    }
                    for i in items
                ],
                latency_ms=latency_ms,
                query_vector=vector,
                query_colour=colour,
                best_distance=nearest,
                metric=metric,
            )
            search_id, share_token = entry.id, entry.share_token  # set by log_search's flush
        return SearchResult(
            items=items,
            search_id=search_id,
            latency_ms=latency_ms,
            filters=logged_filters,
            share_token=share_token,
            inferred_category=inferred,
            model_name=model.name,
            metric=metric,
            nearest_distance=nearest,
        )

    def _asked_colour_first(self, hits: list[Hit], colour: str) -> list[Hit]:
        """A stable partition: the products whose colour (an admin's, else their photos') is
        `colour` first, in their order, then the others."""
        with self._sessions() as session:
            products = get_product_records(session, product_ids=[hit.product_id for hit in hits])
        colours_of = {pid: record.colour for pid, record in products.items()}
        first = [hit for hit in hits if colours_of.get(hit.product_id) == colour]
        return first + [hit for hit in hits if colours_of.get(hit.product_id) != colour]

    def _stored_colours(self, image_ids: list[int]) -> dict[int, np.ndarray]:
        """image id -> (colour DIM,) descriptor, for those of the images that have one: from
        the in-memory index's memo where it has them, the rest from the database (and then
        remembered)."""
        memo = self._models.index.colour_memo
        known = memo.known(image_ids) if memo is not None else {}
        missing = [image_id for image_id in image_ids if image_id not in known]
        if not missing:
            return known
        epoch = memo.epoch if memo is not None else 0
        with self._sessions() as session:
            stored = colours.image_colours(session, image_ids=missing)
        decoded = {image_id: descriptor_of_bytes(data) for image_id, data in stored.items()}
        found = {image_id: d for image_id, d in decoded.items() if d is not None}
        if memo is not None:
            memo.remember(found, epoch=epoch)
        return {**known, **found}

    def similar_to_product(
        self, product_id: int, who: Requester = CLI, *, k: int | None = None
    ) -> tuple[ProductRecord, SearchResult]:
        """A product and its lookalikes, from its stored vectors (nothing is featurised)."""
        model_name = self._models.active.name
        with self._sessions() as session:
            row = repo.get_product_by_id(session, product_id=product_id)
            if row is None:
                raise CatalogError(f"there is no product {product_id}")
            product = ProductRecord.from_row(row)
            raw = repo.image_vectors(session, product_id=product_id, model_name=model_name)
        if not raw:
            raise CatalogError(f"product {product.sku} has no searchable image yet")
        # The mean of its images' raw vectors, (dim,): it goes through the post-processing
        # like a photo would, and is what "cheaper" re-runs from the search log.
        vector = np.mean(np.stack(raw), axis=0).astype(np.float32)
        # Its colour likewise: the mean of its images' descriptors (shares average), (DIM,).
        stored = list(self._stored_colours([image.id for image in product.images]).values())
        colour = np.mean(np.stack(stored), axis=0).astype(np.float32) if stored else None
        result = self.search_vector(
            vector,
            # "More like this" shows what looks alike, whatever its category.
            SearchQuery(k=k, infer_category=False),
            who,
            colour=colour,
            exclude_product_ids=[product_id],
            extra_filters={"similar_to": product_id},
        )
        return product, result

    def get_search(
        self, search_id: int | None = None, *, share_token: str | None = None
    ) -> SearchResult | None:
        """A logged search (by id, or by its shared link's token), with today's product
        data; products no longer shown are left out."""
        with self._sessions() as session:
            record = repo.get_search(session, search_id=search_id, share_token=share_token)
            if record is None:
                return None
            items = items_of_log(session, record)
        inferred = (
            record.filters.get("category") if record.filters.get("category_inferred") else None
        )
        return SearchResult(
            items=items,
            search_id=record.id,
            latency_ms=record.latency_ms,
            filters=record.filters,
            share_token=record.share_token,
            inferred_category=str(inferred) if inferred else None,
            model_name=record.model_name,
            metric=record.metric,
        )

    def search_cheaper(self, search_id: int, who: Requester = CLI) -> SearchResult:
        """The same query again, limited to products cheaper than that search's first result."""
        record = self._logged_query(search_id)
        if not record.results:
            raise CatalogError("that search is no longer available; please send the photo again")
        with self._sessions() as session:
            first = repo.get_product_by_id(
                session, product_id=int(str(record.results[0]["product_id"]))
            )
            price = first.price if first is not None else None
        if price is None:
            raise CatalogError("the first result has no price to compare with")
        category = record.filters.get("category")
        return self._run_again(
            record,
            SearchQuery(
                k=_logged_k(record),
                category=str(category) if category else None,
                max_price=price - Decimal("0.01"),
                metric=_metric_of(record.metric),
                infer_category=False,
                colour=_logged_colour(record),
            ),
            who,
            {"cheaper_than": search_id},
        )

    def search_all_categories(self, search_id: int, who: Requester = CLI) -> SearchResult:
        """The same query again without its category filter."""
        record = self._logged_query(search_id)
        max_price = record.filters.get("max_price")
        return self._run_again(
            record,
            SearchQuery(
                k=_logged_k(record),
                max_price=Decimal(str(max_price)) if max_price else None,
                metric=_metric_of(record.metric),
                infer_category=False,
                colour=_logged_colour(record),
            ),
            who,
            {"all_categories_of": search_id},
        )

    def _logged_query(self, search_id: int) -> SearchRecord:
        with self._sessions() as session:
            record = repo.get_search(session, search_id=search_id)
        if record is None or record.query_vector is None:
            raise CatalogError("that search is no longer available; please send the photo again")
        return record

    def _run_again(
        self, record: SearchRecord, query: SearchQuery, who: Requester, marker: dict[str, Any]
    ) -> SearchResult:
        assert record.query_vector is not None  # _logged_query checked
        return self.search_vector(
            record.query_vector, query, who, colour=record.query_colour, extra_filters=marker
        )


def _logged_k(record: SearchRecord) -> int | None:
    k = record.filters.get("k")
    return int(str(k)) if k else None


def _logged_colour(record: SearchRecord) -> str | None:
    colour = record.filters.get("colour")
    return str(colour) if colour else None


def _metric_of(name: str) -> Metric | None:
    """A logged search's metric, to re-run it the same way (None: the engine's default)."""
    for metric in METRICS:
        if metric == name:
            return metric
    return None
