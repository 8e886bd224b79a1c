"""Colour variants (issue 21, item 5): the rows of one item_group_id stay one product, but a
photo of the red variant shows the product with the red variant's link, price and colour, in
the engine's result, the API's result fields and the bot's caption; a variant's new price
reaches its photos without featurising anything."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from bench.fake_shop import ShopItem
from bot.render import result_caption
from search import SearchEngine, SearchQuery
from tests.feed.conftest import Syncer
from web.render import Urls, search_out

RED_LINK = "https://shop.example/runner?colour=red"
BLACK_LINK = "https://shop.example/runner?colour=black"


def runner(demo: list[ShopItem], *, red_price: str = "80 EUR") -> list[ShopItem]:
    # footwear_0002 is red to the eye and the descriptor, footwear_0000 black (test_colour.py)
    return [
        replace(
            demo[2], id="RUNNER-R", group="RUNNER", color="Red", price=red_price, link=RED_LINK
        ),
        replace(
            demo[0], id="RUNNER-B", group="RUNNER", color="Black", price="60 EUR", link=BLACK_LINK
        ),
    ]


def shown(engine: SearchEngine, photo: bytes) -> tuple[str | None, Decimal | None, str | None]:
    """(link, price, colour) of the product RUNNER as a search with `photo` shows it."""
    (item,) = [i for i in engine.searcher.search_image(photo).items if i.product.sku == "RUNNER"]
    return item.product.url, item.product.price, item.product.colour


async def test_a_variants_photo_shows_that_variants_link_price_and_colour(
    sync: Syncer, engine: SearchEngine, demo: list[ShopItem]
) -> None:
    items = [*runner(demo), demo[3]]
    summary = await sync(items)
    assert summary.status == "ok", summary
    product = engine.catalog.require("RUNNER")
    assert (product.price, product.url) == (Decimal("60.00"), RED_LINK)  # cheapest; first link
    red, black = (sync.shop.files[item.image].body for item in items[:2])

    assert shown(engine, red) == (RED_LINK, Decimal("80.00"), "red")
    assert shown(engine, black) == (BLACK_LINK, Decimal("60.00"), "black")
    # A product without variants shows its own fields.
    plain = engine.searcher.search_image(sync.shop.files[demo[3].image].body).items[0]
    assert (plain.product.sku, plain.product.url) == (demo[3].id, demo[3].link)
    assert plain.image.variant is None

    # Under a price filter the red one (80) is dearer than asked: the product's own price.
    under = engine.searcher.search_image(red, SearchQuery(max_price=Decimal("70")))
    assert [i.product.price for i in under.items if i.product.sku == "RUNNER"] == [Decimal("60")]

    # What the doors render: the API's result fields and the bot's caption.
    result = engine.searcher.search_image(red)
    out = next(r for r in search_out(result, Urls("http://t")).results if r.sku == "RUNNER")
    assert (out.url, out.price, out.colour) == (RED_LINK, Decimal("80.00"), "red")
    item = next(i for i in result.items if i.product.sku == "RUNNER")
    assert "80.00" in result_caption(item) and "red" in result_caption(item)

    # The red variant's sale: its photo shows the new price, nothing featurised again.
    again = await sync([*runner(demo, red_price="75 EUR"), demo[3]])
    assert again.counts["variant_photos"] == 1 and again.counts["featurised"] == 0
    assert shown(engine, red) == (RED_LINK, Decimal("75.00"), "red")
    assert shown(engine, black) == (BLACK_LINK, Decimal("60.00"), "black")
    # The feed corrects the black variant's colour: its photo shows the new one, nothing
    # featurised again; the red one keeps its own.
    corrected = runner(demo, red_price="75 EUR")
    corrected[1] = replace(corrected[1], color="Navy Blue")
    fixed = await sync([*corrected, demo[3]])
    assert fixed.counts["variant_photos"] == 1 and fixed.counts["featurised"] == 0
    assert shown(engine, black) == (BLACK_LINK, Decimal("60.00"), "navy")
    assert shown(engine, red) == (RED_LINK, Decimal("75.00"), "red")
    # The black variant leaves the group: the red photo is the product's own photo again.
    alone = await sync([runner(demo)[0], demo[3]])
    assert alone.status == "ok", alone
    assert [image.variant for image in engine.catalog.require("RUNNER").images] == [None]
    assert shown(engine, red) == (RED_LINK, Decimal("80.00"), "red")
