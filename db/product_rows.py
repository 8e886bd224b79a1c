"""The records a search's results are rendered from, read with plain statements: no ORM
objects to build on every search (two selects, whatever the number of products)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from db.records import ProductRecord
from db.tables import Product, ProductImage

__all__ = ["get_product_records"]


def get_product_records(
    session: Session, *, product_ids: Sequence[int]
) -> dict[int, ProductRecord]:
    """Product id -> its record with its images (by id), for those of `product_ids` that
    exist. Two plain selects, no ORM objects: every search renders its results from here."""
    ids = list(product_ids)
    if not ids:
        return {}
    products, images = Product.__table__, ProductImage.__table__
    images_of: dict[int, list[Row[Any]]] = defaultdict(list)
    for image in session.execute(
        select(images).where(images.c.product_id.in_(ids)).order_by(images.c.id)
    ):
        images_of[image.product_id].append(image)
    rows = session.execute(select(products).where(products.c.id.in_(ids)))
    return {row.id: ProductRecord.from_row(row, images_of[row.id]) for row in rows}
