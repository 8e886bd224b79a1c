"""The languages customers read: gettext catalogues (Babel), the choice of a language, and
numbers, prices and percentages written the way each language writes them.

Catalogues live beside this module: `locale/<lang>/LC_MESSAGES/messages.po` (written by hand,
in the repository) and the compiled `messages.mo` next to it (shipped too, so a fresh clone and
a wheel need no build step; `tests/test_i18n.py` fails when a .mo is not the compiled .po, and
`make translations` extracts, updates and compiles them). English is the source language: a
message missing from a catalogue falls back to its English text, never to a key.

Text is marked where it is written with `N_` (module constants, translated when sent) or
`_`/`ngettext` through a `Translator`; placeholders are `{name}` (str.format), filled after
translation.
"""

from __future__ import annotations

import gettext
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

from babel import Locale
from babel.numbers import format_currency, format_decimal, format_percent

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"
# Every language with a complete catalogue, English first; `fa` is written right to left.
LANGUAGES: tuple[str, ...] = ("en", "ru", "es", "fa")
RIGHT_TO_LEFT = frozenset({"fa"})

# Babel writes CLDR's separators but always ASCII digits: Persian readers expect Persian
# digits (CLDR's default numbering system for fa is "arabext").
_DIGITS = {"fa": str.maketrans("0123456789%", "۰۱۲۳۴۵۶۷۸۹٪")}
_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def N_(message: str) -> str:  # noqa: N802 (the gettext convention Babel extracts)
    """Marks a constant for extraction; it is translated where it is sent (`t(CONSTANT)`)."""
    return message


def supported(tag: str | None) -> str | None:
    """The supported language for a language tag ("ru", "ru-RU", "pt_BR", "ES"), or None."""
    if not tag or not _TAG.fullmatch(tag.strip()):
        return None
    primary = re.split(r"[-_]", tag.strip())[0].lower()
    return primary if primary in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The best supported language of an HTTP Accept-Language header ("fa-IR,fa;q=0.9,en;q=0.5"),
    by its q-values, the first listed winning a tie; None when it names none we have."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header[:1000].split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        match = re.fullmatch(r"\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*", params) if params else None
        if params and match is None:
            continue  # a malformed weight: that entry is ignored, not the header
        if match is not None:
            quality = float(match[1])
        language = supported(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else None


@cache
def _catalogue(language: str) -> gettext.NullTranslations:
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    # fallback=True: no compiled catalogue means English, not an error.
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


@dataclass(frozen=True, slots=True)
class Translator:
    """One language's messages and number formats. `t("text")` translates, `t.n(...)` picks a
    plural form; prices, numbers and percentages are written with Babel's CLDR data."""

    language: str

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.language)

    @property
    def right_to_left(self) -> bool:
        return self.language in RIGHT_TO_LEFT

    def __call__(self, message: str, **values: object) -> str:
        text = _catalogue(self.language).gettext(message)
        return text.format(**values) if values else text

    def n(self, singular: str, plural: str, count: int, **values: object) -> str:
        """The plural form for `count` (Russian has three): `{count}` is filled in too, written
        the language's way."""
        text = _catalogue(self.language).ngettext(singular, plural, count)
        return text.format(count=self.number(count), **values)

    def _digits(self, text: str) -> str:
        table = _DIGITS.get(self.language)
        return text.translate(table) if table else text

    def number(self, value: int | float | Decimal, *, decimals: int | None = None) -> str:
        """ "1,234.5" / "1 234,5" / "۱٬۲۳۴٫۵"; `decimals` fixes the digits after the point."""
        pattern = None if decimals is None else "#,##0." + "0" * decimals if decimals else "#,##0"
        return self._digits(
            format_decimal(value, format=pattern, locale=self.language, numbering_system="default")
        )

    def price(self, amount: Decimal, currency: str) -> str:
        """ "€78.99" in English, "78,99 €" in Russian and Spanish; a currency code Babel does not
        know is written as given."""
        return self._digits(
            format_currency(amount, currency, locale=self.language, numbering_system="default")
        )

    def percent(self, value: float) -> str:
        """A similarity of 87.4 (percent) as "87%", "87 %", "۸۷٪"."""
        return self._digits(
            format_percent(round(value) / 100, locale=self.language, numbering_system="default")
        )


def translator(language: str | None) -> Translator:
    """The Translator for a supported language; English for anything else."""
    return Translator(supported(language) or SOURCE_LANGUAGE)


ENGLISH = Translator(SOURCE_LANGUAGE)

__all__ = [
    "ENGLISH",
    "LANGUAGES",
    "LOCALE_DIR",
    "N_",
    "RIGHT_TO_LEFT",
    "SOURCE_LANGUAGE",
    "Translator",
    "from_accept_language",
    "supported",
    "translator",
]
