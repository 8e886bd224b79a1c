"""One product of a shop's feed (FeedItem) and the rules that turn a raw feed row into it.

A raw row is what the format readers yield: attribute name -> its values (several for
`additional_image_link`). `parse_item` validates it with search.fields and raises FieldError
with a one-line reason when a required attribute is missing or unusable.

Rules (Google Merchant Center product data specification):
- id: any Unicode up to 50 characters (Google's limit), kept as the shop wrote it; it is the
  product's key (shown as its SKU), never checked as a hand-typed SKU. item_group_id alike. A
  variant's own id (a row with item_group_id) is never stored, so it refuses nothing.
- price and sale_price are "59.90 EUR". The sale price is what the customer pays while the
  sale runs: always when `sale_price_effective_date` is absent, else from its start (inclusive)
  to its end (exclusive), "2026-11-01T00:00+01:00/2026-12-01T00:00+01:00". As Google reads
  them: a moment without a time zone is in the shop's zone (FEED_TIME_ZONE); a date without a
  time starts at 00:00 and, as the end, lasts until 23:59:59 (so the exclusive end is the next
  day's 00:00).
- availability: in_stock, preorder and backorder count as in stock (the customer can order
  the product now; it ships later), out_of_stock does not. Older spellings with a space
  ("in stock") are accepted. Any other value is a skipped row: guessing would hide or show
  products wrongly.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from search import FieldError, clean_currency, clean_name, clean_price, clean_url

RawRow = dict[str, list[str]]

IN_STOCK_VALUES = frozenset({"in_stock", "preorder", "backorder"})
OUT_OF_STOCK_VALUES = frozenset({"out_of_stock"})
REQUIRED = ("id", "title", "image_link", "price")
MAX_ID_LENGTH = 50  # Google's limit for id and item_group_id


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One row of the feed, validated. `image_links` holds image_link first, then the
    additional ones, without repeats."""

    sku: str
    title: str
    link: str | None
    image_links: tuple[str, ...]
    price: Decimal
    currency: str
    sale_price: Decimal | None
    sale_start: datetime | None  # aware; None: the sale has no start
    sale_end: datetime | None  # aware, exclusive; None: no end
    in_stock: bool
    group_id: str | None  # item_group_id: the key of the product it is a variant of
    product_type: str | None
    google_category: str | None
    color: str | None

    def price_at(self, now: datetime) -> Decimal:
        """What the customer pays at `now` (aware): the sale price while the sale runs."""
        if self.sale_price is None:
            return self.price
        if self.sale_start is not None and now < self.sale_start:
            return self.price
        if self.sale_end is not None and now >= self.sale_end:
            return self.price
        return self.sale_price


def first(row: RawRow, name: str) -> str:
    """The attribute's first non-empty value, stripped; "" when absent."""
    for value in row.get(name, ()):
        if value.strip():
            return value.strip()
    return ""


def clean_feed_id(value: str, *, attribute: str = "id") -> str:
    """A shop's id as it wrote it (spaces, '/', any script), stripped: 1-50 characters, no
    control characters (they would break logs and messages)."""
    text = value.strip()
    if not text:
        raise FieldError(f"{attribute} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise FieldError(f"{attribute} {text[:20]!r}... is {len(text)} characters; at most 50")
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise FieldError(f"{attribute} {text[:40]!r} holds a control character")
    return text


def split_money(text: str) -> tuple[str, str | None]:
    """'59.90 EUR' -> ('59.90', 'EUR'); 'EUR 59.90' -> ('59.90', 'EUR'); '59.90' -> ('59.90',
    None)."""
    parts = text.split()
    if len(parts) >= 2 and parts[-1].isalpha():
        return " ".join(parts[:-1]), parts[-1]
    if len(parts) >= 2 and parts[0].isalpha():
        return " ".join(parts[1:]), parts[0]
    return text, None


def parse_money(text: str, *, default_currency: str) -> tuple[Decimal, str]:
    """'59.90 EUR' -> (Decimal('59.90'), 'EUR'); a price without a currency gets the default."""
    text, given = split_money(text)
    currency = given or default_currency
    price = clean_price(text)
    if price is None:
        raise FieldError("the price is empty")
    return price, clean_currency(currency)


def parse_availability(text: str) -> bool:
    value = "_".join(text.strip().lower().split())
    if value in IN_STOCK_VALUES:
        return True
    if value in OUT_OF_STOCK_VALUES or not value:
        return not value  # an absent availability means in stock, as in Google's feeds
    raise FieldError(
        f"availability {text[:40]!r} is not one of in_stock, out_of_stock, preorder, backorder"
    )


def parse_effective_dates(
    text: str, *, zone: tzinfo = UTC
) -> tuple[datetime | None, datetime | None]:
    """'2026-11-01T00:00+01:00/2026-12-01T00:00+01:00' -> (start, end exclusive), both aware;
    '2026-11-25/2026-12-31' -> (Nov 25 00:00, Jan 1 00:00) in `zone`."""
    if "/" not in text:
        raise FieldError(f"sale_price_effective_date {text[:60]!r} is not START/END")
    start_text, end_text = (part.strip() for part in text.split("/", 1))
    return _moment(start_text, zone, end=False), _moment(end_text, zone, end=True)


def _moment(text: str, zone: tzinfo, *, end: bool) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"the date {text[:40]!r} is not an ISO 8601 date and time") from None
    if "T" not in text and " " not in text and end:
        moment += timedelta(days=1)  # a date alone ends at 23:59:59 that day
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def _image_links(row: RawRow) -> tuple[str, ...]:
    """image_link (must be valid), then the valid additional links; a broken additional
    link is dropped rather than losing the whole product."""
    main = clean_url(first(row, "image_link"))
    links: list[str] = [main] if main else []
    for value in row.get("additional_image_link", ()):
        # One link per value: the text formats' comma-separated cells are split by their
        # reader (feed.formats); an XML value is one URL, commas and all.
        try:
            url = clean_url(value.strip())
        except FieldError:
            continue
        if url is not None and url not in links:
            links.append(url)
    return tuple(links)


def parse_item(row: RawRow, *, default_currency: str, zone: tzinfo = UTC) -> FeedItem:
    """The validated item, or FieldError naming what is missing or wrong. `zone`: the shop's
    time zone, for sale dates written without one."""
    missing = [name for name in REQUIRED if not first(row, name)]
    if missing:
        raise FieldError(f"lacks the required attribute(s) {', '.join(missing)}")
    group = first(row, "item_group_id")
    group_id = clean_feed_id(group, attribute="item_group_id") if group else None
    # A variant's id is only told apart from its siblings' (never stored): any text will do.
    sku = first(row, "id") if group_id else clean_feed_id(first(row, "id"))
    price, currency = parse_money(first(row, "price"), default_currency=default_currency)
    sale_price: Decimal | None = None
    sale_start = sale_end = None
    if first(row, "sale_price"):
        sale_price, sale_currency = parse_money(first(row, "sale_price"), default_currency=currency)
        if sale_currency != currency:
            raise FieldError(f"sale_price is in {sale_currency} but price in {currency}")
        if first(row, "sale_price_effective_date"):
            sale_start, sale_end = parse_effective_dates(
                first(row, "sale_price_effective_date"), zone=zone
            )
    return FeedItem(
        sku=sku,
        title=clean_name(first(row, "title")),
        link=clean_url(first(row, "link") or None),
        image_links=_image_links(row),
        price=price,
        currency=currency,
        sale_price=sale_price,
        sale_start=sale_start,
        sale_end=sale_end,
        in_stock=parse_availability(first(row, "availability")),
        group_id=group_id,
        product_type=first(row, "product_type") or None,
        google_category=first(row, "google_product_category") or None,
        color=first(row, "color") or None,
    )
