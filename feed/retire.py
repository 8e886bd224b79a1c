"""Step 4 of a sync (after the photos were imported): photos the feed replaced or dropped are
retired from their product, so an old photo stops finding it and FEED_MAX_IMAGES_PER_PRODUCT
bounds the product, not one sync.

A photo is the feed's when a sync downloaded it for that product (feed_images, before this
sync or now); one an admin added by hand is never retired. Of the feed's photos a product
keeps those of the URLs it lists now; the others go. Nothing is retired for a product with
a photo that could not be downloaded this time (what it shows now is not known), and a
product always keeps at least one photo. Only products with a photo downloaded in full now, or
with a photo URL no longer listed, are looked at: an unchanged sync (every photo answered 304)
reads nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from feed.diff import CatalogueProduct, StoredImage
from feed.grouping import FeedProduct
from feed.state import FeedStore, catalogue_snapshot
from search import CatalogError, SearchEngine, retire_photos


@dataclass
class Retired:
    photos: int = 0
    products: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def retire_replaced_photos(
    engine: SearchEngine,
    store: FeedStore,
    feed: Mapping[str, FeedProduct],
    before: Mapping[tuple[str, str], StoredImage],
    *,
    downloaded: set[str],
    failed: set[str],
    skipped: set[str],
) -> Retired:
    """`before`: the validators as this sync found them; `downloaded` / `failed`: SKUs with a
    photo downloaded in full / whose download failed now; `skipped`: SKUs the sync left alone
    (removed by an admin)."""
    retired = Retired()
    listed_before: dict[str, set[str]] = {}
    for sku, url in before:
        listed_before.setdefault(sku, set()).add(url)
    candidates = (
        {
            sku
            for sku, product in feed.items()
            if sku in downloaded or listed_before.get(sku, set()) - set(product.image_urls)
        }
        - failed
        - skipped
    )
    if not candidates:
        return retired
    now = store.images()
    feeds_photos: dict[str, set[str]] = {}  # sku -> content hashes the feed brought
    ledger_urls: dict[str, set[str]] = {}  # sku -> photo URLs with a validator row
    for sku, url in now:
        ledger_urls.setdefault(sku, set()).add(url)
    for images in (before, now):
        for (sku, _url), stored in images.items():
            if stored.content_hash is not None:
                feeds_photos.setdefault(sku, set()).add(stored.content_hash)
    catalogue: Mapping[str, CatalogueProduct] = catalogue_snapshot(engine)
    for sku in sorted(candidates):
        product, held = feed[sku], catalogue.get(sku)
        if held is None:
            continue
        listed = {
            record.content_hash
            for url in product.image_urls
            if (record := now.get((sku, url))) is not None and record.content_hash is not None
        }
        gone = (held.image_hashes & feeds_photos.get(sku, set())) - listed
        if gone and listed & held.image_hashes:  # keeps a listed photo
            try:
                retire_photos(engine, sku, gone)
            except CatalogError as exc:
                retired.problems.append((sku, str(exc)))
                continue
            retired.photos += len(gone)
            retired.products.append(sku)
        if ledger_urls.get(sku, set()) - set(product.image_urls):
            store.forget_images(sku, keep=product.image_urls)
    return retired
