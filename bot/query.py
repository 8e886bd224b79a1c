"""Parsing what customers and staff type: photo captions, deep-link payloads, callback data."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from lookalike.i18n.vocabulary import all_vocabularies
from search import parse_colour_synonym

MAX_CAPTION_PRICE = Decimal("99999999.99")


def _phrases(phrases: Iterable[str]) -> str:
    """Alternatives of a regex, longest first, each phrase's words separated by any space."""
    unique = sorted(set(phrases), key=len, reverse=True)
    return "|".join(r"\s+".join(re.escape(word) for word in p.split()) for p in unique)


_VOCABULARIES = all_vocabularies()
# An amount: "60", "59.90", "59,90", "1,000", "1 000", "1.000,50".
_AMOUNT = r"\d{1,3}(?:[,. ]\d{3})+(?:[.,]\d{1,2})?|\d{1,8}(?:[.,]\d{1,2})?"
_CURRENCY = (
    r"(?:[€$£₽]|(?<!\w)(?:eur|euros?|usd|dollars?|gbp|pounds?|"
    + _phrases(word for v in _VOCABULARIES for word in v.currencies)
    + r")(?!\w))"
)
# "under 60", "below 60€", "< 60", "max 60", "up to 59.90", "less than $60", "60 or less", and
# each language's own ("до 60", "menos de 60", "زیر 60", "60 o menos"): lookalike/i18n/locale.
_BEFORE = _phrases(
    [
        "under", "below", "less than", "cheaper than", "max", "max.", "maximum", "up to",
        "at most", "no more than",
    ]
    + [phrase for v in _VOCABULARIES for phrase in v.price_before]
)  # fmt: skip
_AFTER = _phrases(
    ["or less", "or under", "or below", "max", "maximum"]
    + [phrase for v in _VOCABULARIES for phrase in v.price_after]
)
_PRICE = re.compile(
    rf"(?:(?<!\w)(?:{_BEFORE})(?![^\W\d])|<=?|≤)"
    rf"\s*(?:{_CURRENCY}\s*)?(?P<amount>{_AMOUNT})(?!\d)"
    rf"|(?<![\w.,])(?:{_CURRENCY}\s*)?(?P<amount_after>{_AMOUNT})\s*(?:{_CURRENCY}\s*)?"
    rf"(?:{_AFTER})(?!\w)",
    re.IGNORECASE,
)
# Persian and Arabic-Indic digits and separators, Arabic yeh and kaf: read as the ASCII digits
# and Persian letters the vocabularies use; a zero-width non-joiner is dropped, so a suffix stays
# on its word ("چکمه‌های" is one word, starting with the stem "چکمه").
_NORMALISE = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩٫٬يك", "01234567890123456789.,یک", "\u200c")
_WORD = re.compile(r"[a-z0-9]+")
_UNICODE_WORD = re.compile(r"\w+")
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


def _contains(words: tuple[str, ...], wanted: tuple[str, ...], *, stems: bool) -> bool:
    """Whether `wanted` occurs as consecutive `words` (each word starting with its stem when
    `stems`; else equal)."""
    size, first = len(wanted), wanted[0]
    for i in range(len(words) - size + 1):
        if not (words[i].startswith(first) if stems else words[i] == first):
            continue  # the usual case, decided without building the window
        pairs = zip(words[i + 1 : i + size], wanted[1:], strict=True)
        if all(word.startswith(w) if stems else word == w for word, w in pairs):
            return True
    return False


# category code -> every language's stem phrases for it, split into words
_STEMS: dict[str, tuple[tuple[str, ...], ...]] = {}
for _vocabulary in _VOCABULARIES:
    for _code, _phrases_of in _vocabulary.category_stems.items():
        _STEMS[_code] = _STEMS.get(_code, ()) + tuple(tuple(p.split()) for p in _phrases_of)


def find_category(text: str, categories: Collection[str]) -> str | None:
    """The category named in `text` ("boots", "running shoes" for running_shoes; in another
    language by its vocabulary's stems: "сапоги", "botas de lluvia"); the longest match wins,
    so "running shoes" is preferred to "shoes" when both exist."""
    words = _words(text)
    native = tuple(_UNICODE_WORD.findall(text.lower()))
    best: tuple[int, str] | None = None
    for category in categories:
        wanted = _words(category.replace("_", " ").replace("-", " "))
        candidates = [wanted] if wanted and _contains(words, wanted, stems=False) else []
        candidates += [s for s in _STEMS.get(category, ()) if _contains(native, s, stems=True)]
        for found in candidates:
            if best is None or len(found) > best[0]:
                best = (len(found), category)
    return best[1] if best else None


def parse_caption(caption: str | None, categories: Collection[str]) -> CaptionFilters:
    """A category name, a price limit and/or a colour ("red heels under 80", "in black", also
    "бордовые", "azul marino") from a photo's caption; anything else is ignored."""
    if not caption or not caption.strip():
        return CaptionFilters()
    caption = caption[:1024].translate(_NORMALISE)
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
