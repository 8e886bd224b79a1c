"""The plan (pure): what is added, updated, hidden, restored, and which photos are asked
for conditionally."""

from __future__ import annotations

from decimal import Decimal

from feed.diff import CatalogueProduct, OwnedState, StoredImage, plan_sync
from feed.grouping import FeedProduct
from search.fields import ProductFields


def fields(sku: str, price: str = "10.00", name: str = "Shoe") -> ProductFields:
    return ProductFields(
        sku=sku, name=name, price=Decimal(price), currency="EUR", url=None, category=None
    )


def listed(sku: str, *, price: str = "10.00", in_stock: bool = True) -> FeedProduct:
    return FeedProduct(
        fields=fields(sku, price),
        in_stock=in_stock,
        image_urls=(f"https://img.example/{sku}.jpg",),
        variants=(sku,),
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
