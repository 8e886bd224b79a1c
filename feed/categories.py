"""The shop's mapping from feed categories (product_type, google_product_category) to its
own categories: a small TOML file of ordered [[rule]] pattern -> category entries the shop
can edit (feed/default_categories.toml is the default and documents the format)."""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from search import FieldError, clean_category

DEFAULT_MAP_NAME = "default_categories.toml"


class CategoryMapError(ValueError):
    """The mapping file cannot be used; str() is one line."""


@dataclass(frozen=True, slots=True)
class CategoryRule:
    pattern: str  # lower case shell-style pattern
    category: str


@dataclass(frozen=True, slots=True)
class CategoryMap:
    rules: tuple[CategoryRule, ...]

    def category_for(self, product_type: str | None, google_category: str | None) -> str | None:
        """The first rule matching product_type, else the first matching the Google
        category; None when nothing matches."""
        for text in (product_type, google_category):
            if not text:
                continue
            value = " ".join(text.lower().split())
            for rule in self.rules:
                if fnmatch.fnmatchcase(value, rule.pattern):
                    return rule.category
        return None


def parse_category_map(text: str, *, source: str) -> CategoryMap:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CategoryMapError(f"{source} is not valid TOML: {exc}") from None
    entries = document.get("rule", [])
    if not isinstance(entries, list):
        raise CategoryMapError(f"{source}: 'rule' must be a list of [[rule]] tables")
    rules: list[CategoryRule] = []
    for number, entry in enumerate(entries, start=1):
        pattern = entry.get("pattern") if isinstance(entry, dict) else None
        category = entry.get("category") if isinstance(entry, dict) else None
        if not isinstance(pattern, str) or not pattern.strip() or not isinstance(category, str):
            raise CategoryMapError(f"{source}: rule {number} needs a pattern and a category")
        try:
            cleaned = clean_category(category)
        except FieldError as exc:
            raise CategoryMapError(f"{source}: rule {number}: {exc}") from None
        if cleaned is None:
            raise CategoryMapError(f"{source}: rule {number} has an empty category")
        rules.append(CategoryRule(pattern=" ".join(pattern.lower().split()), category=cleaned))
    return CategoryMap(rules=tuple(rules))


def load_category_map(path: Path | None) -> CategoryMap:
    """The map in `path`, or the packaged default when `path` is None."""
    if path is None:
        text = resources.files("feed").joinpath(DEFAULT_MAP_NAME).read_text(encoding="utf-8")
        return parse_category_map(text, source=DEFAULT_MAP_NAME)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CategoryMapError(f"cannot read the category map {path}: {exc}") from None
    return parse_category_map(text, source=path.name)
