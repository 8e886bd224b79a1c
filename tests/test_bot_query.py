"""bot.query: captions, deep-link payloads and callback data, parsed strictly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.query import (
    CallbackAction,
    CaptionFilters,
    DeepLink,
    parse_amount,
    parse_callback,
    parse_caption,
    parse_deep_link,
)

CATEGORIES = ["boots", "sneakers", "dress", "running_shoes", "shoes", "t-shirt", "sandal"]


@pytest.mark.parametrize(
    ("caption", "category", "max_price"),
    [
        (None, None, None),
        ("", None, None),
        ("   ", None, None),
        ("boots", "boots", None),
        ("Boots!", "boots", None),
        ("a boot like this", "boots", None),
        ("SNEAKERS under 60", "sneakers", Decimal("60")),
        ("under 60", None, Decimal("60")),
        ("under 59.90", None, Decimal("59.90")),
        ("under 59,90", None, Decimal("59.90")),
        ("below 60€", None, Decimal("60")),
        ("under €60", None, Decimal("60")),
        ("under $ 45", None, Decimal("45")),
        ("less than 100 eur", None, Decimal("100")),
        ("cheaper than 80", None, Decimal("80")),
        ("max 70", None, Decimal("70")),
        ("max. 70", None, Decimal("70")),
        ("up to 1,000", None, Decimal("1000")),
        ("under 1.000,50", None, Decimal("1000.50")),
        ("under 1 200", None, Decimal("1200")),
        ("<60", None, Decimal("60")),
        ("<= 60 boots", "boots", Decimal("60")),
        ("≤60", None, Decimal("60")),
        ("boots 60 or less", "boots", Decimal("60")),
        ("dress 80€ max", "dress", Decimal("80")),
        ("dresses", "dress", None),
        ("sandals please", "sandal", None),
        ("t-shirt", "t-shirt", None),
        ("T shirts", "t-shirt", None),
        # The longest category named wins; "running shoes" is not just "shoes".
        ("running shoes under 90", "running_shoes", Decimal("90")),
        ("running_shoes", "running_shoes", None),
        ("shoes", "shoes", None),
        # Not a category, not a price limit.
        ("size 42", None, None),
        ("hello there", None, None),
        ("bootsy", None, None),
        ("maxi 60", None, None),
        ("climax 60", None, None),
        ("under sixty", None, None),
        ("under 123456789012", None, None),
        ("<b>boots</b> & co", "boots", None),
    ],
)
def test_parse_caption(
    caption: str | None, category: str | None, max_price: Decimal | None
) -> None:
    assert parse_caption(caption, CATEGORIES) == CaptionFilters(
        category=category, max_price=max_price
    )


def test_parse_caption_without_categories_still_reads_the_price() -> None:
    assert parse_caption("boots under 60", []) == CaptionFilters(max_price=Decimal("60"))


def test_parse_caption_price_is_not_read_as_a_category() -> None:
    assert parse_caption("under 60", ["60"]).category is None


def test_parse_caption_copes_with_a_long_caption() -> None:
    caption = "lovely " * 2000 + "boots under 60"
    parse_caption(caption, CATEGORIES)  # quick, no error (only the first 1024 chars count)


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("60", Decimal("60")),
        ("59.9", Decimal("59.9")),
        ("59,90", Decimal("59.90")),
        ("1,000", Decimal("1000")),
        ("1.000.000", Decimal("1000000")),
        ("abc", None),
        ("", None),
    ],
)
def test_parse_amount(text: str, amount: Decimal | None) -> None:
    assert parse_amount(text) == amount


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("p_12", DeepLink("p", 12)),
        ("r_AbCd-_0123456789", DeepLink("r", 0, "AbCd-_0123456789")),
        ("r_7", None),  # a bare search id: results are shared by unguessable token only
        ("r_AbCd-_012345678", None),  # 15 characters
        ("r_AbCd/_0123456789", None),
        ("p_0", None),
        ("p_012", None),
        ("x_1", None),
        ("p_", None),
        ("p_1\n", None),
        ("../etc/passwd", None),
        ("r_" + "9" * 13, None),
        ("p_1" + " " * 100, None),
    ],
)
def test_parse_deep_link(payload: str, expected: DeepLink | None) -> None:
    assert parse_deep_link(payload) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("fb:5:up", CallbackAction("fb", 5, "up")),
        ("fb:5:down", CallbackAction("fb", 5, "down")),
        ("cheaper:9", CallbackAction("cheaper", 9, None)),
        ("all:9", CallbackAction("all", 9, None)),
        ("fb:5", None),
        ("fb:5:sideways", None),
        ("cheaper:abc", None),
        ("cheaper:9:up", None),
        ("cheaper:0", None),
        ("cheaper:-1", None),
        ("cheaper:9\n", None),
        ("drop table", None),
        ("", None),
        (None, None),
        (42, None),
        ("fb:" + "1" * 70 + ":up", None),
    ],
)
def test_parse_callback(data: object, expected: CallbackAction | None) -> None:
    assert parse_callback(data) == expected


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("red heels under 80", CaptionFilters(max_price=Decimal("80"), colour="red")),
        ("in black", CaptionFilters(colour="black")),
        ("Navy blue boots", CaptionFilters(category="boots", colour="navy")),
        ("бордовые", CaptionFilters(colour="red")),
        ("boots under 60", CaptionFilters(category="boots", max_price=Decimal("60"))),
    ],
)
def test_parse_caption_reads_a_colour(caption: str, expected: CaptionFilters) -> None:
    assert parse_caption(caption, CATEGORIES) == expected
