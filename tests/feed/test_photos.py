"""A product's photos follow the feed: a replaced or dropped photo is retired (the cap bounds
the product, not one sync), a photo an admin added by hand stays, and a photo two products
share is featurised once and stored once, and belongs to both."""

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


async def test_a_set_and_its_base_product_share_a_photo(
    sync: Syncer, engine: SearchEngine, shop: ShopServer, demo: list[ShopItem]
) -> None:
    """Both products exist after the sync (the photo featurised once, its file stored once),
    a search finds each once, and an unchanged re-sync downloads and featurises nothing."""
    base, bundle = demo[0], replace(demo[1], id="SET-1", image=demo[0].image)
    summary = await sync([base, bundle])
    assert summary.status == "ok", summary
    assert (summary.counts["added"], summary.counts["featurised"]) == (2, 1)
    shared = hashes(engine, base.id)
    assert shared == hashes(engine, bundle.id) and len(shared) == 1
    files = {engine.catalog.require(sku).images[0].file_name for sku in (base.id, bundle.id)}
    assert len(files) == 1
    photo = shop.files[base.image].body
    skus = [item.product.sku for item in engine.searcher.search_image(photo).items]
    assert {base.id, bundle.id} <= set(skus[:2]) and len(set(skus)) == len(skus)

    again = await sync([base, bundle])
    assert (again.counts["images_downloaded"], again.counts["featurised"]) == (0, 0)
    assert again.counts["images_not_modified"] == 2

    # The set gets a photo of its own: the shared one is retired from the set only, and its
    # file stays for the base product (the orphan sweep agrees).
    new_photo(shop, "/img/set-1.png", base.image, seed=26)
    third = await sync([base, replace(bundle, image="/img/set-1.png")])
    assert third.counts["photos_retired"] == 1
    assert hashes(engine, base.id) == shared and not hashes(engine, bundle.id) & shared
    (file_name,) = files
    assert file_name not in engine.catalog.sweep_orphan_files(grace_seconds=0)
    assert engine.media.read(file_name) == photo
