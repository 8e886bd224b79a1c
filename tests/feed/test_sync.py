"""The sync against a real engine and a real HTTP server: adding, updating without
featurising, hiding and restoring, conditional photo downloads, the guard."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from bench.fake_shop import ShopItem, ShopServer, changed
from feed.report import problem_kinds
from lookalike.settings import Settings
from search import SearchEngine
from tests.feed.conftest import Syncer
from tests.images import encode, photo_like

SUBSET = 40


def visible(engine: SearchEngine) -> set[str]:
    return {p.sku for p in engine.catalog.products()}


async def test_first_sync_adds_and_a_second_one_downloads_and_featurises_nothing(
    sync: Syncer, engine: SearchEngine, shop: ShopServer, demo: list[ShopItem]
) -> None:
    items = demo[:SUBSET]
    first = await sync(items)
    assert first.status == "ok", first
    assert first.counts["added"] == SUBSET
    assert first.counts["featurised"] == SUBSET
    assert visible(engine) == {item.id for item in items}
    product = engine.catalog.require(items[0].id)
    assert product.name == items[0].title
    assert product.price == Decimal(items[0].price.split()[0])
    assert product.category == items[0].category
    assert product.url == items[0].link
    assert len(shop.full) == SUBSET + 1  # every photo once, and the feed

    served_before = dict(shop.full)
    second = await sync(items)
    assert second.status == "ok", second
    assert second.counts["featurised"] == 0
    assert second.counts["images_downloaded"] == 0
    assert second.counts["images_not_modified"] == SUBSET
    assert second.counts["unchanged"] == SUBSET
    photos = {path: n for path, n in shop.full.items() if path.startswith("/img/")}
    assert photos == {path: n for path, n in served_before.items() if path.startswith("/img/")}
    assert sum(shop.not_modified.values()) == SUBSET


async def test_changes_are_applied_and_only_new_photos_featurised(
    sync: Syncer, engine: SearchEngine, shop: ShopServer, demo: list[ShopItem]
) -> None:
    items = demo[:SUBSET]
    await sync(items)
    shop.files["/img/new-photo.png"] = replace(
        shop.files[items[0].image], body=encode(photo_like(seed=7), "PNG"), content_type="image/png"
    )
    shop.files[items[1].image] = replace(
        shop.files[items[1].image], body=encode(photo_like(seed=8), "JPEG")
    )
    new_item = replace(demo[SUBSET], image="/img/new-photo.png")
    feed = changed(items, 2, price="12.50 EUR", title="Renamed boot")
    feed = changed(
        feed, 3, sale_price="9.99 EUR", sale_dates="2026-01-01T00:00+01:00/2099-01-01T00:00+01:00"
    )
    feed = changed(feed, 4, availability="out_of_stock")
    feed = changed(feed, 5, category="heel")
    feed = [item for n, item in enumerate(feed) if n != 6] + [new_item]

    summary = await sync(feed)
    assert summary.status == "ok", summary
    assert summary.counts["featurised"] == 2  # the new product and the changed photo
    assert summary.counts["added"] == 1
    assert summary.counts["hide"] == 1
    renamed = engine.catalog.require(items[2].id)
    assert (renamed.name, renamed.price) == ("Renamed boot", Decimal("12.50"))
    assert engine.catalog.require(items[3].id).price == Decimal("9.99")
    assert engine.catalog.require(items[4].id).in_stock is False
    assert engine.catalog.require(items[5].id).category == "heel"
    assert engine.catalog.require(items[6].id).removed
    # The replaced photo is retired: the product holds only the one the feed lists now.
    assert [image.content_hash for image in engine.catalog.require(items[1].id).images] == [
        hashlib.sha256(shop.files[items[1].image].body).hexdigest()
    ]
    assert summary.counts["photos_retired"] == 1
    assert new_item.id in visible(engine)

    back = await sync([*feed, items[6]])
    assert back.counts["restore"] == 1
    assert back.counts["featurised"] == 0
    assert not engine.catalog.require(items[6].id).removed


async def test_products_added_by_hand_are_never_hidden(
    sync: Syncer, engine: SearchEngine, shop: ShopServer, demo: list[ShopItem]
) -> None:
    from search.fields import clean_product_fields

    hand = clean_product_fields(sku="HAND-1", name="Hand made", price="5", currency="EUR")
    engine.catalog.add(hand, encode(photo_like(seed=3), "JPEG"))
    items = demo[:10]
    await sync(items)
    summary = await sync(items[:9])
    assert summary.counts["hide"] == 1
    assert "HAND-1" in visible(engine)
    assert items[9].id not in visible(engine)


async def test_a_broken_export_changes_nothing_without_force(
    sync: Syncer, engine: SearchEngine, demo: list[ShopItem]
) -> None:
    items = demo[:20]
    await sync(items)
    empty = await sync([])
    assert empty.status == "refused"
    assert "no usable product" in empty.message
    half = await sync(items[:10])
    assert half.status == "refused"
    assert "would hide 10 of 20" in half.message
    assert visible(engine) == {item.id for item in items}
    dry = await sync(items[:10], dry_run=True)
    assert dry.status == "refused" and dry.message.startswith("dry run: the feed would hide")
    assert visible(engine) == {item.id for item in items}
    forced = await sync(items[:10], force=True)
    assert forced.status == "ok"
    assert "nothing changed" not in forced.message  # it did change things
    assert visible(engine) == {item.id for item in items[:10]}


async def test_dry_run_reports_the_diff_and_changes_nothing(
    sync: Syncer, engine: SearchEngine, shop: ShopServer, demo: list[ShopItem]
) -> None:
    from feed import render_summary

    summary = await sync(demo[:12], dry_run=True)
    assert summary.status == "dry-run"
    assert summary.counts["add"] == 12
    assert visible(engine) == set()
    assert not any(path.startswith("/img/") for path in shop.full)
    text = render_summary(summary)
    assert f"add: {demo[0].id} " in text and "(+7 more)" in text


async def test_bad_rows_and_bad_photos_are_skipped_with_their_reason(
    sync: Syncer, engine: SearchEngine, shop: ShopServer, demo: list[ShopItem]
) -> None:
    from tests.images import huge_black_png, minimal_pdf

    shop.files["/img/doc.pdf"] = replace(
        shop.files[demo[0].image], body=minimal_pdf(), content_type="application/pdf"
    )
    shop.files["/img/bomb.png"] = replace(
        shop.files[demo[0].image], body=huge_black_png(20000, 20000), content_type="image/png"
    )
    good = demo[:6]
    bad = [
        replace(demo[10], id=""),
        replace(demo[11], price="lots EUR"),
        replace(demo[12], image="/img/missing.jpg"),
        replace(demo[13], image="/img/doc.pdf"),
        replace(demo[14], image="/img/bomb.png"),
        replace(demo[15], image="/hang/slow.jpg"),
    ]
    summary = await sync([*good, *bad])
    assert summary.status == "ok", summary
    assert visible(engine) == {item.id for item in good}
    reasons = " | ".join(f"{label}: {reason}" for label, reason in summary.problems)
    assert "lacks the required attribute(s) id" in reasons
    assert "not a number" in reasons
    assert f"{demo[12].id} photo 1: the server answered with HTTP status 404" in reasons
    assert f"{demo[13].id} photo 1: that link is not an image (application/pdf)" in reasons
    assert f"{demo[14].id} photo 1" in reasons
    assert f"{demo[15].id} photo 1: the server did not send the image within 3 s" in reasons
    assert summary.counts["not_added"] == 4


@pytest.mark.parametrize("kind", ["atom", "tsv", "csv"])
async def test_every_format_syncs_the_same_catalogue(
    kind: str, sync: Syncer, engine: SearchEngine, demo: list[ShopItem]
) -> None:
    sync.kind = kind
    items = changed(demo[:8], 2, availability="out_of_stock")
    summary = await sync(items)
    assert summary.status == "ok", summary
    assert summary.counts["added"] == 8
    products = {p.sku: p for p in engine.catalog.products()}
    assert set(products) == {item.id for item in items}
    assert products[items[0].id].category == items[0].category
    assert products[items[0].id].url == items[0].link
    assert engine.catalog.require(items[2].id).in_stock is False


async def test_variants_are_one_product_with_every_colour_photo(
    sync: Syncer, engine: SearchEngine, demo: list[ShopItem]
) -> None:
    colours = [
        replace(demo[n], id=f"RUNNER-{colour}", group="RUNNER", color=colour, price=price)
        for n, colour, price in [
            (0, "red", "80 EUR"),
            (1, "blue", "60 EUR"),
            (2, "black", "70 EUR"),
        ]
    ]
    summary = await sync([*colours, demo[3]])
    assert summary.status == "ok", summary
    assert {p.sku for p in engine.catalog.products()} == {"RUNNER", demo[3].id}
    runner = engine.catalog.require("RUNNER")
    assert len(runner.images) == 3
    assert runner.price == Decimal("60.00")
    assert runner.name == demo[0].title
    # A customer's photo of the blue one finds the one product, once.
    found = engine.searcher.search_image(shop_photo(sync, demo[1]))
    assert [item.product.sku for item in found.items].count("RUNNER") == 1


async def test_the_feeds_colour_wins_over_the_photos_and_an_unknown_one_is_reported(
    sync: Syncer, engine: SearchEngine, demo: list[ShopItem]
) -> None:
    # footwear_0002 is red to the eye and to the descriptor, footwear_0000 black
    # (tests/test_colour.py): the shop calls the red one "Navy Blue", and the others words that
    # are no colour we know.
    variants = [
        replace(demo[n], id=f"PUMP-{n}", group="PUMP", color=colour)
        for n, colour in [(2, "Navy Blue"), (0, "Sparkle"), (4, "Galaxy")]
    ]
    summary = await sync(variants)
    assert summary.status == "ok", summary
    pump = engine.catalog.require("PUMP")
    named = {image.content_hash: image.colour_name for image in pump.images}
    photo = {n: hashlib.sha256(shop_photo(sync, demo[n])).hexdigest() for n in (2, 0)}
    assert named[photo[2]] == "navy"  # the feed's word, through the synonyms
    assert named[photo[0]] == "black"  # the photo's own colour, kept
    # Both unknown words are reported against their rows, as one kind of problem.
    kinds = problem_kinds(summary.problems)
    assert len(kinds) == 1 and "is not a colour name or synonym we know" in kinds[0][0]
    assert [label.split("(id ")[1] for label in kinds[0][1]] == ["'PUMP-0')", "'PUMP-4')"]
    assert summary.counts["skipped_rows"] == 0


def shop_photo(sync: Syncer, item: ShopItem) -> bytes:
    return sync.shop.files[item.image].body


def test_the_command_line_dry_run(
    settings: Settings, shop: ShopServer, demo: list[ShopItem], tmp_path: Path
) -> None:
    import argparse
    import io

    from bench.fake_shop import feed_bytes
    from cli.sync import EXIT_OK, register, run

    path = tmp_path / "feed.tsv"
    good = feed_bytes("tsv", demo[:3], shop.base).decode()
    header, *rows = good.splitlines()
    first, second = rows[0].split("\t"), rows[1].split("\t")
    bad = ["\t".join([f"BAD {n}", *first[1:]]).replace("in_stock", "maybe") for n in range(7)]
    untitled = "\t".join(["NO TITLE", "", *second[2:]])  # id, title, ...
    path.write_text("\n".join([header, *rows, *bad, untitled]) + "\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = io.StringIO()
    report = tmp_path / "report.tsv"
    args = ["sync", str(path), "--dry-run", "-q", "--report", str(report)]
    code = run(parser.parse_args(args), settings, out)
    assert code == EXIT_OK
    text = out.getvalue()
    assert text.startswith("dry-run: dry run: nothing changed\n")
    assert "add 3" in text
    assert "8 problems of 2 kinds:\n" in text
    assert "  7 × availability … is not one of" in text and "(+2 more)" in text
    assert "  1 × lacks the required attribute(s) title: line 12 (id 'NO TITLE')\n" in text
    lines = report.read_text().splitlines()
    assert lines[0] == "row\treason" and len(lines) == 9
    assert lines[1].startswith("line 5 (id 'BAD 0')\tavailability 'maybe' is not one of")
    path.write_text("\n".join([header, *bad]) + "\n")
    out = io.StringIO()
    assert run(parser.parse_args(["sync", str(path), "--dry-run", "-q"]), settings, out) == 3
    assert out.getvalue().startswith("refused: dry run: the feed lists no usable product")
    missing = parser.parse_args(["sync", str(tmp_path / "nope.xml"), "-q"])
    out = io.StringIO()
    assert run(missing, settings, out) == 1
    assert "failed: the feed could not be read: there is no feed file" in out.getvalue()


async def test_two_syncs_at_once_one_runs_the_other_is_told(
    sync: Syncer, engine: SearchEngine, demo: list[ShopItem]
) -> None:
    import asyncio

    first, second = await asyncio.gather(sync(demo[:4]), sync(demo[:4]))
    assert sorted([first.status, second.status]) == ["busy", "ok"]
    busy = first if first.status == "busy" else second
    assert busy.message.startswith("a sync is already running")
    assert len(engine.catalog.products()) == 4


def test_the_problems_line_takes_each_languages_plural_forms() -> None:
    from feed import render_summary
    from feed.sync import SyncSummary
    from lookalike.i18n import translator

    def problems_lines(count: int, kinds: int, language: str) -> list[str]:
        problems = [(f"row {i}", f"reason {i % kinds}") for i in range(count)]
        text = render_summary(SyncSummary("failed", "x", problems=problems), t=translator(language))
        return [line for line in text.splitlines() if "×" not in line][1:-1]

    assert problems_lines(1, 1, "en") == ["1 problem of 1 kind:"]
    assert problems_lines(3, 2, "en") == ["3 problems of 2 kinds:"]
    assert problems_lines(1, 1, "ru") == ["1 проблема 1 вида:"]
    assert problems_lines(3, 2, "ru") == ["3 проблемы 2 видов:"]
    assert problems_lines(21, 21, "ru") == ["21 проблема 21 вида:", "  ... и ещё 11 видов"]
    assert problems_lines(22, 12, "ru") == ["22 проблемы 12 видов:", "  ... и ещё 2 вида"]
    assert problems_lines(1, 1, "es") == ["1 problema de 1 tipo:"]
    assert problems_lines(5, 5, "fa") == ["۵ مشکل از ۵ نوع:"]
