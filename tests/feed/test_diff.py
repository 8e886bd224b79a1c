"""The plan (pure): what is added, updated, hidden, restored, and which photos are asked
for conditionally."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from feed.diff import CatalogueProduct, OwnedState, StoredImage, plan_sync
from feed.grouping import FeedProduct, FeedVariant
from search import PhotoVariant
from search.fields import ProductFields


def fields(sku: str, price: str = "10.00", name: str = "Shoe") -> ProductFields:
    return ProductFields(
        sku=sku, name=name, price=Decimal(price), currency="EUR", url=None, category=None
    )


def listed(sku: str, *, price: str = "10.00", in_stock: bool = True) -> FeedProduct:
    url = f"https://img.example/{sku}.jpg"
    return FeedProduct(
        fields=fields(sku, price),
        in_stock=in_stock,
        image_urls=(url,),
        variants=(FeedVariant(sku, None, None, None, Decimal(price), in_stock, (url,)),),
        label=sku,
    )


def held(
    sku: str, *, removed: bool = False, hashes: frozenset[str] = frozenset()
) -> CatalogueProduct:
    return CatalogueProduct(fields=fields(sku), in_stock=True, removed=removed, image_hashes=hashes)


def test_the_plan() -> None:
    feed = {
        "NEW": listed("NEW"),
        "PRICE": listed("PRICE", price="12.00"),
        "OUT": listed("OUT", in_stock=False),
        "BACK": listed("BACK"),
        "ADMIN-REMOVED": listed("ADMIN-REMOVED"),
        "SAME": listed("SAME"),
    }
    catalogue = {
        "PRICE": held("PRICE"),
        "OUT": held("OUT"),
        "BACK": held("BACK", removed=True),
        "ADMIN-REMOVED": held("ADMIN-REMOVED", removed=True),
        "SAME": held("SAME", hashes=frozenset({"h-same"})),
        "GONE": held("GONE"),
        "HAND": held("HAND"),
    }
    owned = {
        sku: OwnedState(hidden_by_feed=sku == "BACK")
        for sku in ("PRICE", "OUT", "BACK", "ADMIN-REMOVED", "SAME", "GONE")
    }
    images = {
        ("SAME", "https://img.example/SAME.jpg"): StoredImage('"e"', None, "h-same"),
        ("PRICE", "https://img.example/PRICE.jpg"): StoredImage('"e"', None, "h-not-held"),
    }
    plan = plan_sync(feed, catalogue, owned, images)
    assert [p.sku for p in plan.add] == ["NEW"]
    assert [(p.sku, changes) for p, changes in plan.update] == [("PRICE", ("price",))]
    assert plan.stock == [("OUT", False)]
    assert plan.restore == ["BACK"]
    assert plan.kept_removed == ["ADMIN-REMOVED"]
    assert plan.hide == ["GONE"]  # HAND was never the feed's
    assert plan.unchanged == ["SAME"]
    assert plan.active_before == 5 and plan.hide_share == 1 / 5
    conditional = {job.sku: job.conditional for job in plan.images}
    assert set(conditional) == {"NEW", "PRICE", "OUT", "BACK", "SAME"}  # not ADMIN-REMOVED
    assert conditional["SAME"] == StoredImage('"e"', None, "h-same")
    assert conditional["PRICE"] is None  # its validator's photo is not in the catalogue


def test_a_held_photos_changed_variant_is_planned_without_a_download() -> None:
    """Two variants of one product: only the photo whose variant's price changed is planned
    (its URL's last download says which photo it is); a photo not held is left to the import."""
    red, black = "https://img.example/red.jpg", "https://img.example/black.jpg"

    def variant(colour: str, url: str, price: str) -> FeedVariant:
        link = f"https://shop.example/{colour}"
        return FeedVariant(colour, colour, colour, link, Decimal(price), True, (url,))

    feed = {
        "RUN": replace(
            listed("RUN"),
            image_urls=(red, black, "https://img.example/new.jpg"),
            variants=(variant("red", red, "75"), variant("black", black, "60")),
        )
    }
    was = {
        "h-red": PhotoVariant("https://shop.example/red", Decimal("80"), "EUR"),
        "h-black": PhotoVariant("https://shop.example/black", Decimal("60"), "EUR"),
    }
    named = {"h-red": "red", "h-black": "black"}  # each photo's colour, the feed's word
    catalogue = {
        "RUN": replace(held("RUN", hashes=frozenset(was)), photo_variants=was, photo_colours=named),
    }
    images = {
        ("RUN", red): StoredImage('"r"', None, "h-red"),
        ("RUN", black): StoredImage('"b"', None, "h-black"),
    }
    plan = plan_sync(feed, catalogue, {"RUN": OwnedState(hidden_by_feed=False)}, images)
    assert plan.variants == {
        "RUN": {"h-red": PhotoVariant("https://shop.example/red", Decimal("75"), "EUR")}
    }
    assert plan.colours == {}
    assert plan.unchanged == [] and plan.counts()["variant_photos"] == 1

    # The feed now calls the black one navy (and the red one's colour word is dropped: its
    # photo keeps its name): one more photo to change, counted once with the red one's price.
    renamed = replace(feed["RUN"].variants[1], colour_name="navy")
    dropped = replace(feed["RUN"].variants[0], colour_name=None)
    feed["RUN"] = replace(feed["RUN"], variants=(dropped, renamed))
    plan = plan_sync(feed, catalogue, {"RUN": OwnedState(hidden_by_feed=False)}, images)
    assert plan.colours == {"RUN": {"h-black": "navy"}}
    assert plan.counts()["variant_photos"] == 2
