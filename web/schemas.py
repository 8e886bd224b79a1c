"""The API's JSON shapes (pydantic models): what the OpenAPI schema documents and what the
handlers return. Prices are decimal strings ("49.90"), never floats: they are money."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, WithJsonSchema

Metric = Literal["cosine", "euclidean", "inner_product"]
# A price as the API takes it: a decimal string above zero, at most 10 digits and 2 decimals
# ("80", "49.90", ".5"), documented so that every string the schema allows is accepted.
PRICE_PATTERN = r"^([1-9][0-9]{0,9}(\.[0-9]{1,2})?|0?\.(0[1-9]|[1-9][0-9]?))$"
_PRICE_SCHEMA = WithJsonSchema({"type": "string", "pattern": PRICE_PATTERN, "example": "49.90"})
Price = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2), _PRICE_SCHEMA]


class ImageOut(BaseModel):
    file_name: str
    url: str = Field(description="the full-size image, cached for a year (content-addressed)")
    thumbnail_url: str = Field(description="a 320 pixel wide JPEG of the same image")
    width: int
    height: int


class ProductOut(BaseModel):
    sku: str
    name: str
    price: Decimal | None = Field(description="decimal string; null: not priced yet")
    currency: str
    url: str | None = Field(description="the product's page in the shop")
    category: str | None
    colour: str | None = Field(
        default=None,
        description="the product's main colour, one of 17 names (black, white, grey, beige, brown, "
        "tan, red, pink, orange, yellow, green, blue, navy, purple, gold, silver, multicolour), "
        "computed from its photo; null: not computed yet",
    )
    in_stock: bool
    removed: bool = Field(description="hidden from searches (restorable)")
    images: list[ImageOut]


class ResultOut(BaseModel):
    rank: int = Field(description="1-based position in the ranking")
    similarity: float = Field(
        description="similarity in percent (0-100), what the results are ordered by: "
        "(1 - w) x shape similarity (cosine of the VGG16 vectors) + w x colour similarity "
        "(the colour names' shares of the two products), w = COLOUR_WEIGHT; w = 0: shape alone"
    )
    sku: str
    name: str
    price: Decimal | None
    currency: str
    url: str | None
    category: str | None
    colour: str | None = Field(
        default=None,
        description="the product's main colour, one of 17 names (black, white, grey, beige, brown, "
        "tan, red, pink, orange, yellow, green, blue, navy, purple, gold, silver, multicolour), "
        "computed from its photo; null: not computed yet",
    )
    in_stock: bool
    image_url: str
    thumbnail_url: str


class TimingOut(BaseModel):
    engine_ms: float = Field(description="time the engine took (featurise + rank + log)")
    total_ms: float = Field(description="time from the request's arrival to the answer")


class SearchOut(BaseModel):
    search_id: int | None
    share_token: str | None
    share_url: str | None = Field(description="the page showing this result set")
    category: str | None = Field(description="the category the results were restricted to")
    category_inferred: bool = Field(
        description="true: nobody asked for that category, the nearest products agreed on it"
    )
    max_price: Decimal | None
    metric: str
    model: str
    results: list[ResultOut]
    timing: TimingOut | None = None


class SearchParams(BaseModel):
    """How to search: the multipart form's fields, and the JSON body's besides image_url."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(default=None, ge=1, le=50)
    category: str | None = Field(default=None, max_length=64)
    max_price: Price | None = None
    metric: Metric | None = None
    cheaper_than: str | None = Field(default=None, max_length=64, description="a SKU")
    colour: str | None = Field(
        default=None,
        max_length=40,
        description="a colour name or synonym ('red', 'navy blue'): products of that colour "
        "first, the others after (a reordering, not a filter)",
    )
    all_categories: bool = Field(
        default=False, description="true: never restrict to a guessed category"
    )


class SearchByUrlIn(SearchParams):
    image_url: HttpUrl = Field(description="http or https; fetched with SSRF checks")


class SimilarOut(BaseModel):
    product: ProductOut
    search: SearchOut


class CategoriesOut(BaseModel):
    categories: list[str]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vote: Literal[1, -1] = Field(description="1: helpful, -1: not helpful")


class FeedbackOut(BaseModel):
    search_id: int
    vote: int
    recorded: bool


class ProductUpdateIn(BaseModel):
    """Only the fields given change. `name` and `currency` cannot be null (a product always
    has them); `price`, `url` and `category` given as null are cleared."""

    model_config = ConfigDict(extra="forbid")

    # Not nullable: the default (left out) is never validated, an explicit null is a 422.
    name: str = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]
    price: Price | None = Field(default=None, description="null: not priced")
    currency: str = Field(default=None, pattern=r"^[A-Za-z]{3}$")  # type: ignore[assignment]
    url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https?://[^\s/]+[^\s]*$",
        description="null: cleared",
    )
    category: str | None = Field(default=None, max_length=64, description="null: cleared")
    colour: str | None = Field(
        default=None,
        max_length=40,
        description="a colour name or synonym ('red', 'Navy Blue'); wins over the colour "
        "computed from the photos; null or 'auto': back to the computed one",
    )


class StockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    in_stock: bool


class WriteOut(BaseModel):
    product: ProductOut
    changed: bool = True
    warnings: list[str] = Field(default_factory=list)


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
