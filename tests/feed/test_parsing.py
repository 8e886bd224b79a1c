"""Reading feeds: format detection, each format streamed into the same rows, the attribute
rules (prices, sales, availability), the category map, and variants grouped."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bench.fake_shop import ShopItem, changed, demo_items, feed_bytes
from feed.categories import CategoryMapError, load_category_map, parse_category_map
from feed.formats import FeedFormatError, detect_format, read_records
from feed.grouping import group_items
from feed.items import FeedItem, parse_item
from search.fields import FieldError

PRODUCTS_CSV = Path(__file__).resolve().parents[3] / "shared" / "footwear" / "products.csv"
BASE = "http://127.0.0.1:9"
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
KINDS = ("rss", "atom", "tsv", "csv")


def items_of(path: Path) -> list[FeedItem]:
    return [parse_item(record.row, default_currency="EUR") for record in read_records(path)]


@pytest.fixture(scope="module")
def demo() -> list[ShopItem]:
    return demo_items(PRODUCTS_CSV, limit=40)


@pytest.mark.parametrize("kind", KINDS)
def test_every_format_gives_the_same_items(kind: str, demo: list[ShopItem], tmp_path: Path) -> None:
    shop = changed(demo, 3, extra_images=("/img/a.jpg", "/img/b.jpg"), title='Boot 12" & co')
    path = tmp_path / f"feed.{kind}"
    path.write_bytes(feed_bytes(kind, shop, BASE))
    items = items_of(path)
    assert [item.sku for item in items] == [item.id for item in demo]
    assert items[0].price == Decimal(demo[0].price.split()[0])
    assert items[0].currency == "EUR"
    assert items[0].link == demo[0].link
    assert items[0].product_type == "Shoes > " + demo[0].category.replace("_", " ").capitalize()
    assert items[3].title == 'Boot 12" & co'
    assert items[3].image_links == (
        BASE + demo[3].image,
        BASE + "/img/a.jpg",
        BASE + "/img/b.jpg",
    )


def test_detects_the_format_from_the_first_bytes() -> None:
    assert detect_format(b"\xef\xbb\xbf  <?xml version='1.0'?><rss/>") == "xml"
    assert detect_format(b"id\ttitle\tprice\n1\ta\t2") == "tsv"
    assert detect_format(b"id,title,price\n1,a,2") == "csv"
    with pytest.raises(FeedFormatError):
        detect_format(b"   \n")


def test_an_empty_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.xml"
    path.write_bytes(b"")
    assert list(read_records(path)) == []


def test_an_entity_declaration_is_refused(tmp_path: Path) -> None:
    """Billion laughs: the entity declaration is refused before any entity is expanded."""
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>&lol2;</g:id>'
        "</item></channel></rss>"
    )
    path = tmp_path / "bomb.xml"
    path.write_text(bomb)
    with pytest.raises(FeedFormatError, match="declares an entity"):
        list(read_records(path))


def test_a_truncated_xml_feed_is_an_error_not_half_a_feed(
    tmp_path: Path, demo: list[ShopItem]
) -> None:
    data = feed_bytes("rss", demo, BASE)
    path = tmp_path / "cut.xml"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeedFormatError, match="broken at line"):
        list(read_records(path))


def test_xml_is_read_in_bounded_chunks(tmp_path: Path, demo: list[ShopItem]) -> None:
    """Rows come out while the file is still being read: the first row is available before
    the parser has seen the end of a large feed."""
    many = [ShopItem(id=f"sku-{n}", title="x", price="1 EUR", image="/i.jpg") for n in range(5000)]
    path = tmp_path / "big.xml"
    path.write_bytes(feed_bytes("rss", many, BASE))
    records = read_records(path)
    first = next(records)
    assert first.row["id"] == ["sku-0"]
    assert sum(1 for _ in records) == 4999


def row(**values: str) -> dict[str, list[str]]:
    base = {
        "id": "A1",
        "title": "Shoe",
        "image_link": "https://img.example/a.jpg",
        "price": "59.90 EUR",
    }
    base.update(values)
    return {key: [value] for key, value in base.items() if value}


def test_sale_price_applies_only_within_its_dates() -> None:
    item = parse_item(
        row(
            sale_price="39.90 EUR",
            sale_price_effective_date="2026-11-01T00:00+01:00/2026-12-01T00:00+01:00",
        ),
        default_currency="EUR",
    )
    assert item.price_at(datetime(2026, 10, 31, 22, 59, tzinfo=UTC)) == Decimal("59.90")
    assert item.price_at(datetime(2026, 10, 31, 23, 0, tzinfo=UTC)) == Decimal("39.90")
    assert item.price_at(datetime(2026, 11, 30, 22, 59, tzinfo=UTC)) == Decimal("39.90")
    assert item.price_at(datetime(2026, 11, 30, 23, 0, tzinfo=UTC)) == Decimal("59.90")
    always = parse_item(row(sale_price="49 EUR"), default_currency="EUR")
    assert always.price_at(NOW) == Decimal("49.00")


@pytest.mark.parametrize(
    ("availability", "in_stock"),
    [
        ("in_stock", True),
        ("in stock", True),
        ("preorder", True),
        ("backorder", True),
        ("out_of_stock", False),
        ("", True),
    ],
)
def test_availability(availability: str, in_stock: bool) -> None:
    assert parse_item(row(availability=availability), default_currency="EUR").in_stock is in_stock


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"id": ""}, "lacks the required attribute(s) id"),
        ({"price": "cheap EUR"}, "not a number"),
        ({"price": "", "title": ""}, "title, price"),
        ({"availability": "maybe"}, "availability"),
        ({"sale_price": "10 USD"}, "sale_price is in USD"),
        ({"sale_price": "10 EUR", "sale_price_effective_date": "2026-11-01"}, "START/END"),
        ({"image_link": "ftp://x/a.jpg"}, "http"),
        ({"id": "x" * 51}, "at most 50"),
        ({"id": "tab\there"}, "control character"),
    ],
)
def test_a_bad_row_is_refused_with_its_reason(values: dict[str, str], reason: str) -> None:
    with pytest.raises(FieldError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_item(row(**values), default_currency="EUR")


def test_the_default_category_map_knows_the_demo_categories(demo: list[ShopItem]) -> None:
    categories = load_category_map(None)
    for item in demo_items(PRODUCTS_CSV):
        assert categories.category_for(item.product_type(), None) == item.category
    assert categories.category_for(None, "Apparel > Shoes > Wellington Boots") == "rain_boot"
    assert categories.category_for("Hats", "Apparel > Hats") is None


def test_a_bad_category_map_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CategoryMapError, match="rule 1 needs a pattern"):
        parse_category_map('[[rule]]\ncategory = "x"\n', source="map.toml")
    with pytest.raises(CategoryMapError, match="not valid TOML"):
        parse_category_map("[[rule]\n", source="map.toml")
    with pytest.raises(CategoryMapError, match="cannot read"):
        load_category_map(tmp_path / "missing.toml")


def test_variants_become_one_product() -> None:
    colours = ["red", "blue", "black"]
    items = [
        parse_item(
            row(
                id=f"RUN-{colour}",
                title=f"Runner {colour}",
                image_link=f"https://img.example/{colour}.jpg",
                price=price,
                availability=stock,
                item_group_id="RUN",
                color=colour,
                product_type="Shoes > Sneakers",
            ),
            default_currency="EUR",
        )
        for colour, price, stock in zip(
            colours,
            ["80 EUR", "60 EUR", "70 EUR"],
            ["in_stock", "out_of_stock", "in_stock"],
            strict=True,
        )
    ]
    single = parse_item(row(id="SOLO"), default_currency="EUR")
    grouped = group_items(
        [(f"item {n}", item) for n, item in enumerate([*items, single, items[0]], 1)],
        categories=load_category_map(None),
        now=NOW,
        max_images=2,
    )
    assert sorted(grouped.products) == ["RUN", "SOLO"]
    run = grouped.products["RUN"]
    assert run.variant_ids == ("RUN-red", "RUN-blue", "RUN-black")
    blue = run.variant_of("https://img.example/blue.jpg")
    assert blue is not None
    assert (blue.id, blue.color, blue.price, blue.in_stock) == (
        "RUN-blue",
        "blue",
        Decimal("60.00"),
        False,
    )
    assert run.variant_of("https://img.example/nowhere.jpg") is None
    assert run.fields.name == "Runner red"
    assert run.fields.price == Decimal("70.00")  # cheapest in stock (blue is out of stock)
    assert run.fields.category == "sneaker"
    assert run.in_stock
    assert run.image_urls == ("https://img.example/red.jpg", "https://img.example/blue.jpg")
    assert grouped.skipped == [("item 5", "id 'RUN-red' appears twice in the feed")]
