"""SearchEngine records -> the API's JSON models (web.schemas), with absolute URLs for images and
shared result sets built from the public base URL (or the request's own)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from starlette.requests import Request

from web.schemas import ImageOut, ProductOut, ResultOut, SearchOut, TimingOut

if TYPE_CHECKING:
    from search import ImageRecord, ProductRecord, SearchResult

THUMBNAIL_WIDTH = 320  # what result cards show


@dataclass(frozen=True, slots=True)
class Urls:
    base: str  # no trailing slash

    @classmethod
    def for_request(cls, request: Request, public_url: str | None) -> Urls:
        return cls(public_url or str(request.base_url).rstrip("/"))

    def image(self, file_name: str) -> str:
        return f"{self.base}/media/{file_name}"

    def thumbnail(self, file_name: str, width: int = THUMBNAIL_WIDTH) -> str:
        return f"{self.base}/media/{file_name}?w={width}"

    def shared(self, share_token: str) -> str:
        return f"{self.base}/?s={share_token}"


def image_out(image: ImageRecord, urls: Urls) -> ImageOut:
    return ImageOut(
        file_name=image.file_name,
        url=urls.image(image.file_name),
        thumbnail_url=urls.thumbnail(image.file_name),
        width=image.width,
        height=image.height,
    )


def product_out(product: ProductRecord, urls: Urls) -> ProductOut:
    return ProductOut(
        sku=product.sku,
        name=product.name,
        price=product.price,
        currency=product.currency,
        url=product.url,
        category=product.category,
        colour=product.colour,
        in_stock=product.in_stock,
        removed=product.removed,
        images=[image_out(image, urls) for image in product.images],
    )


def search_out(
    result: SearchResult,
    urls: Urls,
    *,
    requested_category: str | None = None,
    total_ms: float | None = None,
) -> SearchOut:
    """`requested_category`: what the client asked for; a category the results were
    restricted to without being asked for was inferred."""
    filters = dict(result.filters or {})
    category = result.inferred_category or filters.get("category") or requested_category
    max_price = filters.get("max_price")
    return SearchOut(
        search_id=result.search_id,
        share_token=result.share_token,
        share_url=urls.shared(result.share_token) if result.share_token else None,
        category=str(category) if category else None,
        category_inferred=result.inferred_category is not None and not requested_category,
        max_price=Decimal(str(max_price)) if max_price is not None else None,
        metric=result.metric,
        model=result.model_name,
        results=[
            ResultOut(
                rank=item.rank,
                similarity=round(float(item.similarity), 2),
                sku=item.product.sku,
                name=item.product.name,
                price=item.product.price,
                currency=item.product.currency,
                url=item.product.url,
                category=item.product.category,
                colour=item.product.colour,
                in_stock=item.product.in_stock,
                image_url=urls.image(item.image.file_name),
                thumbnail_url=urls.thumbnail(item.image.file_name),
            )
            for item in result.items
        ],
        timing=(
            TimingOut(engine_ms=round(result.latency_ms, 1), total_ms=round(total_ms, 1))
            if total_ms is not None
            else None
        ),
    )
