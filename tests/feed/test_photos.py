"""A product's photos follow the feed: a replaced or dropped photo is retired (the cap bounds
the product, not one sync), a photo an admin added by hand stays, and a photo two products
share is featurised once (the catalogue still holds it for the first product only)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from bench.fake_shop import ShopItem, ShopServer, changed
from search import SearchEngine, clean_product_fields
from tests.feed.conftest import Syncer
from tests.images import encode, photo_like


def new_photo(shop: ShopServer, path: str, like: str, seed: int) -> str:
    """Publish a photo of its own at `path` (a copy of `like`'s headers); returns its hash."""
    body = encode(photo_like(seed=seed), "PNG")
    shop.files[path] = replace(shop.files[like], body=body, content_type="image/png")
    return hashlib.sha256(body).hexdigest()


def hashes(engine: SearchEngine, sku: str) -> set[str]:
    return {image.content_hash for image in engine.catalog.require(sku).images}


async def test_replaced_and_dropped_photos_are_retired_hand_added_ones_kept(
    sync: Syncer, engine: SearchEngine, shop: ShopServer, demo: list[ShopItem]
) -> None:
    items = demo[:3]
    extra_1 = new_photo(shop, "/img/extra-1.png", items[0].image, seed=21)
    new_photo(shop, "/img/extra-2.png", items[0].image, seed=22)
    items = changed(items, 0, extra_images=("/img/extra-1.png", "/img/extra-2.png"))
    first = await sync(items)
    assert first.status == "ok", first
    assert len(hashes(engine, items[0].id)) == 3

    # Product 0: a new main photo at a new URL, extra-2 dropped. Product 1: new bytes at the
    # same URL. Product 2: unchanged.
    main_0 = new_photo(shop, "/img/main-0.png", items[0].image, seed=23)
    main_1 = new_photo(shop, items[1].image, items[1].image, seed=24)
    items = changed(items, 0, image="/img/main-0.png", extra_images=("/img/extra-1.png",))
    second = await sync(items)
    assert second.status == "ok", second
    assert hashes(engine, items[0].id) == {main_0, extra_1}
    assert hashes(engine, items[1].id) == {main_1}
    assert second.counts["photos_retired"] == 3
    assert second.counts["featurised"] == 2

    by_hand = clean_product_fields(
        sku=items[2].id, name=items[2].title, price=items[2].price.split()[0], currency="EUR"
    )
    engine.catalog.add(by_hand, encode(photo_like(seed=25), "JPEG"))
    third = await sync(items)
    assert third.counts["photos_retired"] == 0
    assert third.counts["featurised"] == 0
    assert len(hashes(engine, items[2].id)) == 2  # the feed's photo and the admin's

    # A photo dropped while nothing is downloaded (every other photo answers 304).
    fourth = await sync(changed(items, 0, extra_images=()))
    assert (fourth.counts["photos_retired"], fourth.counts["images_downloaded"]) == (1, 0)
    assert hashes(engine, items[0].id) == {main_0}


async def test_a_photo_two_products_share_is_featurised_once(
    sync: Syncer, engine: SearchEngine, demo: list[ShopItem]
) -> None:
    items = [demo[0], replace(demo[1], image=demo[0].image)]
    summary = await sync(items)
    assert summary.status == "ok", summary
    assert summary.counts["featurised"] == 1
    assert (
        f"{demo[1].id} photo 1",
        f"this exact photo already belongs to product {demo[0].id}",
    ) in summary.problems
