"""Feeds shaped the way real shops write them (fixtures written for the project after feeds
others wrote): ids with spaces and '/', Google's own Atom example, a comma inside an XML image
URL, sale windows without a time zone or a time, TSV without csv quoting, a file cut mid-row,
and item and group ids that collide. Each with the result Google's specification gives."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.fake_shop import ShopItem, ShopServer, feed_bytes
from feed.categories import load_category_map
from feed.formats import FeedFormatError, read_records
from feed.items import parse_item
from feed.source import FeedContents, FeedSourceError, read_feed

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
G = 'xmlns:g="http://base.google.com/ns/1.0"'


def read(tmp_path: Path, name: str, text: str, *, zone: str = "UTC") -> FeedContents:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return read_feed(
        str(path),
        categories=load_category_map(None),
        default_currency="EUR",
        now=NOW,
        max_images=10,
        max_bytes=1 << 20,
        zone=ZoneInfo(zone),
    )


def tsv(*rows: str) -> str:
    return "\n".join(rows) + "\n"


HEADER = "id\ttitle\tlink\timage_link\tprice\tavailability\titem_group_id"


def test_ids_with_spaces_and_slashes_are_kept_as_the_shop_wrote_them(tmp_path: Path) -> None:
    """A Vitamix-like TSV: ids like 'A2300 Red US' are the products' keys, unchanged; a
    Magento variant id with '/' does not refuse its product."""
    contents = read(
        tmp_path,
        "shop.tsv",
        tsv(
            HEADER,
            "A2300 Red US\tAscent A2300 red\thttps://s.example/a\thttps://i.example/a.jpg"
            "\t549.95 USD\tin_stock\t",
            "Ascent X/5\tAscent X5\thttps://s.example/x\thttps://i.example/x.jpg\t699.00 USD"
            "\tin stock\t",
            "MG-1/blue/42\tRunner blue\thttps://s.example/r\thttps://i.example/r.jpg\t80.00 USD"
            "\tin_stock\tRunner Group 1",
            "Ωmega 7 ü\tUnicode\thttps://s.example/u\thttps://i.example/u.jpg\t1.00 USD\t\t",
        ),
    )
    assert contents.skipped == []
    assert sorted(contents.products) == [
        "A2300 Red US",
        "Ascent X/5",
        "Runner Group 1",
        "Ωmega 7 ü",
    ]
    assert contents.products["Runner Group 1"].variant_ids == ("MG-1/blue/42",)


def test_googles_atom_example_is_read_through_its_id(tmp_path: Path) -> None:
    """Google's Atom 1.0 example: the entry's Atom <id>, <summary>, a <link> without rel and a
    price without currency (the shop's default applies); a harmless public DOCTYPE is fine."""
    contents = read(
        tmp_path,
        "atom.xml",
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE feed PUBLIC "-//Example//DTD Feed//EN" "http://dtd.example/feed.dtd">\n'
        f'<feed xmlns="http://www.w3.org/2005/Atom" {G}>\n'
        "<title>The name of your data feed</title>"
        '<link href="http://www.example.com" rel="alternate" type="text/html"/>'
        "<updated>2006-06-11T18:30:02Z</updated><author><name>Google</name></author>"
        "<id>tag:example.com,2006-06-11:/support/products</id>\n"
        "<entry><title>Red wool sweater</title><id>1a</id>"
        '<link href="http://www.example.com/item1-info-page.html"/>'
        "<summary>Comfortable and soft.</summary><updated>2005-10-13T18:30:02Z</updated>"
        "<g:image_link>http://www.example.com/image1.jpg</g:image_link>"
        "<g:price>25</g:price><g:condition>new</g:condition></entry>\n</feed>\n",
    )
    assert contents.skipped == []
    sweater = contents.products["1a"]
    assert sweater.fields.name == "Red wool sweater"
    assert sweater.fields.url == "http://www.example.com/item1-info-page.html"
    assert (sweater.fields.price, sweater.fields.currency) == (Decimal("25.00"), "EUR")


def test_an_xml_image_url_with_commas_is_one_url_a_tsv_cell_a_list(tmp_path: Path) -> None:
    cloud = "https://res.example/image/upload/c_fill,w_600/shoe.jpg"
    xml = read(
        tmp_path,
        "feed.xml",
        f'<rss version="2.0" {G}><channel><item><g:id>S1</g:id><g:title>Shoe</g:title>'
        f"<g:image_link>{cloud}</g:image_link>"
        f"<g:additional_image_link>{cloud.replace('shoe', 'side')}</g:additional_image_link>"
        "<g:price>59.90 EUR</g:price></item></channel></rss>",
    )
    assert xml.products["S1"].image_urls == (cloud, cloud.replace("shoe", "side"))
    text = read(
        tmp_path,
        "feed.tsv",
        tsv(
            "id\ttitle\timage_link\tadditional_image_link\tprice",
            "S1\tShoe\thttps://i.example/a.jpg\thttps://i.example/b.jpg,https://i.example/c.jpg"
            "\t59.90 EUR",
        ),
    )
    assert text.products["S1"].image_urls == (
        "https://i.example/a.jpg",
        "https://i.example/b.jpg",
        "https://i.example/c.jpg",
    )


@pytest.mark.parametrize(
    ("window", "zone", "first_sale", "first_full"),
    [
        # A date alone: from 00:00 of the first day to 23:59:59 of the last, in the shop's zone.
        ("2026-11-25/2026-12-31", "UTC", "2026-11-25T00:00+00:00", "2027-01-01T00:00+00:00"),
        # No time zone: the shop's (FEED_TIME_ZONE), as Google applies the country's.
        (
            "2026-11-25T08:00/2026-11-30T20:00",
            "Europe/Berlin",
            "2026-11-25T07:00+00:00",
            "2026-11-30T19:00+00:00",
        ),
        # Written Google's way with a zone (no colon in the offset).
        (
            "2026-11-25T08:00-0800/2026-11-30T20:00-0800",
            "UTC",
            "2026-11-25T16:00+00:00",
            "2026-12-01T04:00+00:00",
        ),
    ],
)
def test_sale_windows_as_google_reads_them(
    window: str, zone: str, first_sale: str, first_full: str
) -> None:
    row = {
        "id": ["S1"],
        "title": ["Shoe"],
        "image_link": ["https://i.example/a.jpg"],
        "price": ["59.90 EUR"],
        "sale_price": ["39.90 EUR"],
        "sale_price_effective_date": [window],
    }
    item = parse_item(row, default_currency="EUR", zone=ZoneInfo(zone))
    start, end = datetime.fromisoformat(first_sale), datetime.fromisoformat(first_full)
    second = datetime.resolution * 1_000_000
    assert item.price_at(start - second) == Decimal("59.90")
    assert item.price_at(start) == Decimal("39.90")
    assert item.price_at(end - second) == Decimal("39.90")
    assert item.price_at(end) == Decimal("59.90")


def test_a_tsv_quote_is_a_character_not_a_quoting_rule(tmp_path: Path) -> None:
    """An unbalanced '"' at the start of a cell swallowed 7 of 9 rows under csv's rules;
    Google's TSV has none: every row is read, the quote kept. A cell wholly in quotes (Google's
    quoted fields) is unquoted."""
    rows = [f"R{n}\tBoot {n}\thttps://i.example/{n}.jpg\t10.00 EUR" for n in range(9)]
    rows[1] = 'R1\t"12 inch boot\thttps://i.example/1.jpg\t10.00 EUR'
    rows[2] = 'R2\t"Boot ""Alpine"" 2"\thttps://i.example/2.jpg\t10.00 EUR'
    contents = read(tmp_path, "quote.tsv", tsv("id\ttitle\timage_link\tprice", *rows))
    assert sorted(contents.products) == [f"R{n}" for n in range(9)]
    assert contents.products["R1"].fields.name == '"12 inch boot'
    assert contents.products["R2"].fields.name == 'Boot "Alpine" 2'


def test_a_tsv_cut_inside_a_price_is_refused(tmp_path: Path) -> None:
    """'45.00 INR' cut to '4' would have become 4.00 in the shop's default currency."""
    full = tsv(
        "id\ttitle\timage_link\tprice",
        *(f"P{n}\tLamp {n}\thttps://i.example/{n}.jpg\t45.00 INR" for n in range(5)),
    )
    cut = full[: full.rindex("45.00 INR") + 1]
    assert cut.endswith("\t4")
    with pytest.raises(FeedFormatError, match=r"line 6: price '4' has no currency"):
        read(tmp_path, "cut.tsv", cut)


def test_a_row_with_fewer_cells_than_the_header_is_refused(tmp_path: Path) -> None:
    text = tsv(
        "id\ttitle\timage_link\tprice\tavailability",
        "P1\tLamp\thttps://i.example/1.jpg\t45.00 INR\tin_stock",
        "P2\tLamp\thttps://i.example/2.jpg",
    )
    path = tmp_path / "short.tsv"
    path.write_text(text)
    with pytest.raises(FeedFormatError, match="line 3 has 3 cells but the header 5"):
        list(read_records(path))
    path.write_text(text.replace("\thttps://i.example/2.jpg", "\thttps://i.example/2.jpg\t1\tx\tx"))
    with pytest.raises(FeedFormatError, match="stray"):
        list(read_records(path))


def test_group_ids_and_item_ids_are_separate_namespaces(tmp_path: Path) -> None:
    """A standalone item 'RUN' and a group 'RUN' would share one key: the standalone product is
    kept under its own title, the group's rows are skipped with the reason (never merged)."""
    contents = read(
        tmp_path,
        "groups.tsv",
        tsv(
            HEADER,
            "RUN-red\tRunner red\t\thttps://i.example/r.jpg\t80.00 EUR\tin_stock\tRUN",
            "RUN\tRunning socks\t\thttps://i.example/s.jpg\t5.00 EUR\tin_stock\t",
            "RUN-blue\tRunner blue\t\thttps://i.example/b.jpg\t70.00 EUR\tin_stock\tRUN",
            "TRAIL-1\tTrail\t\thttps://i.example/t.jpg\t90.00 EUR\tin_stock\tTRAIL",
        ),
    )
    assert sorted(contents.products) == ["RUN", "TRAIL"]
    assert contents.products["RUN"].fields.name == "Running socks"
    assert contents.products["RUN"].variant_ids == ("RUN",)
    assert [label for label, _ in contents.skipped] == [
        "line 2 (id 'RUN-red')",
        "line 4 (id 'RUN-blue')",
    ]
    assert "item_group_id 'RUN' is also the id" in contents.skipped[0][1]


def _fetch(url: str, *, allow_private: bool, timeout: float = 10.0) -> FeedContents:
    return read_feed(
        url,
        categories=load_category_map(None),
        default_currency="EUR",
        now=NOW,
        max_images=10,
        max_bytes=1 << 20,
        timeout=timeout,
        allow_private=allow_private,
    )


def test_the_feed_is_fetched_like_a_photo_never_from_a_private_address(
    shop: ShopServer, demo: list[ShopItem]
) -> None:
    """The feed's download goes through the SSRF-safe fetcher: 127.0.0.1 is refused unless
    URL_FETCH_ALLOW_PRIVATE allows it, and one deadline bounds the whole download."""
    url = shop.publish("/feed.xml", feed_bytes("rss", demo[:3], shop.base))
    with pytest.raises(FeedSourceError, match="private or local network address"):
        _fetch(url, allow_private=False)
    assert shop.full["/feed.xml"] == 0  # refused before any connection
    assert sorted(_fetch(url, allow_private=True).products) == sorted(i.id for i in demo[:3])
    with pytest.raises(FeedSourceError, match=r"did not send the file within 0\.5 s"):
        _fetch(f"{shop.base}/hang/feed.xml", allow_private=True, timeout=0.5)
    # A byte every 0.1 s: no single read waits 0.5 s, the whole download would take 3 s.
    with pytest.raises(FeedSourceError, match=r"did not send the file within 0\.5 s"):
        _fetch(f"{shop.base}/trickle/feed.xml", allow_private=True, timeout=0.5)
