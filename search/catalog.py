"""The catalogue: products, their images and vectors; reads, and atomic writes.

Every write is atomic across the image file, the database row and the index: the file is
written first (content-addressed), then one transaction commits the product, image and vector
(and a `catalog_changes` row that tells other processes), and only then is this process's
index changed. A failure before the commit deletes the new file; a crash leaves at most an
unreferenced file, swept at the next start (`sweep_orphan_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db import photos
from db import repository as repo
from db.locks import share_catalogue
from db.media import ORPHAN_GRACE_SECONDS, MediaStore, StoredFile
from db.records import ImageRecord, PhotoVariant, ProductFields, ProductRecord
from db.tables import Product
from search.active_model import ModelManager
from search.colour import stored_colour
from search.errors import CatalogError, InvalidImageError
from search.featurize import PreparedImage
from search.index import LiveIndex, SearchFilter
from search.results import ResultItem, items_of_hits

# A product photo's shorter side, at least: the model sees 224x224, so a smaller photo is
# blown up into blocks that match nothing (a 1x1 px PNG was accepted before). Customers'
# query photos are not held to it: a small one is still a question worth answering.
MIN_PRODUCT_PHOTO_SIDE = 64


def check_product_photo(prepared: PreparedImage) -> None:
    """Raises InvalidImageError (one line, to show) when the photo is too small to list."""
    if min(prepared.width, prepared.height) < MIN_PRODUCT_PHOTO_SIDE:
        raise InvalidImageError(
            f"The photo is {prepared.width}x{prepared.height} pixels: a product photo needs "
            f"at least {MIN_PRODUCT_PHOTO_SIDE} pixels on its shorter side."
        )


__all__ = ["AddOutcome", "Catalog"]


@dataclass(frozen=True, slots=True)
class AddOutcome:
    product: ProductRecord
    image: ImageRecord
    created_product: bool
    created_image: bool  # False when these exact bytes were already this product's image
    near_duplicates: list[ResultItem]  # other products that look (almost) the same


class Catalog:
    """Thread-safe: writes are serialised by the model manager's write lock (a reindex
    switch-over holds it too)."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        media: MediaStore,
        models: ModelManager,
        live: LiveIndex,
        near_duplicate_distance: float,
    ) -> None:
        self._sessions = sessions
        self.media = media
        self._models = models
        self._live = live
        self.near_duplicate_distance = near_duplicate_distance

    # ---- reads -----------------------------------------------------------------------------

    def get(self, sku: str) -> ProductRecord | None:
        with self._sessions() as session:
            row = repo.get_product(session, sku=sku)
            return ProductRecord.from_row(row) if row else None

    def get_by_id(self, product_id: int) -> ProductRecord | None:
        with self._sessions() as session:
            row = repo.get_product_by_id(session, product_id=product_id)
            return ProductRecord.from_row(row) if row else None

    def require(self, sku: str) -> ProductRecord:
        product = self.get(sku)
        if product is None:
            raise CatalogError(f"there is no product with SKU {sku!r}")
        return product

    def products(
        self, *, include_removed: bool = False, category: str | None = None
    ) -> list[ProductRecord]:
        with self._sessions() as session:
            return repo.list_products(session, include_removed=include_removed, category=category)

    def categories(self) -> list[str]:
        """Categories of the products customers can currently find."""
        with self._sessions() as session:
            return repo.active_categories(session)

    def find(
        self,
        text: str,
        *,
        limit: int = 20,
        category: str | None = None,
        colour: str | None = None,
        max_price: Decimal | None = None,
    ) -> list[ProductRecord]:
        """Active products whose SKU or name contains `text` ("": any), in `category`, of
        `colour` (one of the colour names: the product's colour as shown) and priced at most
        `max_price`, by SKU."""
        with self._sessions() as session:
            return repo.search_products(
                session,
                text=text,
                limit=limit,
                category=category,
                colour=colour,
                max_price=max_price,
            )

    def sample_photos(self, limit: int) -> list[bytes]:
        """Up to `limit` of the catalogue's photos (encoded bytes), spread over it: what the
        model's runtime is calibrated and checked on. Files that cannot be read are skipped."""
        with self._sessions() as session:
            names = repo.spread_image_files(session, limit=limit)
        photos = []
        for name in names:
            try:
                photos.append(self.media.read(name))
            except OSError:
                continue
        return photos

    # ---- writes ----------------------------------------------------------------------------

    def add(self, fields: ProductFields, data: bytes) -> AddOutcome:
        """Add a product with its photo, or add the photo to the existing product with that SKU.

        Returns only once the product, the image file and its vector are stored and searchable.
        Raises InvalidImageError, CatalogError or db.media.MediaStoreError; nothing is changed then.
        """
        prepared = self._models.prepare(data)
        vector = self._models.embed([prepared])[0]  # (dim,)
        return self.store(fields, prepared, vector)

    def store(
        self,
        fields: ProductFields,
        prepared: PreparedImage,
        vector: np.ndarray,
        *,
        in_stock: bool = True,
        colour_name: str | None = None,
        variant: PhotoVariant | None = None,
    ) -> AddOutcome:
        """`add` for an image whose raw (dim,) vector is already computed. `in_stock`: the
        flag a product created by this photo starts with (in the same transaction, so it is
        never shown in stock when it is not). `colour_name`: the photo's colour as its source
        names it (a feed's `color`, one of the colour NAMES): stored instead of the name
        computed from the pixels, whose descriptor is still stored for the ranking.
        `variant`: the variant of the product this photo shows (its link and price).

        The same bytes in another product are allowed (a set and its base product): a row of
        this product's own, the file shared; the other product is among `near_duplicates`.
        Raises InvalidImageError for a photo too small to list (check_product_photo)."""
        check_product_photo(prepared)
        colour, computed_name = (
            stored_colour(prepared.colour) if prepared.colour is not None else (None, None)
        )
        colour_name = colour_name or computed_name
        with self._models.write_lock:
            model = self._models.active
            index_vector = model.post.transform(vector)  # (dim,) what the index compares
            with self._sessions() as session:
                product = repo.get_product(session, sku=fields.sku)
                existing = (
                    photos.find_product_image(
                        session, product_id=product.id, content_hash=prepared.content_hash
                    )
                    if product is not None
                    else None
                )
                if product is not None and existing is not None:
                    return AddOutcome(
                        product=ProductRecord.from_row(product),
                        image=ImageRecord.from_row(existing),
                        created_product=False,
                        created_image=False,
                        near_duplicates=[],
                    )
                exclude = [product.id] if product is not None else []
            near = self._near_duplicates(index_vector, exclude)
            stored = self.media.save(
                prepared.data,
                content_hash=prepared.content_hash,
                image_format=prepared.image_format,
            )
            try:
                with self._sessions() as session:
                    share_catalogue(session)  # a model switch-over waits for this add
                    row = repo.get_product(session, sku=fields.sku)
                    created_product = row is None
                    if row is None:
                        row = repo.create_product(session, fields=fields, in_stock=in_stock)
                    image_row = repo.add_image(
                        session,
                        product=row,
                        file_name=stored.file_name,
                        content_hash=prepared.content_hash,
                        width=prepared.width,
                        height=prepared.height,
                        byte_size=len(prepared.data),
                        colour=colour,
                        colour_name=colour_name,
                        variant=variant,
                    )
                    repo.store_embedding(
                        session,
                        image_id=image_row.id,
                        model_name=model.name,
                        vector=vector,
                        index_vector=index_vector,
                    )
                    repo.log_change(session, product_id=row.id)
                    # Not `sessions.begin()`: the row is read again after the commit, and the
                    # IntegrityError of a racing add (caught below) is raised by the commit.
                    session.commit()
                    session.refresh(row, ["images"])
                    record, image = ProductRecord.from_row(row), ImageRecord.from_row(image_row)
            except IntegrityError as exc:
                self._discard(stored)
                raise CatalogError(
                    "the catalogue changed at the same moment; please try again"
                ) from exc
            except BaseException:
                self._discard(stored)
                raise
            self._live.image_added(record, image.id, index_vector)
            if self._active_model_name() != model.name:
                # Another process switched the model while this one still used the old one:
                # the new image needs the new model's vector too, or it stays invisible.
                self._models.reload()
                record = self.get_by_id(record.id) or record
        return AddOutcome(
            product=record,
            image=image,
            created_product=created_product,
            created_image=True,
            near_duplicates=near,
        )

    def update(self, fields: ProductFields) -> tuple[ProductRecord, bool]:
        """Give an existing product these fields. Returns (product, whether anything changed)."""
        with self._models.write_lock, self._sessions() as session:
            row = repo.get_product(session, sku=fields.sku)
            if row is None:
                raise CatalogError(f"there is no product with SKU {fields.sku!r}")
            changed = repo.update_product_fields(session, product=row, fields=fields)
            if changed:
                repo.log_change(session, product_id=row.id)
                # Not `sessions.begin()`: the row is read again after the commit, and the index
                # learns of the change only once it is committed.
                session.commit()
                session.refresh(row, ["images"])
            record = ProductRecord.from_row(row)
            if changed:
                self._live.product_changed(record)
            return record, changed

    def remove(self, sku: str) -> ProductRecord:
        """Soft delete: gone from results at once, kept in the database (`restore`)."""
        return self._set_flags(sku, removed=True)

    def restore(self, sku: str) -> ProductRecord:
        return self._set_flags(sku, removed=False)

    def set_stock(self, sku: str, *, in_stock: bool) -> ProductRecord:
        return self._set_flags(sku, in_stock=in_stock)

    def remember_telegram_file_id(self, image_id: int, file_id: str) -> None:
        """Telegram's id of an uploaded product photo, so it is sent by id next time."""
        with self._sessions.begin() as session:
            repo.set_telegram_file_id(session, image_id=image_id, file_id=file_id)

    def sweep_orphan_files(
        self, *, grace_seconds: float = ORPHAN_GRACE_SECONDS, now: float | None = None
    ) -> list[str]:
        """Delete image files no row references, once older than `grace_seconds` (an add in
        flight in another process is younger): safe while other processes write."""
        with self._sessions() as session:
            referenced = repo.referenced_files(session)
        return self.media.sweep_orphans(referenced, grace_seconds=grace_seconds, now=now)

    def _set_flags(
        self, sku: str, *, removed: bool | None = None, in_stock: bool | None = None
    ) -> ProductRecord:
        with self._models.write_lock, self._sessions() as session:
            row: Product | None = repo.get_product(session, sku=sku)
            if row is None:
                raise CatalogError(f"there is no product with SKU {sku!r}")
            if removed is not None:
                row.removed = removed
            if in_stock is not None:
                row.in_stock = in_stock
            repo.log_change(session, product_id=row.id)
            # Not `sessions.begin()`: the row is read again after the commit.
            session.commit()
            session.refresh(row, ["images"])
            record = ProductRecord.from_row(row)
            # After the commit: the index never shows what the database does not hold.
            self._live.product_changed(record)
            return record

    def _active_model_name(self) -> str | None:
        with self._sessions() as session:
            row = repo.active_model(session)
            return row.name if row is not None else None

    def _discard(self, stored: StoredFile) -> None:
        """Delete the file this failed add wrote, unless a row references it: another
        product's add of the same bytes may have committed meanwhile (the file is shared)."""
        if not stored.created:
            return
        try:
            with self._sessions() as session:
                if photos.file_in_use(session, stored.file_name):
                    return
        except SQLAlchemyError:  # the database failed the add too: the sweep decides later
            return
        self.media.delete(stored.file_name)

    def _near_duplicates(self, index_vector: np.ndarray, exclude: list[int]) -> list[ResultItem]:
        everything_else = SearchFilter(
            include_inactive=True, exclude_product_ids=frozenset(exclude)
        )
        hits = self._models.index.search(index_vector, k=3, query_filter=everything_else)
        close = [hit for hit in hits if hit.distance <= self.near_duplicate_distance]
        if not close:
            return []
        with self._sessions() as session:
            return items_of_hits(session, close)
