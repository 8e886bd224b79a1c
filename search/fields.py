"""Validation of catalogue fields typed by people (CLI flags, CSV cells, /add captions).

Every function returns the cleaned value or raises FieldError with a one-line reason that is
safe to show the person who typed it.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from db.records import ProductFields
from search.colour import NAMES, parse_colour_synonym
from search.errors import FieldError

__all__ = [
    "FieldError",
    "ProductFields",
    "clean_category",
    "clean_currency",
    "clean_name",
    "clean_price",
    "clean_product_fields",
    "clean_sku",
    "clean_url",
    "sku_from_file_name",
]

SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CATEGORY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
MAX_NAME_LENGTH = 200
MAX_URL_LENGTH = 2000
MAX_PRICE = Decimal("99999999.99")


def clean_sku(value: str) -> str:
    sku = value.strip()
    if not SKU_PATTERN.match(sku):
        raise FieldError(
            "SKU must be 1-64 characters: letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit (got {_preview(sku)})"
        )
    return sku


def sku_from_file_name(stem: str) -> str:
    """A valid SKU from a file name stem (spaces and other characters become '-')."""
    sku = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64]
    return clean_sku(sku or "product")


def clean_name(value: str) -> str:
    # Control characters (newlines included) would break captions and tables.
    name = " ".join("".join(ch for ch in value if unicodedata.category(ch)[0] != "C").split())
    if not name:
        raise FieldError("the name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise FieldError(f"the name is {len(name)} characters long; at most {MAX_NAME_LENGTH}")
    return name


def clean_price(value: str | Decimal | None) -> Decimal | None:
    """'59.90', '59,90', '€59.90', '59.90 EUR' -> Decimal('59.90'); '' or None -> None."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        text = str(value)
    else:
        text = value.strip()
        if not text:
            return None
        text = re.sub(r"^[^\d.,+-]+|[^\d.,]+$", "", text).replace(" ", "")
        if "," in text and "." not in text:
            text = text.replace(",", ".")
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise FieldError(f"the price {_preview(str(value))} is not a number like 59.90") from None
    if not price.is_finite() or price < 0:
        raise FieldError("the price must be a positive amount like 59.90")
    if price > MAX_PRICE:
        raise FieldError(f"the price is too large (at most {MAX_PRICE})")
    if price != price.quantize(Decimal("0.01")):
        raise FieldError("the price has more than two decimal places")
    return price.quantize(Decimal("0.01"))


def clean_currency(value: str) -> str:
    currency = value.strip().upper()
    if not CURRENCY_PATTERN.match(currency):
        raise FieldError(f"the currency must be a 3-letter code like EUR (got {_preview(value)})")
    return currency


def clean_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    url = value.strip()
    if len(url) > MAX_URL_LENGTH:
        raise FieldError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise FieldError(f"the URL must start with http:// or https:// (got {_preview(url)})")
    return url


def clean_category(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    category = re.sub(r"[\s]+", "_", value.strip().lower())
    if not CATEGORY_PATTERN.match(category):
        raise FieldError(
            "the category must be a short word of letters, digits, '_' or '-' "
            f"(got {_preview(value)})"
        )
    return category


def clean_colour(value: str | None) -> str | None:
    """A colour an admin types ('red', 'Navy Blue', 'бордовый') -> one of the 17 colour names;
    None, '' or 'auto' -> None (the colour computed from the photos)."""
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    name = parse_colour_synonym(value)
    if name is None:
        raise FieldError(
            f"unknown colour {_preview(value)}; use one of {', '.join(NAMES)}, or auto"
        )
    return name


def clean_product_fields(
    *,
    sku: str,
    name: str,
    price: str | Decimal | None,
    currency: str,
    url: str | None = None,
    category: str | None = None,
) -> ProductFields:
    return ProductFields(
        sku=clean_sku(sku),
        name=clean_name(name),
        price=clean_price(price),
        currency=clean_currency(currency),
        url=clean_url(url),
        category=clean_category(category),
    )


def _preview(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(shown)
