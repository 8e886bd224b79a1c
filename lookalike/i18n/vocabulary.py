"""Each language's words for the shop's categories and for a caption's price limit, read from
`locale/<lang>/vocabulary.toml` beside that language's catalogue: the bot parses captions with
them, the bot and the page name categories with them.

Categories are the shop's own codes (`rain_boot`); a language names the ones it knows and
lists the word stems that mean them in a caption ("сапог" matches "сапоги", "сапогах"); a
category no vocabulary knows is shown as its code with spaces.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from lookalike.i18n import LANGUAGES, LOCALE_DIR


@dataclass(frozen=True, slots=True)
class Vocabulary:
    language: str
    # category code -> how this language names it ("rain_boot" -> "резиновые сапоги")
    category_names: Mapping[str, str] = field(default_factory=dict)
    # category code -> lowercase word stems that name it in a caption
    category_stems: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # phrases before an amount that make it a price limit ("до", "menos de")
    price_before: tuple[str, ...] = ()
    # phrases after an amount that make it a price limit ("60 или дешевле")
    price_after: tuple[str, ...] = ()
    # currency words and signs besides € $ £ ("евро", "تومان")
    currencies: tuple[str, ...] = ()

    def category_name(self, category: str) -> str:
        return self.category_names.get(category) or category.replace("_", " ")


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(v.lower() for v in value)


@cache
def vocabulary(language: str) -> Vocabulary:
    """The vocabulary of a supported language (English's is in the code: category codes are
    English words); an empty one for a language without a file."""
    path = LOCALE_DIR / language / "vocabulary.toml"
    if language not in LANGUAGES or not path.is_file():
        return Vocabulary(language)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    categories = data.get("categories", {})
    return Vocabulary(
        language=language,
        category_names={code: str(entry["name"]) for code, entry in categories.items()},
        category_stems={
            code: _strings(entry.get("words", [])) for code, entry in categories.items()
        },
        price_before=_strings(data.get("price_before", [])),
        price_after=_strings(data.get("price_after", [])),
        currencies=_strings(data.get("currencies", [])),
    )


def all_vocabularies() -> tuple[Vocabulary, ...]:
    return tuple(vocabulary(language) for language in LANGUAGES)
