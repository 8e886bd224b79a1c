"""The page, the widget and the API in the visitor's language: /i18n.json and problem details
by Accept-Language, and the page in a real Chromium in Persian (right to left, at phone width,
screenshot) and in Russian."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import httpx

from tests.web.server import LiveServer
from tests.web.test_page import CHROMIUM, cards, wait_for_images, wait_for_results
from tests.web.test_search_api import assert_problem

assert CHROMIUM  # test_page skips this module too when Chromium is missing

from playwright.sync_api import BrowserContext  # noqa: E402

from tests.web.test_page import browser  # noqa: E402, F401  (the fixture)

PHOTO = "search_image_01.jpg"


def test_page_words_follow_lang_then_accept_language(server: LiveServer) -> None:
    with server.client() as client:
        persian = client.get("/i18n.json", headers={"Accept-Language": "fa-IR,fa;q=0.9,en;q=0.5"})
        assert persian.headers["content-language"] == "fa"
        body = persian.json()
        assert body["direction"] == "rtl" and body["messages"]["Choose a photo"] == "انتخاب عکس"
        assert body["categories"]["rain_boot"] == "چکمه بارانی"
        russian = client.get("/i18n.json?lang=ru", headers={"Accept-Language": "fa"}).json()
        assert russian["language"] == "ru" and russian["direction"] == "ltr"
        # No language we have: English, every message its own English text.
        english = client.get("/i18n.json", headers={"Accept-Language": "de-DE, pt"}).json()
        assert english["language"] == "en"
        assert all(key == value for key, value in english["messages"].items())


def test_problem_details_in_the_requests_language(server: LiveServer) -> None:
    gone = "/api/v1/searches/nosuchtoken123"
    with server.client() as client:
        body = assert_problem(client.get(gone, headers={"Accept-Language": "ru"}), 404)
        assert body["detail"] == (
            "таких результатов нет (поиски хранятся 90 дн.; более старая ссылка больше не работает)"
        )
        spanish = client.post(
            "/api/v1/search",
            files={"photo": ("notes.txt", b"hello", "text/plain")},
            headers={"Accept-Language": "es-ES,es;q=0.9"},
        )
        assert assert_problem(spanish, 415)["detail"] == (
            "la foto llegó como text/plain; envía una imagen JPEG, PNG o WebP"
        )
        assert spanish.headers["content-language"] == "es"
        english: httpx.Response = client.get(gone)
        assert_problem(english, 404, "no such shared results", "90 days")


def test_the_page_in_persian_right_to_left_on_a_phone(
    browser: BrowserContext,  # noqa: F811
    server: LiveServer,
    footwear: Path,
    tmp_path: Path,
) -> None:
    errors: list[str] = []
    page = browser.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + "/?lang=fa")
    page.wait_for_selector(".lk-widget .lk-file", state="attached")
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == [
        "fa",
        "rtl",
    ]
    assert page.text_content("h1") == "مشابهش را پیدا کنید"
    assert page.input_value("#lk-language") == "fa"
    page.set_input_files(".lk-file", str(footwear / "queries" / PHOTO))
    wait_for_results(page, "۸ کالای مشابه.")
    wait_for_images(page)
    found = cards(page)
    assert len(found) == 8
    assert all(re.search("[۰-۹]", card["priceText"]) for card in found)  # Persian digits
    # Right to left: the first card is on the right; nothing overlaps or scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = [page.locator(".lk-card").nth(i).bounding_box() for i in range(4)]
    assert all(boxes)
    first, second, third = boxes[0], boxes[1], boxes[2]
    assert first and second and third
    assert first["y"] == second["y"] and first["x"] > second["x"] + second["width"] - 1
    assert third["y"] >= first["y"] + first["height"]
    for selector in (".lk-drop", ".lk-filters", ".lk-status"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
    page.screenshot(path=str(tmp_path / "page-fa-phone.png"), full_page=True)
    assert errors == []


def test_the_page_in_russian_from_the_browsers_language(
    browser: BrowserContext,  # noqa: F811
    server: LiveServer,
    footwear: Path,
) -> None:
    page = browser.new_page()
    page.set_extra_http_headers({"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    page.goto(server.url + "/")
    page.wait_for_selector(".lk-widget .lk-file", state="attached")
    assert page.text_content("h1") == "Найдите похожее"
    assert page.evaluate("document.documentElement.dir") == "ltr"
    page.set_input_files(".lk-file", str(footwear / "queries" / PHOTO))
    wait_for_results(page, "Найдено похожих товаров: 8.")
    found = cards(page)
    for card in found:  # "67,99 €": a decimal comma, the sign after a no-break space
        match = re.fullmatch(r"(\d+),(\d\d)\s€", card["priceText"])
        assert match, card["priceText"]
        assert Decimal(f"{match[1]}.{match[2]}") == Decimal(card["price"])
    page.select_option(".lk-category", "rain_boot")
    assert page.locator(".lk-category option:checked").text_content() == "резиновые сапоги"
    page.click(".lk-apply")
    page.wait_for_function(
        "document.querySelector('.lk-results-title').textContent"
        " === 'Похожие товары: резиновые сапоги'"
    )
    # Switching the language keeps the page where it is and redraws it in the chosen one.
    page.select_option("#lk-language", "es")
    page.wait_for_url(re.compile(r"lang=es"))
    page.wait_for_selector(".lk-widget .lk-file", state="attached")
    assert page.text_content("h1") == "Encuentra un parecido"
