"""A product's photos by their bytes: one photo may belong to several products (each has its
own row, the file is shared), and a photo may show one variant of its product."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.records import PhotoVariant
from db.repository import blob_to_vector
from db.tables import Embedding, Product, ProductImage

__all__ = [
    "file_in_use",
    "find_product_image",
    "raw_vectors_by_hash",
    "set_image_colour_names",
    "set_image_variants",
]


def find_product_image(
    session: Session, *, product_id: int, content_hash: str
) -> ProductImage | None:
    """The product's image with these bytes, if it has it (other products may have them too)."""
    return session.scalar(
        select(ProductImage).where(
            ProductImage.product_id == product_id, ProductImage.content_hash == content_hash
        )
    )


def raw_vectors_by_hash(
    session: Session, *, content_hashes: Sequence[str], model_name: str
) -> dict[str, np.ndarray]:
    """Content hash -> the (dim,) raw vector `model_name` gave those bytes, for the hashes the
    catalogue already holds (in any product): the same bytes need no featurising again."""
    if not content_hashes:
        return {}
    rows = session.execute(
        select(ProductImage.content_hash, Embedding.vector, Embedding.dim)
        .join(Embedding, Embedding.image_id == ProductImage.id)
        .where(
            ProductImage.content_hash.in_(list(content_hashes)),
            Embedding.model_name == model_name,
        )
    )
    return {str(digest): blob_to_vector(blob, int(dim)) for digest, blob, dim in rows}


def set_image_variants(
    session: Session, *, product: Product, variants: dict[str, PhotoVariant | None]
) -> bool:
    """Give the product's photos (by content hash) these variants; whether any changed.
    Photos not named keep theirs."""
    changed = False
    for image in product.images:
        if image.content_hash not in variants:
            continue
        variant = variants[image.content_hash]
        wanted = (variant.link, variant.price, variant.currency) if variant else (None, None, None)
        if (image.variant_link, image.variant_price, image.variant_currency) != wanted:
            image.variant_link, image.variant_price, image.variant_currency = wanted
            changed = True
    return changed


def set_image_colour_names(session: Session, *, product: Product, names: dict[str, str]) -> bool:
    """Give the product's photos (by content hash) these colour names; whether any changed.
    Photos not named keep theirs; the descriptors stay."""
    changed = False
    for image in product.images:
        name = names.get(image.content_hash)
        if name is not None and image.colour_name != name:
            image.colour_name = name
            changed = True
    return changed


def file_in_use(session: Session, file_name: str) -> bool:
    """Whether any image row (of any product) references this media file."""
    found = session.scalar(select(ProductImage.id).where(ProductImage.file_name == file_name))
    return found is not None
