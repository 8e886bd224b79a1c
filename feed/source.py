"""Getting the feed: a local file, or an http(s) URL downloaded (size-limited, one deadline
for the whole download) to a temporary file, then read row by row into catalogue products
(blocking: run it through engine.run).

The download goes through the engine's SSRF-safe fetcher (search.fetch_to_file), as the
photos do: every address of every redirect hop is checked, so a redirect cannot lead to a
private or local address unless URL_FETCH_ALLOW_PRIVATE allows those (a feed served inside
the shop's own network needs it).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from urllib.parse import urlsplit

from feed.categories import CategoryMap
from feed.formats import FeedFormatError, RawRecord, read_records
from feed.grouping import FeedProduct, group_items
from feed.items import FeedItem, first, parse_item, split_money
from search import FieldError, UrlFetchError, fetch_to_file

USER_AGENT = "LookalikeFeedSync/1.0"


class FeedSourceError(ValueError):
    """The feed could not be fetched or opened; str() is one line."""


@dataclass
class FeedContents:
    rows: int = 0
    products: dict[str, FeedProduct] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)
    problems: list[tuple[str, str]] = field(default_factory=list)  # rows used, e.g. a colour


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def describe_source(source: str) -> str:
    """The source without query string or credentials (they may carry a token)."""
    if is_url(source):
        parts = urlsplit(source)
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"[:300]
    return Path(source).name[:300]


def download_feed(
    url: str, destination: Path, *, max_bytes: int, timeout: float, allow_private: bool
) -> None:
    """Blocking (its own event loop: read_feed runs in a worker thread)."""
    try:
        asyncio.run(
            fetch_to_file(
                url,
                destination,
                max_bytes=max_bytes,
                timeout=timeout,
                allow_private=allow_private,
                user_agent=USER_AGENT,
            )
        )
    except UrlFetchError as exc:
        raise FeedSourceError(f"cannot download the feed: {str(exc).rstrip('.')}") from None


def read_feed(
    source: str,
    *,
    categories: CategoryMap,
    default_currency: str,
    now: datetime,
    max_images: int,
    max_bytes: int,
    timeout: float = 120.0,
    zone: tzinfo = UTC,
    allow_private: bool = False,
) -> FeedContents:
    """Every usable product of the feed; unusable rows in `skipped` with their reason.
    Raises FeedSourceError or feed.formats.FeedFormatError (nothing may be changed then)."""
    if not is_url(source):
        path = Path(source)
        if not path.is_file():
            raise FeedSourceError(f"there is no feed file {source[:200]}")
        if path.stat().st_size > max_bytes:
            raise FeedSourceError(f"the feed is larger than {max_bytes} bytes")
        return _read(path, categories, default_currency, now, max_images, zone)
    handle, name = tempfile.mkstemp(prefix="lookalike-feed-", suffix=".feed")
    os.close(handle)
    try:
        download_feed(
            source, Path(name), max_bytes=max_bytes, timeout=timeout, allow_private=allow_private
        )
        return _read(Path(name), categories, default_currency, now, max_images, zone)
    finally:
        Path(name).unlink(missing_ok=True)


def _read(
    path: Path,
    categories: CategoryMap,
    default_currency: str,
    now: datetime,
    max_images: int,
    zone: tzinfo,
) -> FeedContents:
    contents = FeedContents()
    currencies = _CurrencyCheck()

    def items() -> Iterator[tuple[str, FeedItem]]:
        for record in read_records(path):
            contents.rows += 1
            currencies.see(record)
            label = _label(record)
            try:
                item = parse_item(record.row, default_currency=default_currency, zone=zone)
            except FieldError as exc:
                contents.skipped.append((label, str(exc)))
                continue
            yield label, item

    grouped = group_items(items(), categories=categories, now=now, max_images=max_images)
    currencies.check()
    contents.products = grouped.products
    contents.skipped.extend(grouped.skipped)
    contents.problems.extend(grouped.problems)
    return contents


def _label(record: RawRecord) -> str:
    """'line 14 (id 'A2300 Red US')': the row, and the shop's id that finds it in its file."""
    shop_id = first(record.row, "id")
    return f"{record.label} (id {shop_id[:60]!r})" if shop_id else record.label


@dataclass
class _CurrencyCheck:
    """A feed that writes the currency with its prices but lacks it in one row was cut or
    mangled there ("45.00 INR" cut to "4"): the shop's default currency would be a guess, so
    the whole file is refused."""

    with_currency: int = 0
    without: str | None = None  # the first row whose price lacks it

    def see(self, record: RawRecord) -> None:
        for name in ("price", "sale_price"):
            text = first(record.row, name)
            if not text:
                continue
            if split_money(text)[1] is None:
                self.without = self.without or f"{record.label}: {name} {text[:30]!r}"
            else:
                self.with_currency += 1

    def check(self) -> None:
        if self.with_currency and self.without is not None:
            raise FeedFormatError(
                f"{self.without} has no currency while the feed's other prices give one: the "
                "file looks cut or mangled"
            )
