"""Which variant each photo of a product shows (a feed's rows of one item_group_id: the red
and the black shoe of one product), so a search that matches the red one's photo shows the
red variant's link, price and colour (ProductRecord.as_shown_by). Photos enter with their
variant (ImportEntry.variant); this is for the photos a product already holds whose variant's
link, price or colour changed since (a sale starts, the link moves, the colour is corrected).
Search results read these fields from the database, so no index changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from db import photos
from db import repository as repo
from db.records import PhotoVariant, ProductRecord
from search.errors import CatalogError

if TYPE_CHECKING:
    from search.engine import SearchEngine

__all__ = ["set_photo_variants"]


def set_photo_variants(
    engine: SearchEngine,
    sku: str,
    variants: Mapping[str, PhotoVariant | None],
    colours: Mapping[str, str] | None = None,
) -> ProductRecord:
    """Give the product's photos (by content hash) these variants (None: the product's own) and
    these colour names (each one of NAMES: a variant's `color` that changed since the photo
    arrived, which wins over the computed name as it did then; the descriptor stays, the
    ranking reads the pixels); photos not named keep theirs. One transaction for both;
    CatalogError if there is no such product."""
    with engine.models.write_lock, engine.sessions() as session:
        row = repo.get_product(session, sku=sku)
        if row is None:
            raise CatalogError(f"there is no product with SKU {sku!r}")
        changed = photos.set_image_variants(session, product=row, variants=dict(variants))
        if photos.set_image_colour_names(session, product=row, names=dict(colours or {})):
            changed = True
        if changed:
            session.commit()
            session.refresh(row, ["images"])
        return ProductRecord.from_row(row)
