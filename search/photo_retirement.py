"""Retiring photos from a product: a photo its source replaced or dropped stops finding the
product. One transaction deletes the image rows (their vectors go with them, ON DELETE
CASCADE) and logs the change, so every process's index drops them (`engine.models.sync`);
this process's index drops them after the commit. The files stay until the orphan sweep at
the next start (`Catalog.sweep_orphan_files`), as for any crash between file and row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from db import repository as repo
from db.locks import share_catalogue
from db.records import ProductRecord
from search.errors import CatalogError

if TYPE_CHECKING:
    from search.engine import SearchEngine

__all__ = ["retire_photos"]


def retire_photos(engine: SearchEngine, sku: str, content_hashes: Iterable[str]) -> ProductRecord:
    """Delete the product's photos with these content hashes (others are ignored). A product
    keeps at least one photo: retiring every one raises CatalogError, nothing changed."""
    wanted = set(content_hashes)
    with engine.models.write_lock, engine.sessions() as session:
        row = repo.get_product(session, sku=sku)
        if row is None:
            raise CatalogError(f"there is no product with SKU {sku!r}")
        doomed = [image for image in row.images if image.content_hash in wanted]
        if not doomed:
            return ProductRecord.from_row(row)
        if len(doomed) == len(row.images):
            raise CatalogError(f"retiring these photos would leave product {sku!r} without one")
        share_catalogue(session)  # a model switch-over waits for this change
        image_ids = [image.id for image in doomed]
        for image in doomed:
            session.delete(image)
        repo.log_change(session, product_id=row.id)
        session.commit()
        session.refresh(row, ["images"])
        record = ProductRecord.from_row(row)
        # After the commit: the index never shows what the database no longer holds.
        for image_id in image_ids:
            try:
                engine.models.index.remove_image(image_id)
            except KeyError:  # never indexed (its vector was for another model): nothing to do
                continue
    return record
