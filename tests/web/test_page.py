"""The search page in a real headless Chromium (Debian's /usr/bin/chromium driven by
Playwright): upload a photo, see 8 cards with prices, narrow by category, "cheaper than this
one", open the shared link; screenshots on a desktop and a phone-sized viewport."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.web.imagehost import image_host
from tests.web.server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000

if not CHROMIUM.is_file():
    _MISSING = (
        "Chromium is not installed at /usr/bin/chromium "
        "(apt-get install -y --no-install-recommends chromium)"
    )
    if os.environ.get("CI"):  # on a laptop the page may go untested; in CI it must not
        pytest.fail(f"{_MISSING}: CI must test the page in a browser", pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)

from playwright.sync_api import BrowserContext, Page, Route, sync_playwright  # noqa: E402
from playwright.sync_api import Error as PlaywrightError  # noqa: E402


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrowserContext]:
    """Chromium; its Content-Security-Policy checks are off (Playwright's waits evaluate
    strings, which the page's policy forbids) unless the test's param says "enforce-csp"."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1200, "height": 900},
            bypass_csp=getattr(request, "param", None) != "enforce-csp",
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


def cards(page: Page) -> list[dict[str, str]]:
    return list(
        page.eval_on_selector_all(
            ".lk-card",
            """cards => cards.map(card => ({
                sku: card.dataset.sku, category: card.dataset.category,
                price: card.dataset.price,
                priceText: card.querySelector('.lk-card-price').textContent,
                alt: card.querySelector('img').alt,
                name: card.querySelector('.lk-card-name').textContent,
                link: (card.querySelector('a') || {}).href || ''}))""",
        )
    )


def wait_for_results(page: Page, status_text: str) -> None:
    page.wait_for_function(  # the widget is drawn once its words have come (/i18n.json)
        "text => { const status = document.querySelector('.lk-status');"
        " return status && status.textContent.includes(text)"
        " && !document.querySelector('.lk-widget').hasAttribute('aria-busy'); }",
        arg=status_text,
    )


def wait_for_images(page: Page) -> None:
    page.wait_for_function(
        "[...document.querySelectorAll('.lk-card img')].every(i => i.complete && i.naturalWidth)"
    )


def test_search_by_photo_filter_cheaper_and_share(
    browser: BrowserContext, server: LiveServer, footwear: Path, tmp_path: Path
) -> None:
    errors: list[str] = []
    page = browser.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + "/")
    # Every form control has a label a screen reader reads.
    unlabelled = page.eval_on_selector_all(
        "input, select", "els => els.filter(e => !e.labels || !e.labels.length).length"
    )
    assert unlabelled == 0

    page.set_input_files(".lk-file", str(footwear / "queries" / "search_image_01.jpg"))
    wait_for_results(page, "8 lookalikes")
    first = cards(page)
    assert len(first) == 8
    for card in first:
        assert any(ch.isdigit() for ch in card["priceText"]) and Decimal(card["price"]) > 0
        assert card["alt"] and card["link"].startswith("https://shop.example/products/")
    wait_for_images(page)
    page.screenshot(path=str(tmp_path / "page-desktop.png"), full_page=True)

    page.select_option(".lk-category", "heel")
    page.click(".lk-apply")
    page.wait_for_function(
        "document.querySelector('.lk-results-title').textContent.includes('in heel')"
    )
    wait_for_results(page, "lookalike")
    heels = cards(page)
    assert heels and {card["category"] for card in heels} == {"heel"}

    most_expensive = max(heels, key=lambda card: Decimal(card["price"]))
    page.click(f'.lk-card[data-sku="{most_expensive["sku"]}"] .lk-cheaper')
    page.wait_for_function(  # the product's name, not its SKU
        "name => document.querySelector('.lk-results-title').textContent.includes("
        "'cheaper than ' + name)",
        arg=most_expensive["name"],
    )
    cheaper = cards(page)
    assert cheaper, "there are cheaper heels"
    assert all(Decimal(c["price"]) < Decimal(most_expensive["price"]) for c in cheaper)

    share_url = page.input_value(".lk-share-url")
    assert "?s=" in share_url and page.url == share_url  # the address bar is shareable too
    shared = browser.new_page()
    shared.goto(share_url)
    wait_for_results(shared, "Shared results")
    assert [c["sku"] for c in cards(shared)] == [c["sku"] for c in cheaper]
    assert errors == []


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SERVER_DOWN = {
    "status": 503,
    "headers": {"Content-Type": "application/problem+json"},
    "body": '{"type": "/problems/unavailable", "status": 503, "detail": "model loading"}',
}


def test_a_file_that_is_not_a_photo_and_a_server_that_is_down(
    browser: BrowserContext, server: LiveServer, footwear: Path, tmp_path: Path
) -> None:
    """The error state: after a PDF the earlier results are gone, no broken preview, a sentence
    without MIME types, and the PDF is forgotten (the filters do not send it again); a server
    that answers 503 gives "Try again", which searches again with the same photo."""
    page = browser.new_page()
    page.goto(server.url + "/")
    page.set_input_files(".lk-file", str(footwear / "queries" / "search_image_01.jpg"))
    wait_for_results(page, "8 lookalikes")

    pdf = tmp_path / "catalogue.pdf"
    pdf.write_bytes(PDF)
    page.set_input_files(".lk-file", str(pdf))
    page.wait_for_function(
        "document.querySelector('.lk-status').classList.contains('lk-error')"
        " && !document.querySelector('.lk-widget').hasAttribute('aria-busy')"
    )
    message = page.text_content(".lk-status") or ""
    assert "not a photo we can read" in message and "application/" not in message
    assert page.locator(".lk-results-section").is_hidden() and not cards(page)
    assert page.locator(".lk-preview").is_hidden()
    assert page.locator(".lk-retry").is_hidden()  # the same PDF again would fail the same way
    page.screenshot(path=str(tmp_path / "page-error.png"), full_page=True)
    page.click(".lk-apply")
    assert "Choose a photo first" in (page.text_content(".lk-status") or "")

    answers = [SERVER_DOWN]  # the next search is answered 503, the one after by the server
    page.route(
        "**/api/v1/search",
        lambda route: route.fulfill(**answers.pop()) if answers else route.continue_(),
    )
    page.set_input_files(".lk-file", str(footwear / "queries" / "search_image_02.jpg"))
    page.wait_for_selector(".lk-retry", state="visible")
    assert "not available right now" in (page.text_content(".lk-status") or "")
    page.click(".lk-retry")
    wait_for_results(page, "8 lookalikes")
    assert len(cards(page)) == 8 and page.locator(".lk-retry").is_hidden()


def test_a_late_answer_to_an_older_photo_never_replaces_a_newer_one(
    browser: BrowserContext, server: LiveServer, footwear: Path
) -> None:
    """Photo 1's answer is held back (a slow server) while photo 2 is chosen: photo 2's request
    aborts photo 1's, photo 2's results are drawn, and releasing photo 1's answer changes
    nothing."""
    page = browser.new_page()
    held: list[Route] = []
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)  # answered only at the end of the test

    page.route("**/api/v1/search", hold_the_first)
    page.goto(server.url + "/")
    page.set_input_files(".lk-file", str(footwear / "queries" / "search_image_01.jpg"))
    page.wait_for_function("document.querySelector('.lk-widget').hasAttribute('aria-busy')")
    page.set_input_files(".lk-file", str(footwear / "queries" / "search_image_02.jpg"))
    wait_for_results(page, "8 lookalikes")
    newer = cards(page)
    assert held and any(url.endswith("/api/v1/search") for url in failed)
    with contextlib.suppress(PlaywrightError):  # the browser has given that request up
        held[0].continue_()
    wait_for_results(page, "8 lookalikes")
    assert cards(page) == newer


def test_all_categories_is_offered_and_sent(
    browser: BrowserContext, server: LiveServer, footwear: Path
) -> None:
    """The category list offers the guess (the default) and all categories; the latter sends
    all_categories, so the results are not narrowed to a guessed category."""
    page = browser.new_page()
    page.goto(server.url + "/")
    with page.expect_response("**/api/v1/search") as guessed:
        page.set_input_files(".lk-file", str(footwear / "queries" / "search_image_01.jpg"))
    assert guessed.value.json()["category_inferred"]  # this photo's lookalikes share one
    wait_for_results(page, "8 lookalikes")
    assert "(our guess)" in (page.text_content(".lk-results-title") or "")
    labels = page.eval_on_selector_all(".lk-category option", "os => os.map(o => o.textContent)")
    assert labels[:2] == ["Our guess from the photo", "All categories"]
    page.select_option(".lk-category", "*")
    # (Chromium gives Playwright no body of a multipart upload: the answer says what was sent.)
    with page.expect_response("**/api/v1/search") as everywhere:
        page.click(".lk-apply")
    answer = everywhere.value.json()
    assert answer["category"] is None and not answer["category_inferred"]
    wait_for_results(page, "8 lookalikes")
    assert page.text_content(".lk-results-title") == "Lookalikes"


@pytest.mark.parametrize("browser", ["enforce-csp"], indirect=True)
def test_the_page_runs_under_its_content_security_policy(
    browser: BrowserContext, server: LiveServer, footwear: Path
) -> None:
    """The page's own scripts, styles and photo preview are all the policy allows: a search
    shows its cards, and the browser reports no violation."""
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(server.url + "/")
    page.wait_for_selector(".lk-widget .lk-file", state="attached")  # the inline mount ran
    page.set_input_files(".lk-file", str(footwear / "queries" / "search_image_01.jpg"))
    page.wait_for_selector(".lk-card >> nth=7")
    page.wait_for_selector(".lk-preview[src^='blob:']", state="attached")
    assert not [line for line in console if "Content Security Policy" in line], console


def test_page_on_a_phone(
    browser: BrowserContext, server: LiveServer, footwear: Path, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + "/")
    camera = page.locator(".lk-camera")
    assert camera.get_attribute("capture") == "environment"
    page.set_input_files(".lk-camera", str(footwear / "queries" / "search_image_01.jpg"))
    wait_for_results(page, "8 lookalikes")
    wait_for_images(page)
    # Two cards a row on a phone: the page does not scroll sideways.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    boxes = [page.locator(".lk-card").nth(i).bounding_box() for i in range(2)]
    assert boxes[0] and boxes[1] and boxes[0]["y"] == boxes[1]["y"]
    page.screenshot(path=str(tmp_path / "page-phone.png"), full_page=True)


def test_keyboard_only_reaches_the_photo_picker_and_filters(
    browser: BrowserContext, server: LiveServer
) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    # The widget is drawn once its words have come (/i18n.json).
    page.wait_for_selector(".lk-widget .lk-file", state="attached")
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.className"))
    assert any("lk-file" in name for name in reached)
    assert any("lk-category" in name for name in reached)
    assert any("lk-apply" in name for name in reached)


def test_embed_js_mounts_the_widget_in_a_host_page(
    browser: BrowserContext, server: LiveServer, footwear: Path
) -> None:
    """/static/embed.html is a host page with the documented snippet (a div and embed.js)."""
    page = browser.new_page()
    page.goto(server.url + "/static/embed.html")
    page.wait_for_selector("#lookalike-demo.lk-widget .lk-file", state="attached")
    page.set_input_files(
        "#lookalike-demo .lk-file", str(footwear / "queries" / "search_image_02.jpg")
    )
    wait_for_results(page, "8 lookalikes")
    assert len(cards(page)) == 8
    assert "?s=" not in page.url  # embedded: the host page's address is left alone


SHOP_SHARE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Lookalikes at our shop</title></head>
<body><div id="lookalike"></div>
<script src="/embed.js" data-target="#lookalike" data-share-page="/shop/lookalikes.html"
  async></script></body></html>"""


def test_the_widgets_share_link_leads_to_the_shops_page(
    browser: BrowserContext, server: LiveServer, footwear: Path
) -> None:
    """embed.js with data-share-page: the share link is that page of the shop with
    ?lookalike=TOKEN, and the widget embedded there shows the shared results. (The shop's page
    is served on the server's origin by the browser's route, so no CORS setting is needed.)"""
    shop_page = server.url + "/shop/lookalikes.html"
    browser.route(
        shop_page + "*",
        lambda route: route.fulfill(content_type="text/html", body=SHOP_SHARE_PAGE),
    )
    page = browser.new_page()
    page.goto(shop_page)
    page.wait_for_selector("#lookalike.lk-widget .lk-file", state="attached")
    page.set_input_files("#lookalike .lk-file", str(footwear / "queries" / "search_image_02.jpg"))
    wait_for_results(page, "8 lookalikes")
    found = cards(page)
    share_url = page.input_value(".lk-share-url")
    assert share_url.startswith(shop_page + "?lookalike=") and page.url == shop_page
    shared = browser.new_page()
    shared.goto(share_url)
    wait_for_results(shared, "Shared results")
    assert [c["sku"] for c in cards(shared)] == [c["sku"] for c in found]


HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>A shop</title>
<style>
  body { font-family: Georgia, serif; background: rgb(255, 250, 240); margin: 30px;
         color: rgb(40, 20, 10); }
  input { border: 3px solid rgb(200, 0, 0); }
</style></head>
<body>
  <h1>Our shoes</h1>
  <label>Your review <textarea class="review"></textarea></label>
  <input class="newsletter" type="email">
  <div id="lookalike"></div>
  <script src="{api}/embed.js" data-target="#lookalike" async></script>
</body></html>"""
HOST_STYLE = """() => {
  const body = getComputedStyle(document.body);
  const input = getComputedStyle(document.querySelector('.newsletter'));
  return [body.fontFamily, body.backgroundColor, body.margin, body.color, input.borderTopColor];
}"""


def test_the_widget_leaves_the_shop_page_alone_and_says_when_it_cannot_search(
    browser: BrowserContext, server: LiveServer, footwear: Path, tmp_path: Path
) -> None:
    """A shop's page on another origin (its own server on another port) that the server does
    not allow: the widget mounts without restyling the page, and a search says so in a
    sentence (the browser refuses the cross-origin request; fetch's "Failed to fetch" is not
    what the shopper reads)."""
    shop_page = HOST_PAGE.replace("{api}", server.url).encode()
    with image_host({"/shop.html": ("text/html; charset=utf-8", shop_page)}) as shop:
        _widget_on_a_shop_page(browser, f"{shop}/shop.html", footwear, tmp_path)


def _widget_on_a_shop_page(
    browser: BrowserContext, host: str, footwear: Path, tmp_path: Path
) -> None:
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(host)
    # The shop's own rules, as HOST_PAGE sets them: what the widget must leave alone.
    shops = ["Georgia, serif", "rgb(255, 250, 240)", "30px", "rgb(40, 20, 10)", "rgb(200, 0, 0)"]
    page.wait_for_selector("#lookalike.lk-widget .lk-file", state="attached")
    page.wait_for_function(
        "[...document.styleSheets].some(s => (s.href || '').includes('style.css'))"
    )
    assert page.evaluate(HOST_STYLE) == shops  # font, background, margins, the shop's inputs

    page.set_input_files("#lookalike .lk-file", str(footwear / "queries" / "search_image_02.jpg"))
    page.wait_for_function(
        "document.querySelector('.lk-status').classList.contains('lk-error')"
        " && !document.querySelector('.lk-widget').hasAttribute('aria-busy')"
    )
    message = page.text_content(".lk-status") or ""
    assert "not available" in message and "fetch" not in message.lower()
    assert any("WEB_CORS_ORIGINS" in line for line in console)
    assert page.evaluate(HOST_STYLE) == shops
    page.screenshot(path=str(tmp_path / "widget-on-a-shop-page.png"), full_page=True)
