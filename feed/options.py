"""What one sync is asked to do: `SyncOptions`, and `sync_options`, which reads them from the
settings (FEED_*, the image limits, the shop's currency) for every door that starts a sync."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta, tzinfo
from zoneinfo import ZoneInfo

from feed.categories import CategoryMap, load_category_map
from feed.images import FetchOptions
from lookalike.settings import Settings

__all__ = ["SyncOptions", "sync_options"]


@dataclass(frozen=True, slots=True)
class SyncOptions:
    source: str  # a local path or an http(s) URL
    categories: CategoryMap
    fetch: FetchOptions
    default_currency: str = "EUR"
    dry_run: bool = False
    force: bool = False
    max_hide_share: float = 0.2
    concurrency: int = 8
    max_images: int = 10
    max_feed_bytes: int = 512 * 1024 * 1024
    batch_size: int = 32
    lease_ttl: timedelta = timedelta(minutes=5)
    time_zone: tzinfo = UTC  # of sale dates written without one


def sync_options(
    settings: Settings, source: str, *, dry_run: bool = False, force: bool = False
) -> SyncOptions:
    """The sync's options from Settings (raises CategoryMapError for a bad mapping file)."""
    return SyncOptions(
        source=source,
        categories=load_category_map(settings.feed_category_map),
        fetch=FetchOptions(
            max_bytes=settings.max_image_bytes,
            timeout_seconds=settings.feed_image_timeout_seconds,
            allow_private=settings.url_fetch_allow_private,
            retries=settings.feed_image_retries,
        ),
        default_currency=settings.currency,
        dry_run=dry_run,
        force=force,
        max_hide_share=settings.feed_max_hide_share,
        concurrency=settings.feed_download_concurrency,
        max_images=settings.feed_max_images_per_product,
        max_feed_bytes=settings.feed_max_bytes,
        batch_size=settings.inference_batch_size,
        time_zone=ZoneInfo(settings.feed_time_zone),
    )
