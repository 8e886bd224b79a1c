"""Repository functions for the images' colour (the descriptor and the name search.colour
computes from the pixels): read for a search's candidates, written by the backfill."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.tables import ProductImage

__all__ = ["count_images_without_colour", "image_colours", "images_without_colour", "set_colour"]


def image_colours(session: Session, *, image_ids: Collection[int]) -> dict[int, bytes]:
    """image id -> its stored descriptor bytes, for those of `image_ids` that have one."""
    if not image_ids:
        return {}
    rows = session.execute(
        select(ProductImage.id, ProductImage.colour).where(
            ProductImage.id.in_(list(image_ids)), ProductImage.colour.is_not(None)
        )
    ).all()
    return {image_id: bytes(colour) for image_id, colour in rows if colour is not None}


def images_without_colour(
    session: Session, *, after_id: int = 0, limit: int = 64
) -> list[tuple[int, str]]:
    """(image id, file name) of up to `limit` images with no colour yet, by id after `after_id`
    (so a pass over a growing catalogue ends, and a file that cannot be read is not retried)."""
    rows = session.execute(
        select(ProductImage.id, ProductImage.file_name)
        .where(ProductImage.colour.is_(None), ProductImage.id > after_id)
        .order_by(ProductImage.id)
        .limit(limit)
    ).all()
    return [(image_id, file_name) for image_id, file_name in rows]


def count_images_without_colour(session: Session) -> int:
    query = select(func.count(ProductImage.id)).where(ProductImage.colour.is_(None))
    return int(session.execute(query).scalar_one())


def set_colour(session: Session, *, image_id: int, colour: bytes, colour_name: str) -> None:
    session.execute(
        update(ProductImage)
        .where(ProductImage.id == image_id)
        .values(colour=colour, colour_name=colour_name)
    )
