"""The index this process searches, kept equal to what the database holds.

On SQLite (and with VECTOR_SEARCH=memory) it is an in-memory `VectorIndex` built from the
stored index vectors; on PostgreSQL a `PgVectorIndex` that asks the database. Catalogue writes
update it after their commit; other processes' writes reach it through `catalog_changes` rows
(`ModelManager.sync`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.records import ProductRecord
from db.tables import Product
from search.index.memory import VectorIndex
from search.index.protocol import ProductFacts, SearchIndex

__all__ = ["LiveIndex", "facts_of"]


def facts_of(product: Product | ProductRecord) -> ProductFacts:
    return ProductFacts(
        product_id=product.id,
        category=product.category,
        # NaN never passes a `price <= max_price` filter: unpriced products are not "under 60".
        price=float(product.price) if product.price is not None else math.nan,
        active=product.in_stock and not product.removed,
    )


class LiveIndex:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        vector_search: Literal["memory", "pgvector"],
        hnsw_ef_search: int,
        dim: int,
    ) -> None:
        self._sessions = sessions
        self._vector_search = vector_search
        self._hnsw_ef_search = hnsw_ef_search
        self.current: SearchIndex = VectorIndex(dim)
        self.last_change = 0  # the last catalog_changes row `current` reflects

    def build(self, *, model_name: str, dim: int) -> SearchIndex:
        """A new index of the model's stored index vectors (not yet the current one)."""
        if self._vector_search == "pgvector":
            from search.index.postgres import PgVectorIndex

            return PgVectorIndex(
                self._sessions, model_name=model_name, dim=dim, ef_search=self._hnsw_ef_search
            )
        with self._sessions() as session:
            facts = [facts_of(product) for product in session.query(Product).all()]
            image_ids, product_ids, vectors = repo.load_index_vectors(
                session, model_name=model_name
            )
        return VectorIndex.build(
            facts=facts,
            image_ids=image_ids,
            product_ids=product_ids,
            vectors=np.stack(vectors) if vectors else np.zeros((0, dim), np.float32),
        )

    def product_changed(self, product: ProductRecord) -> None:
        """A product's stock, removal, price or category changed (after the commit)."""
        self.current.upsert_product(facts_of(product))

    def image_added(self, product: ProductRecord, image_id: int, index_vector: np.ndarray) -> None:
        """A new image's (dim,) index vector (after the commit)."""
        self.current.upsert_product(facts_of(product))
        self.current.add_vectors(
            product_id=product.id, image_ids=[image_id], vectors=index_vector[np.newaxis, :]
        )

    def refresh(self, product_ids: Iterable[int], *, model_name: str) -> None:
        """Make the index hold exactly what the database holds for these products (changed
        by another process). Nothing to do for an index that reads the database itself."""
        index = self.current
        if index.reads_database:
            return
        for product_id in sorted(set(product_ids)):
            with self._sessions() as session:
                row = repo.get_product_by_id(session, product_id=product_id)
                if row is None:
                    continue
                facts = facts_of(row)
                image_ids, _, vectors = repo.load_index_vectors(
                    session, model_name=model_name, product_id=product_id
                )
            index.upsert_product(facts)
            stored = set(image_ids.tolist())
            for image_id in index.image_ids_of(product_id):
                if image_id not in stored:
                    index.remove_image(image_id)
            if vectors:
                index.add_vectors(
                    product_id=product_id, image_ids=image_ids.tolist(), vectors=np.stack(vectors)
                )
