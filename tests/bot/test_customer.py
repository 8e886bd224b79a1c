"""Customers, end to end: the real Application over HTTP against the fake Bot API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_application, running
from bot.handlers import customer
from lookalike.settings import Settings
from search.featurizer import Featurizer
from search.fields import clean_product_fields
from search.service import SearchResult
from tests import images
from tests.bot.conftest import CUSTOMER_ID, OTHER_CUSTOMER_ID, BotHarness, bot_settings_for
from tests.conftest import open_test_service
from tests.fakebotapi import FILE_DOWNLOAD, ApiCall, FakeBotAPI

QUERY = "search_image_01.jpg"
PHOTO_METHODS = ("sendMediaGroup", "sendPhoto")


# ---------------------------------------------------------------------------------- helpers


def query_image(footwear: Path, name: str = QUERY) -> bytes:
    return (footwear / "queries" / name).read_bytes()


def to_chat(chat_id: int) -> Callable[[ApiCall], bool]:
    return lambda c: str(c.params.get("chat_id")) == str(chat_id)


def is_listing(chat_id: int) -> Callable[[ApiCall], bool]:
    """The message after the photos: the one with the feedback buttons."""

    def check(call: ApiCall) -> bool:
        markup = call.params.get("reply_markup") or {}
        data = [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]
        return call.ok and to_chat(chat_id)(call) and any(d and d.startswith("fb:") for d in data)

    return check


def buttons(call: ApiCall) -> list[dict[str, Any]]:
    return [b for row in call.params["reply_markup"]["inline_keyboard"] for b in row]


def callback_data(call: ApiCall, prefix: str) -> str:
    found = [
        str(b["callback_data"])
        for b in buttons(call)
        if str(b.get("callback_data", "")).startswith(prefix)
    ]
    assert found, f"no {prefix!r} button in {buttons(call)}"
    return found[0]


async def wait_count(bot: BotHarness, method: str, count: int, *, after: int) -> list[ApiCall]:
    """The first `count` calls of `method` after `after`, once there are that many."""
    for _ in range(600):
        found = [c for c in bot.api.calls[after:] if c.method == method]
        if len(found) >= count:
            return found[:count]
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"fewer than {count} {method} calls\n" + bot.api.describe_calls(after=after)
    )


def calls_to_chat(bot: BotHarness, chat_id: int, *, after: int = 0) -> list[ApiCall]:
    return [c for c in bot.api.calls[after:] if to_chat(chat_id)(c)]


def captions(photos: ApiCall) -> list[str]:
    if photos.method == "sendPhoto":
        return [str(photos.params["caption"])]
    return [str(item["caption"]) for item in photos.params["media"]]


async def results(
    bot: BotHarness, chat_id: int, *, after: int, timeout: float = 60.0
) -> tuple[ApiCall, ApiCall]:
    """(the album or single photo, the listing) sent to `chat_id` after `after`."""
    listing = await bot.wait_for(
        "sendMessage", after=after, predicate=is_listing(chat_id), timeout=timeout
    )
    photos = [
        c
        for c in bot.api.calls[after : listing.index]
        if c.method in PHOTO_METHODS and c.ok and to_chat(chat_id)(c)
    ]
    assert len(photos) == 1, bot.api.describe_calls(after=after)
    return photos[0], listing


async def search(
    bot: BotHarness, image: bytes, *, user_id: int = CUSTOMER_ID, caption: str | None = None
) -> tuple[ApiCall, ApiCall]:
    mark = bot.api.mark()
    bot.api.send_photo(user_id=user_id, image=image, caption=caption)
    return await results(bot, user_id, after=mark)


async def reply_text(bot: BotHarness, user_id: int, *, after: int) -> str:
    reply = await bot.reply_to(user_id, after=after)
    return str(reply.params["text"])


async def settle(bot: BotHarness, user_id: int = OTHER_CUSTOMER_ID) -> None:
    """Give the bot time to handle what was queued: a short pause, then a /help round trip
    (updates are fetched in order, so everything earlier has at least been picked up)."""
    await asyncio.sleep(0.3)
    mark = bot.api.mark()
    bot.api.send_text(user_id=user_id, text="/help")
    await bot.reply_to(user_id, after=mark)


@contextlib.asynccontextmanager
async def harness(
    settings: Settings, api: FakeBotAPI, extractor: Featurizer
) -> AsyncIterator[BotHarness]:
    """A bot with its own settings (the `bot` fixture's twin; use one or the other)."""
    service = open_test_service(settings, extractor)
    application = build_application(settings, service=service)
    try:
        async with running(application, poll_timeout=1):
            yield BotHarness(app=application, api=api, service=service, settings=settings)
    finally:
        service.close()


def set_product(bot: BotHarness, sku: str, **fields: Any) -> None:
    current = bot.service.require_product(sku)
    values: dict[str, Any] = {
        "sku": sku,
        "name": current.name,
        "price": current.price,
        "currency": current.currency,
        "url": current.url,
        "category": current.category,
    }
    values.update(fields)
    bot.service.update_product(clean_product_fields(**values))


def listing_search(bot: BotHarness, listing: ApiCall) -> SearchResult:
    """The logged search a listing shows (from its feedback button)."""
    search_id = int(callback_data(listing, "fb:").split(":")[1])
    found = bot.service.get_search(search_id)
    assert found is not None
    return found


async def direct_search(bot: BotHarness, image: bytes) -> SearchResult:
    return await asyncio.to_thread(bot.service.search_image, image)


# ---------------------------------------------------------------------------- /start, /help


async def test_start_and_help_explain_the_bot_and_menu_is_set(bot: BotHarness) -> None:
    assert [c["command"] for c in bot.api.commands][:2] == ["start", "help"]
    mark = bot.api.mark()
    bot.api.send_text(user_id=CUSTOMER_ID, text="/start")
    start = await reply_text(bot, CUSTOMER_ID, after=mark)
    assert "photo" in start and "similar" in start
    assert start.count("\n") <= 4
    mark = bot.api.mark()
    bot.api.send_text(user_id=CUSTOMER_ID, text="/help")
    help_text = await reply_text(bot, CUSTOMER_ID, after=mark)
    assert "caption" in help_text.lower() and "under 60" in help_text
    assert help_text.count("\n") <= 5


# ------------------------------------------------------------------------------- searching


async def test_query_photo_gives_album_of_8_and_list_with_buttons(
    bot: BotHarness, footwear: Path
) -> None:
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    album = await bot.wait_for("sendMediaGroup", after=mark)
    assert album.ok, album.description
    media = album.params["media"]
    assert len(media) == 8
    assert all(item["caption"].startswith(f"<b>{i}.</b>") for i, item in enumerate(media, 1))
    assert all("% similar" in item["caption"] for item in media)
    assert all("price on request" in item["caption"] for item in media)  # no prices yet
    assert album.photo_sources() == ["upload"] * 8
    action = bot.api.calls_to("sendChatAction")
    assert action and action[0].index > mark and action[0].index < album.index
    assert action[0].params["action"] == "upload_photo"
    listing = await bot.reply_to(CUSTOMER_ID, after=album.index)
    assert listing.params["parse_mode"] == "HTML"
    assert len(listing.params["text"].splitlines()) == 9  # heading + 8 products
    data = [b.get("callback_data") for b in buttons(listing)]
    assert any(d and d.startswith("fb:") for d in data)
    assert not any(d and d.startswith("cheaper:") for d in data)  # the first has no price
    assert any(
        "start%3Dr_" in (b.get("url") or "") or "start=r_" in (b.get("url") or "")
        for b in buttons(listing)
    )

    # A second search re-sends the same product photos by file_id.
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    again = await bot.wait_for("sendMediaGroup", after=mark)
    assert again.photo_sources() == ["file_id"] * 8


async def test_image_sent_as_a_file_is_searched(bot: BotHarness, footwear: Path) -> None:
    mark = bot.api.mark()
    bot.api.send_document(
        user_id=CUSTOMER_ID,
        data=query_image(footwear),
        file_name="IMG_2024.JPG",
        mime_type="image/jpeg",
    )
    album, _ = await results(bot, CUSTOMER_ID, after=mark)
    assert album.method == "sendMediaGroup" and len(album.params["media"]) == 8
    mark = bot.api.mark()
    bot.api.send_document(
        user_id=CUSTOMER_ID,
        data=images.transparent_webp(),
        file_name="sticker.webp",
        mime_type="application/octet-stream",
    )
    album, _ = await results(bot, CUSTOMER_ID, after=mark)
    assert len(album.params["media"]) == 8


async def test_stale_file_id_falls_back_to_uploading(bot: BotHarness, footwear: Path) -> None:
    album, _ = await search(bot, query_image(footwear))
    assert album.photo_sources() == ["upload"] * 8
    found = await direct_search(bot, query_image(footwear))
    bot.service.remember_telegram_file_id(found.items[2].image.id, "AgACAgIAAxk-no-such-file")
    mark = bot.api.mark()
    album, _ = await search(bot, query_image(footwear))
    failed = [c for c in bot.api.calls_to("sendMediaGroup") if c.index > mark and not c.ok]
    assert len(failed) == 1 and "wrong file identifier" in str(failed[0].description).lower()
    assert album.photo_sources() == ["upload"] * 8
    album, _ = await search(bot, query_image(footwear))
    assert album.photo_sources() == ["file_id"] * 8  # Telegram's new ids were stored


# ------------------------------------------------------- captions, buttons and HTML escaping


async def test_caption_narrows_search_and_buttons_work(
    catalog_settings: Settings, fake_bot_api: FakeBotAPI, extractor: Featurizer, footwear: Path
) -> None:
    # Without query expansion the filtered results keep their unfiltered order (expanding
    # with the filtered neighbours would reorder them), so the ranks below are certain.
    settings = bot_settings_for(catalog_settings, fake_bot_api, query_expansion=0)
    async with harness(settings, fake_bot_api, extractor) as bot:
        await _caption_narrows_search_and_buttons_work(bot, footwear)


async def _caption_narrows_search_and_buttons_work(bot: BotHarness, footwear: Path) -> None:
    image = query_image(footwear)
    ranked = [item.product.sku for item in (await direct_search(bot, image)).items]
    # Ranks 1, 3, 5, 7 become boots (at 50, 55, 120, 40), ranks 2, 4, 6, 8 sneakers at 30.
    # Names and links carry HTML-special characters: the fake refuses bad HTML with 400.
    boots = {ranked[0]: "50", ranked[2]: "55", ranked[4]: "120", ranked[6]: "40"}
    for rank, sku in enumerate(ranked, 1):
        set_product(
            bot,
            sku,
            name=f'Model <{rank}> & "Co"',
            price=boots.get(sku, "30"),
            category="boots" if sku in boots else "sneakers",
            url=f"https://shop.example/p?sku={sku}&ref=<bot>",
        )

    album, listing = await search(bot, image, caption="Boots under 60 please")
    assert album.method == "sendMediaGroup"
    assert [c.split("\n")[0] for c in captions(album)] == [
        "<b>1.</b> Model &lt;1&gt; &amp; &quot;Co&quot;",
        "<b>2.</b> Model &lt;3&gt; &amp; &quot;Co&quot;",
        "<b>3.</b> Model &lt;7&gt; &amp; &quot;Co&quot;",
    ]
    assert "50.00 EUR" in captions(album)[0]
    sent = album.result
    assert sent[1]["caption"].startswith('2. Model <3> & "Co"')  # what the customer reads
    text = listing.result["text"]
    assert text.startswith("Most similar products in boots under 60")
    # Each name opens the product in the bot (counted); its card links to the product page.
    links = [e["url"] for e in listing.result["entities"] if e["type"] == "text_link"]
    token = str(listing_search(bot, listing).share_token)
    username = bot.api.bot_username
    assert links == [f"https://t.me/{username}?start=o_{token}_{rank}" for rank in (1, 2, 3)]
    mark = bot.api.mark()
    bot.api.send_text(user_id=CUSTOMER_ID, text="/start " + links[2].split("start=")[1])
    card = await bot.wait_for("sendPhoto", after=mark, predicate=to_chat(CUSTOMER_ID))
    assert card.ok, card.description
    assert card.params["caption"].startswith("<b>Model &lt;7&gt; &amp; &quot;Co&quot;</b>")
    assert buttons(card)[0]["url"] == f"https://shop.example/p?sku={ranked[6]}&ref=<bot>"

    # "Cheaper than the first result" (50): only the boot at 40 is left, a single photo.
    mark = bot.api.mark()
    bot.api.press_button(
        user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "cheaper:")
    )
    answer = await bot.wait_for("answerCallbackQuery", after=mark)
    assert answer.ok
    single, cheaper_listing = await results(bot, CUSTOMER_ID, after=mark)
    assert single.method == "sendPhoto"
    assert single.params["caption"].startswith("<b>1.</b> Model &lt;7&gt;")
    assert cheaper_listing.params["text"].startswith("<b>Cheaper lookalikes")

    # Nothing is cheaper than that one: said so, no photos.
    mark = bot.api.mark()
    bot.api.press_button(
        user_id=CUSTOMER_ID,
        message=cheaper_listing,
        data=callback_data(cheaper_listing, "cheaper:"),
    )
    assert await reply_text(bot, CUSTOMER_ID, after=mark) == customer.NOTHING_CHEAPER
    assert not [c for c in bot.api.calls[mark:] if c.method in PHOTO_METHODS]

    # All categories, still under 60: the 7 priced products at 60 or less.
    mark = bot.api.mark()
    bot.api.press_button(user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "all:"))
    album, _ = await results(bot, CUSTOMER_ID, after=mark)
    assert len(album.params["media"]) == 7


async def test_caption_with_no_match_says_so(bot: BotHarness, footwear: Path) -> None:
    set_product(bot, "footwear_0001", category="boots", price="100")
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear), caption="boots under 5")
    text = await reply_text(bot, CUSTOMER_ID, after=mark)
    assert "No products match" in text
    assert not [c for c in bot.api.calls[mark:] if c.method in PHOTO_METHODS]


async def test_inferred_category_is_said_and_all_categories_drops_it(
    bot: BotHarness, footwear: Path
) -> None:
    image = query_image(footwear, "search_image_02.jpg")
    ranked = [item.product.sku for item in (await direct_search(bot, image)).items]
    # 5 of the 8 nearest are ankle boots (the only ones in the catalogue), 3 sneakers: a
    # photo without a caption is limited to ankle boots, so 5 results, and the reply says so.
    for sku in ranked[:5]:
        set_product(bot, sku, category="ankle_boots")
    for sku in ranked[5:]:
        set_product(bot, sku, category="sneakers")

    album, listing = await search(bot, image)
    assert len(captions(album)) == 5
    text = str(listing.params["text"])
    heading, note = text.split("\n")[:2]
    assert heading == "<b>Most similar products</b>"
    assert note == "Showing <b>ankle boots</b>, the category of most lookalikes."
    inferred = listing_search(bot, listing)
    assert inferred.inferred_category == "ankle_boots"
    assert inferred.filters["category"] == "ankle_boots" and inferred.filters["category_inferred"]

    # "Search all categories" runs the same query again without the guessed category.
    mark = bot.api.mark()
    bot.api.press_button(user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "all:"))
    assert (await bot.wait_for("answerCallbackQuery", after=mark)).ok
    album, every = await results(bot, CUSTOMER_ID, after=mark)
    assert len(captions(album)) == 8
    assert every.params["text"].startswith("<b>Most similar products in all categories</b>\n1. ")
    assert "Showing" not in every.params["text"]
    again = listing_search(bot, every)
    assert again.filters["category"] is None and again.inferred_category is None
    assert {item.product.sku for item in again.items} == set(ranked)
    # No category left to drop: no such button under these results.
    assert not [b for b in buttons(every) if str(b.get("callback_data", "")).startswith("all:")]


async def test_feedback_is_stored_once_per_user_and_changeable(
    bot: BotHarness, footwear: Path
) -> None:
    _, listing = await search(bot, query_image(footwear))
    up = callback_data(listing, "fb:")
    assert up.endswith(":up")
    down = up.replace(":up", ":down")

    async def press(user_id: int, data: str) -> ApiCall:
        mark = bot.api.mark()
        bot.api.press_button(user_id=user_id, message=listing, data=data)
        return await bot.wait_for("answerCallbackQuery", after=mark)

    assert "Thanks" in (await press(CUSTOMER_ID, up)).params["text"]
    assert "Thanks" in (await press(CUSTOMER_ID, up)).params["text"]
    stats = bot.service.stats(weak_distance=0.35)
    assert (stats.thumbs_up, stats.thumbs_down) == (1, 0)
    await press(CUSTOMER_ID, down)
    stats = bot.service.stats(weak_distance=0.35)
    assert (stats.thumbs_up, stats.thumbs_down) == (0, 1)
    await press(OTHER_CUSTOMER_ID, up)  # someone else, e.g. who opened a shared link
    stats = bot.service.stats(weak_distance=0.35)
    assert (stats.thumbs_up, stats.thumbs_down) == (1, 1)


async def test_forged_callbacks_do_nothing_and_are_answered_politely(
    bot: BotHarness, footwear: Path
) -> None:
    _, listing = await search(bot, query_image(footwear))
    real_id = int(callback_data(listing, "fb:").split(":")[1])
    mark = bot.api.mark()
    forged = [
        "fb:999999:up",
        "cheaper:abc",
        f"cheaper:{real_id}",  # a real search, but this message has no such button
        f"all:{real_id}",
        f"fb:{real_id}:sideways",
        "x" * 64,
    ]
    for data in forged:
        bot.api.press_button(user_id=CUSTOMER_ID, message=listing, data=data, check=False)
    # A callback without a message at all (e.g. for an unknown inline message).
    bot.api.queue_update(
        {
            "callback_query": {
                "id": "777",
                "from": {"id": CUSTOMER_ID, "is_bot": False, "first_name": "Mallory"},
                "chat_instance": "1",
                "inline_message_id": "AAAA",
                "data": f"fb:{real_id}:up",
            }
        }
    )
    await wait_count(bot, "answerCallbackQuery", len(forged) + 1, after=mark)
    await settle(bot)
    answers = [c for c in bot.api.calls_to("answerCallbackQuery") if c.index >= mark]
    assert len(answers) == len(forged) + 1
    assert all(c.params.get("text") == customer.BUTTON_INVALID for c in answers)
    after = calls_to_chat(bot, CUSTOMER_ID, after=mark)
    assert [c.method for c in after] == [], after
    stats = bot.service.stats(weak_distance=0.35)
    assert (stats.thumbs_up, stats.thumbs_down) == (0, 0)


async def test_edited_messages_never_rerun_a_command_or_search(
    bot: BotHarness, footwear: Path
) -> None:
    sent_text = bot.api.send_text(user_id=CUSTOMER_ID, text="hello")
    await bot.reply_to(CUSTOMER_ID, after=0)
    mark = bot.api.mark()
    sent_photo = bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    await results(bot, CUSTOMER_ID, after=mark)

    mark = bot.api.mark()
    bot.api.edit_message(
        user_id=CUSTOMER_ID, message_id=sent_text["message"]["message_id"], text="/start"
    )
    bot.api.edit_message(
        user_id=CUSTOMER_ID, message_id=sent_photo["message"]["message_id"], text="boots"
    )
    await settle(bot)
    assert calls_to_chat(bot, CUSTOMER_ID, after=mark) == []
    assert not [c for c in bot.api.calls[mark:] if c.method == "getFile"]


# ------------------------------------------------------------------------- anything else


async def test_anything_else_gets_a_short_helpful_reply(
    bot: BotHarness, footwear: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    api = bot.api
    jpeg = query_image(footwear)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: api.send_text(user_id=CUSTOMER_ID, text="do you have red boots?"), "photo"),
        (lambda: api.send_text(user_id=CUSTOMER_ID, text="/nonsense"), "/help"),
        (lambda: api.send_sticker(user_id=CUSTOMER_ID), "sticker"),
        (lambda: api.send_voice(user_id=CUSTOMER_ID), "photo"),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=images.minimal_pdf(),
                file_name="catalogue.pdf",
                mime_type="application/pdf",
            ),
            "isn't an image",
        ),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=jpeg,
                file_name="huge.jpg",
                mime_type="image/jpeg",
                file_size=25 * 1024 * 1024,
            ),
            "too large",
        ),
        (lambda: api.send_photo(user_id=CUSTOMER_ID, image=images.truncated(jpeg)), "read"),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID, data=b"", file_name="empty.jpg", mime_type="image/jpeg"
            ),
            "empty",
        ),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=images.plain_text(),
                file_name="photo.jpg",
                mime_type="image/jpeg",
            ),
            "read",
        ),
        (lambda: api.send_photo(user_id=CUSTOMER_ID, image=images.heic_header()), "read"),
        (
            lambda: api.send_document(
                user_id=CUSTOMER_ID,
                data=images.elf_executable(),
                file_name="holiday.jpg",
                mime_type="image/jpeg",
            ),
            "read",
        ),
    ]
    for send, expected in cases:
        mark = api.mark()
        send()
        text = await reply_text(bot, CUSTOMER_ID, after=mark)
        assert expected in text, (expected, text)
        assert text != customer.SEARCH_FAILED
        assert len(text) < 300
        if expected == "too large":
            assert not [c for c in api.calls[mark:] if c.method in ("getFile", FILE_DOWNLOAD)]
    assert not [c for c in api.calls if c.method in PHOTO_METHODS]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- small catalogues, limits


async def test_small_catalogue_none_one_and_three_products(
    settings: Settings, fake_bot_api: FakeBotAPI, extractor: Featurizer, catalog_photos: list[Path]
) -> None:
    query = images.encode(images.photo_like(120, 90), "JPEG")
    async with harness(bot_settings_for(settings, fake_bot_api), fake_bot_api, extractor) as bot:
        mark = bot.api.mark()
        bot.api.send_photo(user_id=CUSTOMER_ID, image=query)
        assert "No matching products" in await reply_text(bot, CUSTOMER_ID, after=mark)

        def add(index: int) -> None:
            fields = clean_product_fields(
                sku=f"SKU-{index}", name=f"Shoe #{index}", price="20", currency="EUR"
            )
            bot.service.add_product(fields, catalog_photos[index].read_bytes())

        await asyncio.to_thread(add, 0)
        photo, listing = await search(bot, query)
        assert photo.method == "sendPhoto"
        assert photo.params["caption"].startswith("<b>1.</b> Shoe #0")
        assert len(listing.params["text"].splitlines()) == 2

        for index in (1, 2):
            await asyncio.to_thread(add, index)
        album, listing = await search(bot, query)
        assert album.method == "sendMediaGroup" and len(album.params["media"]) == 3
        assert len(listing.params["text"].splitlines()) == 4
        # Buttons still make sense: nothing is cheaper than 20 among three products at 20.
        mark = bot.api.mark()
        bot.api.press_button(
            user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "cheaper:")
        )
        assert await reply_text(bot, CUSTOMER_ID, after=mark) == customer.NOTHING_CHEAPER


async def test_searches_per_minute_limit_is_polite(
    catalog_settings: Settings, fake_bot_api: FakeBotAPI, extractor: Featurizer, footwear: Path
) -> None:
    settings = bot_settings_for(catalog_settings, fake_bot_api, searches_per_minute=2)
    async with harness(settings, fake_bot_api, extractor) as bot:
        await search(bot, query_image(footwear))
        _, listing = await search(bot, query_image(footwear))
        mark = bot.api.mark()
        bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
        text = await reply_text(bot, CUSTOMER_ID, after=mark)
        assert "wait" in text and "try again" in text
        # The "cheaper"/"all" buttons count as searches too; feedback does not.
        mark = bot.api.mark()
        bot.api.press_button(
            user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "fb:")
        )
        answer = await bot.wait_for("answerCallbackQuery", after=mark)
        assert "Thanks" in answer.params["text"]
        # Someone else is not limited by it.
        await search(bot, query_image(footwear), user_id=OTHER_CUSTOMER_ID)
        assert not [
            c for c in bot.api.calls[mark:] if to_chat(CUSTOMER_ID)(c) and c.method in PHOTO_METHODS
        ]


# ------------------------------------------------------------------------ Telegram faults


async def test_429_on_the_album_is_waited_out_and_one_album_arrives(
    bot: BotHarness, footwear: Path
) -> None:
    bot.api.fail_next("sendMediaGroup", status=429, retry_after=3)
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    album, listing = await results(bot, CUSTOMER_ID, after=mark)
    assert len(album.params["media"]) == 8
    attempts = [c for c in bot.api.calls_to("sendMediaGroup") if c.index >= mark]
    assert [c.failed_status for c in attempts] == [429, None]
    assert attempts[1].at - attempts[0].answered_at >= 3.0
    await settle(bot)
    listings = [c for c in bot.api.calls[mark:] if is_listing(CUSTOMER_ID)(c)]
    assert listings == [listing]


@pytest.mark.parametrize("method", ["getFile", FILE_DOWNLOAD])
async def test_502_while_fetching_the_photo_asks_to_try_again(
    bot: BotHarness, footwear: Path, method: str
) -> None:
    bot.api.fail_next(method, status=502)
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    text = await reply_text(bot, CUSTOMER_ID, after=mark)
    assert text == customer.DOWNLOAD_FAILED and "try again" in text
    # And trying again works.
    await search(bot, query_image(footwear))


async def test_blocked_user_causes_no_retry_storm_and_next_user_is_served(
    bot: BotHarness, footwear: Path
) -> None:
    # Blocked before the reply: the album fails with 403, once; nothing else is tried.
    bot.api.block_bot(CUSTOMER_ID)
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    await bot.wait_for("sendMediaGroup", after=mark, predicate=to_chat(CUSTOMER_ID))
    await search(bot, query_image(footwear), user_id=OTHER_CUSTOMER_ID)
    await settle(bot)
    to_blocked = calls_to_chat(bot, CUSTOMER_ID, after=mark)
    assert all(c.failed_status == 403 for c in to_blocked)
    assert [c.method for c in to_blocked if c.method != "sendChatAction"] == ["sendMediaGroup"]
    assert len(to_blocked) <= 2

    # Blocked in the middle of a reply: the album arrived, the listing gets 403.
    bot.api.block_bot(CUSTOMER_ID, blocked=False)
    bot.api.fail_next(
        "sendMessage", status=403, description="Forbidden: bot was blocked by the user"
    )
    mark = bot.api.mark()
    bot.api.send_photo(user_id=CUSTOMER_ID, image=query_image(footwear))
    failed = await bot.wait_for("sendMessage", after=mark, predicate=lambda c: not c.ok)
    assert failed.failed_status == 403
    await search(bot, query_image(footwear), user_id=OTHER_CUSTOMER_ID)
    await settle(bot)
    sends = [c for c in calls_to_chat(bot, CUSTOMER_ID, after=mark) if c.method == "sendMessage"]
    assert sends == [failed]


async def test_start_is_answered_while_searches_run(bot: BotHarness, footwear: Path) -> None:
    users = [5001, 5002, 5003, 5004, 5005]
    mark = bot.api.mark()
    for user_id in users:
        bot.api.send_photo(user_id=user_id, image=query_image(footwear, "search_image_02.jpg"))
    bot.api.send_text(user_id=OTHER_CUSTOMER_ID, text="/start")
    start = await bot.reply_to(OTHER_CUSTOMER_ID, after=mark)
    albums = [await results(bot, user_id, after=mark) for user_id in users]
    assert all(len(album.params["media"]) == 8 for album, _ in albums)
    assert start.index < max(album.index for album, _ in albums)
