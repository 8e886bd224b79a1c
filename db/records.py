"""Plain, immutable records that leave the database layer (ORM objects stay inside a session)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import Row

from db.tables import Product, ProductImage

# What a record is made from: the ORM object, or a plain row of its table's columns (the
# search path reads those: no ORM objects to build on every search).
ImageRow = ProductImage | Row[Any]
ProductRow = Product | Row[Any]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: int
    product_id: int
    file_name: str
    content_hash: str
    width: int
    height: int
    telegram_file_id: str | None
    colour_name: str | None = None  # the main colour of the product in it (None: not computed)
    variant: PhotoVariant | None = None  # the variant it shows; None: the product's own

    @classmethod
    def from_row(cls, row: ImageRow) -> ImageRecord:
        return cls(
            id=row.id,
            product_id=row.product_id,
            file_name=row.file_name,
            content_hash=row.content_hash,
            width=row.width,
            height=row.height,
            telegram_file_id=row.telegram_file_id,
            colour_name=row.colour_name,
            variant=PhotoVariant.of_row(row),
        )


@dataclass(frozen=True, slots=True)
class PhotoVariant:
    """What a photo of one variant (a feed's row of an item_group_id) says instead of its
    product: the variant's own link and price now. Its colour is the photo's colour_name."""

    link: str | None
    price: Decimal | None
    currency: str | None

    @classmethod
    def of_row(cls, row: ImageRow) -> PhotoVariant | None:
        if row.variant_link is None and row.variant_price is None:
            return None
        return cls(link=row.variant_link, price=row.variant_price, currency=row.variant_currency)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductFields:
    """A product's data as people and feeds give it (validated by search.fields). The one
    definition of these six fields: ProductRecord extends it with what the catalogue adds."""

    sku: str
    name: str
    price: Decimal | None
    currency: str
    url: str | None
    category: str | None

    @property
    def fields(self) -> ProductFields:
        """Just the six fields (of a ProductRecord too), e.g. to compare with typed ones."""
        return ProductFields(**{f.name: getattr(self, f.name) for f in fields(ProductFields)})


PRODUCT_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ProductFields))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductRecord(ProductFields):
    id: int
    in_stock: bool
    removed: bool
    created_at: datetime
    updated_at: datetime
    images: tuple[ImageRecord, ...]
    corrected_colour: str | None = None  # an admin's colour name (/colour, PATCH), if any
    # Set on the product a search result shows for a photo of one variant: that photo's
    # colour name, which then wins over the first photo's (not over an admin's correction).
    variant_colour: str | None = None

    @property
    def active(self) -> bool:
        """Shown in customers' results: not removed and in stock."""
        return self.in_stock and not self.removed

    @property
    def colour(self) -> str | None:
        """The product's colour: an admin's correction, else that of its first photo with a
        computed colour."""
        if self.corrected_colour:
            return self.corrected_colour
        if self.variant_colour:
            return self.variant_colour
        return next((i.colour_name for i in self.images if i.colour_name), None)

    def as_shown_by(self, image: ImageRecord, max_price: Decimal | None = None) -> ProductRecord:
        """This product as a result that matched `image` shows it: with the link, price and
        colour of the variant the photo shows (when it shows one), else unchanged. A variant
        dearer than the search's `max_price` is not shown: the product passed the filter by
        its own (cheapest variant's) price, which it then shows."""
        variant = image.variant
        if variant is None or image.product_id != self.id:
            return self
        if max_price is not None and variant.price is not None and variant.price > max_price:
            return self
        price, currency = self.price, self.currency
        if variant.price is not None:
            price, currency = variant.price, variant.currency or self.currency
        return replace(
            self,
            url=variant.link or self.url,
            price=price,
            currency=currency,
            variant_colour=image.colour_name,
        )

    @property
    def status(self) -> str:
        if self.removed:
            return "removed"
        return "in stock" if self.in_stock else "out of stock"

    @classmethod
    def from_row(cls, row: ProductRow, images: Sequence[ImageRow] | None = None) -> ProductRecord:
        """`images`: the product's image rows by id, when `row` is a plain row (an ORM
        object brings its own)."""
        if images is None:
            assert isinstance(row, Product), "a plain row comes with its images"
            images = row.images
        return cls(
            **{name: getattr(row, name) for name in PRODUCT_FIELD_NAMES},
            id=row.id,
            in_stock=row.in_stock,
            removed=row.removed,
            created_at=row.created_at,
            updated_at=row.updated_at,
            images=tuple(ImageRecord.from_row(image) for image in images),
            corrected_colour=row.colour,
        )


@dataclass(frozen=True, slots=True)
class SearchRecord:
    id: int
    created_at: datetime
    user_ref: str
    source: str
    model_name: str
    filters: dict[str, object]
    results: list[dict[str, object]]
    latency_ms: float
    share_token: str | None
    query_vector: np.ndarray | None  # (dim,) float32
    metric: str = "cosine"
    query_colour: np.ndarray | None = None  # (colour DIM,) float32
