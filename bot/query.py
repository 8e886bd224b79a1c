"""Parsing what customers and staff type: photo captions, deep-link payloads, callback data."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from search import parse_colour_synonym

MAX_CAPTION_PRICE = Decimal("99999999.99")

# An amount: "60", "59.90", "59,90", "1,000", "1 000", "1.000,50".
_AMOUNT = r"\d{1,3}(?:[,. ]\d{3})+(?:[.,]\d{1,2})?|\d{1,8}(?:[.,]\d{1,2})?"
_CURRENCY = r"(?:[€$£]|eur|euros?|usd|dollars?|gbp|pounds?)"
# "under 60", "below 60€", "< 60", "max 60", "up to 59.90", "less than $60", "60 or less".
_PRICE = re.compile(
    r"(?:(?<![\w])(?:under|below|less\s+than|cheaper\s+than|max(?:imum)?\.?|up\s+to|"
    r"at\s+most|no\s+more\s+than)|<=?|≤)"
    rf"\s*(?:{_CURRENCY}\s*)?(?P<amount>{_AMOUNT})(?!\d)"
    rf"|(?<![\w.,])(?:{_CURRENCY}\s*)?(?P<amount_after>{_AMOUNT})\s*(?:{_CURRENCY}\s*)?"
    r"(?:or\s+(?:less|under|below)|max(?:imum)?)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9]+")
_DEEP_LINK = re.compile(
    r"p_(?P<id>[1-9][0-9]{0,11})"
    r"|r_(?P<token>[A-Za-z0-9_-]{16})"
    r"|o_(?P<open_token>[A-Za-z0-9_-]{16})_(?P<rank>[1-9][0-9]?)"
)
MAX_RANK = 50  # settings.top_k is at most 50
_CALLBACK = re.compile(r"(?P<action>fb|cheaper|all):(?P<id>[1-9][0-9]{0,11})(?::(?P<arg>up|down))?")


@dataclass(frozen=True, slots=True)
class CaptionFilters:
    category: str | None = None
    max_price: Decimal | None = None
    colour: str | None = None  # one of the colour names: that colour first (not a filter)

    @property
    def any(self) -> bool:
        return self.category is not None or self.max_price is not None or self.colour is not None


def parse_amount(text: str) -> Decimal | None:
    """ "59.90", "59,90", "1,000", "1 000", "1.000,50" -> Decimal; None if it is not one."""
    text = text.strip()
    decimals = ""
    last = max(text.rfind("."), text.rfind(","))
    # A separator followed by one or two digits at the end is the decimal point.
    if last != -1 and 1 <= len(text) - last - 1 <= 2:
        decimals = text[last + 1 :]
        text = text[:last]
    digits = re.sub(r"[,. ]", "", text)
    if not digits.isdigit():
        return None
    try:
        amount = Decimal(f"{digits}.{decimals}" if decimals else digits)
    except InvalidOperation:
        return None
    if amount > MAX_CAPTION_PRICE:
        return None
    return amount


def _singular(word: str) -> str:
    """A rough English singular, for matching "boots" to "boot" and "dresses" to "dress"."""
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> tuple[str, ...]:
    return tuple(_singular(word) for word in _WORD.findall(text.lower()))


def find_category(text: str, categories: Collection[str]) -> str | None:
    """The category named in `text` ("boots", "running shoes" for running_shoes); the longest
    match wins, so "running shoes" is preferred to "shoes" when both exist."""
    words = _words(text)
    best: tuple[int, str] | None = None
    for category in categories:
        wanted = _words(category.replace("_", " ").replace("-", " "))
        if not wanted:
            continue
        size = len(wanted)
        found = any(words[i : i + size] == wanted for i in range(len(words) - size + 1))
        if found and (best is None or size > best[0]):
            best = (size, category)
    return best[1] if best else None


def parse_caption(caption: str | None, categories: Collection[str]) -> CaptionFilters:
    """A category name, a price limit and/or a colour ("red heels under 80", "in black", also
    "бордовые", "azul marino") from a photo's caption; anything else is ignored."""
    if not caption or not caption.strip():
        return CaptionFilters()
    caption = caption[:1024]
    max_price: Decimal | None = None
    match = _PRICE.search(caption)
    text = caption
    if match:
        max_price = parse_amount(match["amount"] or match["amount_after"])
        # The amount is not a word of the category ("under 60" never names category "60").
        text = caption[: match.start()] + " " + caption[match.end() :]
    return CaptionFilters(
        category=find_category(text, categories),
        max_price=max_price,
        colour=parse_colour_synonym(text),
    )


@dataclass(frozen=True, slots=True)
class DeepLink:
    kind: str  # "p": a product and its lookalikes; "r": a shared result set; "o": one result
    id: int  # the product id ("p"); 0 otherwise
    token: str | None = None  # the search's unguessable share token ("r", "o")
    rank: int | None = None  # the opened result's 1-based rank in that search ("o")


def parse_deep_link(payload: str) -> DeepLink | None:
    """`p_<product id>`, `r_<share token>` or `o_<share token>_<rank>`; anything else (too
    long, `../x`, rank 0 or over 50) is None."""
    if len(payload) > 64:
        return None
    match = _DEEP_LINK.fullmatch(payload)
    if not match:
        return None
    if match["token"] is not None:
        return DeepLink(kind="r", id=0, token=match["token"])
    if match["open_token"] is not None:
        rank = int(match["rank"])
        if rank > MAX_RANK:
            return None
        return DeepLink(kind="o", id=0, token=match["open_token"], rank=rank)
    return DeepLink(kind="p", id=int(match["id"]))


@dataclass(frozen=True, slots=True)
class CallbackAction:
    action: str  # "fb", "cheaper", "all"
    search_id: int
    arg: str | None


def parse_callback(data: object) -> CallbackAction | None:
    """Button data, checked strictly (it comes from the client and can be forged)."""
    if not isinstance(data, str) or not data or len(data) > 64:
        return None
    match = _CALLBACK.fullmatch(data)
    if not match:
        return None
    action, arg = match["action"], match["arg"]
    if (action == "fb") != (arg is not None):
        return None
    return CallbackAction(action=action, search_id=int(match["id"]), arg=arg)
