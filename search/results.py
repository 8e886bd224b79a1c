"""What a search gives back: ranked items with today's product records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from db.product_rows import get_product_records
from db.records import ImageRecord, ProductRecord, SearchRecord
from search.index import Hit

__all__ = ["ResultItem", "SearchResult", "items_of_hits", "items_of_log"]


@dataclass(frozen=True, slots=True)
class ResultItem:
    rank: int  # 1-based
    # As the matched photo shows it: a photo of one variant (a feed's red shoe of a group)
    # gives the variant's link, price and colour (ProductRecord.as_shown_by).
    product: ProductRecord
    image: ImageRecord  # the product's image that matched best
    distance: float  # in the search's metric, smaller is closer
    similarity: float  # cosine similarity in percent (what customers see)


@dataclass(frozen=True, slots=True)
class SearchResult:
    items: list[ResultItem]
    search_id: int | None  # the search log row
    latency_ms: float
    filters: dict[str, Any] = field(default_factory=dict)
    share_token: str | None = None  # what a shared link to these results carries
    inferred_category: str | None = None  # set when the category filter was guessed
    model_name: str = ""
    metric: str = "cosine"
    # Cosine distance of the nearest product when colour reordered the results (their
    # similarity is then the blended score); None: the first result's.
    nearest_distance: float | None = None

    @property
    def best_distance(self) -> float | None:
        """Cosine distance of the best match by shape (whatever the metric ranked by): what
        says a match is weak."""
        if self.nearest_distance is not None:
            return self.nearest_distance
        return 1.0 - self.items[0].similarity / 100.0 if self.items else None


def items_of_hits(
    session: Session, hits: Sequence[Hit], *, max_price: Decimal | None = None
) -> list[ResultItem]:
    """Index hits -> ranked items with today's product records, as the matched photos show
    them (a variant's photo: that variant, unless dearer than `max_price`). A hit whose
    product or image was deleted by another process since the index was loaded is left out."""
    records = get_product_records(session, product_ids=[hit.product_id for hit in hits])
    items: list[ResultItem] = []
    for hit in hits:
        product = records.get(hit.product_id)
        image = _image_of(product, hit.image_id)
        if product is None or image is None:
            continue
        items.append(
            ResultItem(
                rank=len(items) + 1,
                product=product.as_shown_by(image, max_price),
                image=image,
                distance=hit.distance,
                similarity=hit.similarity,
            )
        )
    return items


def items_of_log(session: Session, record: SearchRecord) -> list[ResultItem]:
    """A logged search's results with today's product data; products no longer shown are
    left out."""
    logged_max = record.filters.get("max_price")
    max_price = Decimal(str(logged_max)) if logged_max is not None else None
    ids = [int(str(entry["product_id"])) for entry in record.results]
    products = get_product_records(session, product_ids=ids)
    items: list[ResultItem] = []
    for entry in record.results:
        product = products.get(int(str(entry["product_id"])))
        if product is None or not product.active:
            continue
        image = _image_of(product, int(str(entry["image_id"])))
        if image is None:
            continue
        distance = float(str(entry["distance"]))
        similarity = entry.get("similarity")  # logged since several metrics exist
        items.append(
            ResultItem(
                rank=len(items) + 1,
                product=product.as_shown_by(image, max_price),
                image=image,
                distance=distance,
                similarity=float(str(similarity))
                if similarity is not None
                else 100.0 * min(1.0, max(0.0, 1.0 - distance)),
            )
        )
    return items


def _image_of(product: ProductRecord | None, image_id: int) -> ImageRecord | None:
    if product is None:
        return None
    for image in product.images:
        if image.id == image_id:
            return image
    return product.images[0] if product.images else None
