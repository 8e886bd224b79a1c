"""Every error the engine raises for a door to catch, in one module. Each message is one line,
safe to show the person who asked (a customer, a member of staff, an operator)."""

from __future__ import annotations

from db.media import MediaStoreError

__all__ = [
    "CatalogError",
    "EvaluationError",
    "FieldError",
    "InvalidImageError",
    "MediaStoreError",
    "ModelUnavailableError",
    "UrlFetchError",
]


class CatalogError(ValueError):
    """A catalogue request that cannot be done (unknown SKU, duplicate image, a search that
    is no longer available...)."""


class InvalidImageError(ValueError):
    """Input that is not a usable image: empty, damaged, not an image, too many pixels."""


class FieldError(ValueError):
    """A field a person typed (a SKU, a price, a URL...) is not acceptable."""


class UrlFetchError(Exception):
    """An image could not be fetched from its URL. `retryable`: the failure may pass (a
    timeout, a broken connection, HTTP 429 or 5xx)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ModelUnavailableError(RuntimeError):
    """The model could not be built or loaded; the message says what to do."""


class EvaluationError(ValueError):
    """Input that cannot be evaluated (bad labels, mismatched files, bad options)."""
