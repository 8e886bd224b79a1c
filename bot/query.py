"""Parsing what customers and staff type: photo captions, deep-link payloads, callback data."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# "under 60", "below 60€", "< 60", "max 60", "up to 59.90".
_PRICE = re.compile(
    r"(?:under|below|less than|cheaper than|max(?:imum)?|up to|<=?|≤)"
    r"\s*[€$£]?\s*(\d{1,8}(?:[.,]\d{1,2})?)",
    re.IGNORECASE,
)
_DEEP_LINK = re.compile(r"^(?P<kind>[pr])_(?P<id>[1-9][0-9]{0,11})$")
_CALLBACK = re.compile(
    r"^(?P<action>fb|cheaper|all):(?P<id>[1-9][0-9]{0,11})(?::(?P<arg>up|down))?$"
)


@dataclass(frozen=True, slots=True)
class CaptionFilters:
    category: str | None = None
    max_price: Decimal | None = None


def parse_caption(caption: str | None, categories: Collection[str]) -> CaptionFilters:
    """A category name and/or a price limit from a photo's caption; anything else is ignored."""
    if not caption:
        return CaptionFilters()
    text = caption.lower()
    max_price: Decimal | None = None
    match = _PRICE.search(text)
    if match:
        try:
            max_price = Decimal(match.group(1).replace(",", "."))
        except InvalidOperation:
            max_price = None
    category = None
    words = re.findall(r"[a-z0-9_-]+", text.replace(" ", "_")) + re.findall(r"[a-z0-9_-]+", text)
    by_plural = {c: c for c in categories} | {f"{c}s": c for c in categories}
    by_plural |= {c.replace("_", " "): c for c in categories}
    for word in words:
        if word in by_plural:
            category = by_plural[word]
            break
    else:
        for name, canonical in by_plural.items():
            if " " in name and name in text:
                category = canonical
                break
    return CaptionFilters(category=category, max_price=max_price)


@dataclass(frozen=True, slots=True)
class DeepLink:
    kind: str  # "p": a product and its lookalikes; "r": a shared result set
    id: int


def parse_deep_link(payload: str) -> DeepLink | None:
    """`p_<product id>` or `r_<search id>`; anything else (too long, `../x`) is None."""
    if len(payload) > 64:
        return None
    match = _DEEP_LINK.match(payload)
    if not match:
        return None
    return DeepLink(kind=match["kind"], id=int(match["id"]))


@dataclass(frozen=True, slots=True)
class CallbackAction:
    action: str  # "fb", "cheaper", "all"
    search_id: int
    arg: str | None


def parse_callback(data: str | None) -> CallbackAction | None:
    if not data or len(data) > 64:
        return None
    match = _CALLBACK.match(data)
    if not match:
        return None
    action, arg = match["action"], match["arg"]
    if (action == "fb") != (arg is not None):
        return None
    return CallbackAction(action=action, search_id=int(match["id"]), arg=arg)
