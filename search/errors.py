"""The engine's errors. Each message is one line, safe to show the person who asked."""

from __future__ import annotations

from search.preprocess import InvalidImageError

__all__ = ["CatalogError", "InvalidImageError"]


class CatalogError(ValueError):
    """A catalogue request that cannot be done (unknown SKU, duplicate image, a search that
    is no longer available...)."""
