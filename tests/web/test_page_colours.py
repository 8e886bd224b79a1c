"""Colour on the page, in a real Chromium: every card shows its product's colour (a swatch and
the name, in the page's language), and the colour chips send colour= with the search, so the
chosen colour's lookalikes come first; in Persian at phone width, right to left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.web.server import LiveServer
from tests.web.test_page import CHROMIUM, wait_for_images, wait_for_results

assert CHROMIUM  # test_page skips this module too when Chromium is missing

from playwright.sync_api import BrowserContext, Page  # noqa: E402

from tests.web.test_page import browser  # noqa: E402, F401  (the fixture)

PHOTO = "search_image_01.jpg"
ENGLISH_NAMES = {
    "black", "white", "grey", "beige", "brown", "tan", "red", "pink", "orange", "yellow",
    "green", "blue", "navy", "purple", "gold", "silver", "multicolour",
}  # fmt: skip


def colours_shown(page: Page) -> list[dict[str, Any]]:
    """Each card's colour as the page draws it: its code (data-colour), the swatch's code, the
    name a reader sees and the sentence a screen reader reads."""
    return list(
        page.eval_on_selector_all(
            ".lk-card",
            """cards => cards.map(card => {
                const line = card.querySelector('.lk-card-colour');
                return {code: card.dataset.colour,
                    swatch: line && line.querySelector('.lk-swatch').dataset.colour,
                    name: line && line.querySelector('.lk-card-colour-name').textContent,
                    read: line && line.querySelector('.lk-visually-hidden').textContent};
            })""",
        )
    )


def chips(page: Page) -> list[dict[str, str]]:
    return list(
        page.eval_on_selector_all(
            ".lk-chip",
            """chips => chips.map(chip => ({code: chip.dataset.colour,
                pressed: chip.getAttribute('aria-pressed'), tag: chip.tagName,
                name: chip.textContent.trim()}))""",
        )
    )


def test_cards_show_their_colour_and_a_chip_puts_that_colour_first(
    browser: BrowserContext,  # noqa: F811
    server: LiveServer,
    footwear: Path,
    tmp_path: Path,
) -> None:
    errors: list[str] = []
    page = browser.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + "/")
    page.wait_for_selector(".lk-chip >> nth=17", state="attached")
    offered = chips(page)
    assert [chip["code"] for chip in offered][:2] == ["", "black"] and len(offered) == 18
    assert offered[0] == {"code": "", "pressed": "true", "tag": "BUTTON", "name": "Any colour"}
    assert all(chip["pressed"] == "false" and chip["name"] for chip in offered[1:])

    page.set_input_files(".lk-file", str(footwear / "queries" / PHOTO))
    wait_for_results(page, "8 lookalikes")
    before = colours_shown(page)
    assert len(before) == 8
    for card in before:
        assert card["code"] in ENGLISH_NAMES and card["swatch"] == card["code"]
        assert card["name"] == card["code"] and card["read"] == f"Colour: {card['code']}"
    # A colour among these lookalikes that is not the first's: asked for, it comes first.
    wanted = next(c["code"] for c in reversed(before) if c["code"] != before[0]["code"])
    with page.expect_response("**/api/v1/search"):
        page.click(f'.lk-chip[data-colour="{wanted}"]')
    page.wait_for_function(
        "c => document.querySelector('.lk-results-title').textContent.endsWith(c + ' first')",
        arg=wanted,
    )
    wait_for_results(page, "lookalikes")
    after = [card["code"] for card in colours_shown(page)]
    first = after.index(next(c for c in after if c != wanted)) if set(after) != {wanted} else 8
    assert after[0] == wanted and wanted not in after[first:]  # that colour first, then others
    assert first >= sum(card["code"] == wanted for card in before)
    assert [chip["pressed"] for chip in chips(page) if chip["code"] == wanted] == ["true"]
    assert page.text_content(".lk-colour-chosen") == wanted
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / "web-page-colours.png"), full_page=True)

    with page.expect_response("**/api/v1/search"):  # "Any colour": today's order again
        page.click('.lk-chip[data-colour=""]')
    page.wait_for_function("!document.querySelector('.lk-results-title').textContent"
                           ".endsWith(' first')")  # fmt: skip
    wait_for_results(page, "8 lookalikes")
    assert colours_shown(page) == before
    assert errors == []


def test_the_chips_are_one_tab_stop_and_the_arrow_keys_move_between_them(
    browser: BrowserContext,  # noqa: F811
    server: LiveServer,
) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector(".lk-chip >> nth=17", state="attached")
    reached = []
    for _ in range(20):  # from the top of the page to "Apply filters"
        page.keyboard.press("Tab")
        if "lk-apply" in page.evaluate("document.activeElement.className"):
            break
        reached.append(page.evaluate("document.activeElement.dataset.colour ?? null"))
    else:
        raise AssertionError("Tab never reached Apply")
    assert [code for code in reached if code is not None] == [""]  # "Any colour", once
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    assert [chip["code"] for chip in chips(page) if chip["pressed"] == "true"] == ["white"]
    assert page.text_content(".lk-colour-chosen") == "white"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.dataset.colour") == "multicolour"


def test_colour_chips_in_persian_on_a_phone(
    browser: BrowserContext,  # noqa: F811
    server: LiveServer,
    footwear: Path,
    tmp_path: Path,
) -> None:
    """Right to left at phone width: the chips wrap (no sideways scroll), their names and the
    cards' colours are Persian, and a chip still sends its colour."""
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + "/?lang=fa")
    page.wait_for_selector(".lk-chip >> nth=17", state="attached")
    assert page.evaluate("document.documentElement.dir") == "rtl"
    named = {chip["code"]: chip["name"] for chip in chips(page)}
    assert named[""] == "هر رنگی" and named["navy"] == "سرمه‌ای"
    page.focus('.lk-chip[data-colour=""]')
    page.keyboard.press("ArrowLeft")  # right to left: the next chip is on the left
    assert page.evaluate("document.activeElement.dataset.colour") == "black"
    page.set_input_files(".lk-file", str(footwear / "queries" / PHOTO))
    wait_for_results(page, "کالای مشابه")  # "{count} lookalikes."
    shown = colours_shown(page)
    wanted = shown[-1]["code"]
    with page.expect_response("**/api/v1/search"):
        page.click(f'.lk-chip[data-colour="{wanted}"]')
    page.wait_for_function(
        "name => document.querySelector('.lk-results-title').textContent.includes(name)",
        arg=named[wanted],
    )
    wait_for_results(page, "کالای مشابه")
    shown = colours_shown(page)
    assert shown[0]["code"] == wanted
    assert all(card["name"] == named[card["code"]] for card in shown)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / "web-page-colours-fa.png"), full_page=True)
