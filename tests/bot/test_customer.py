"""Customers, end to end: the real Application over HTTP against the fake Bot API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bot.application import build_application, running
from bot.handlers import customer
from lookalike.settings import Settings
from search import SearchResult
from search.featurize.featurizer import Featurizer
from search.fields import clean_product_fields
from tests import images
from tests.bot.conftest import CUSTOMER_ID, OTHER_CUSTOMER_ID, BotHarness, bot_settings_for
from tests.conftest import open_test_engine
from tests.fakebotapi import ApiCall, FakeBotAPI

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


async def wait_count(
    bot: BotHarness, method: str, count: int, *, after: int, timeout: float = 30.0
) -> list[ApiCall]:
    """The first `count` calls of `method` after `after`, once there are that many."""
    found: list[ApiCall] = []
    while len(found) < count:
        index = found[-1].index + 1 if found else after
        found.append(await bot.wait_for(method, after=index, timeout=timeout))
    return found


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


async def settle(bot: BotHarness) -> None:
    """Until everything queued so far has been handled to the end (see BotHarness.handled),
    so that what the bot has not sent by then it never sends."""
    await bot.handled()


@contextlib.asynccontextmanager
async def harness(
    settings: Settings, api: FakeBotAPI, extractor: Featurizer
) -> AsyncIterator[BotHarness]:
    """A bot with its own settings (the `bot` fixture's twin; use one or the other)."""
    engine = open_test_engine(settings, extractor)
    application = build_application(settings, engine=engine)
    try:
        async with running(application, poll_timeout=1):
            yield BotHarness(app=application, api=api, engine=engine, settings=settings)
    finally:
        engine.close()


def set_product(bot: BotHarness, sku: str, **fields: Any) -> None:
    current = bot.engine.catalog.require(sku)
    values: dict[str, Any] = {
        "sku": sku,
        "name": current.name,
        "price": current.price,
        "currency": current.currency,
        "url": current.url,
        "category": current.category,
    }
    values.update(fields)
    bot.engine.catalog.update(clean_product_fields(**values))


def listing_search(bot: BotHarness, listing: ApiCall) -> SearchResult:
    """The logged search a listing shows (from its feedback button)."""
    search_id = int(callback_data(listing, "fb:").split(":")[1])
    found = bot.engine.searcher.get_search(search_id)
    assert found is not None
    return found


async def direct_search(bot: BotHarness, image: bytes) -> SearchResult:
    return await asyncio.to_thread(bot.engine.searcher.search_image, image)


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
    bot.engine.catalog.remember_telegram_file_id(
        found.items[2].image.id, "AgACAgIAAxk-no-such-file"
    )
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
    assert "€50.00" in captions(album)[0]
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
    # Shape alone: the category is inferred from the 8 nearest by shape, which with colour on
    # (COLOUR_WEIGHT > 0, tests/test_colour.py) are not the 8 shown.
    bot.engine.searcher.colour_weight = 0.0
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
    stats = bot.engine.history.stats(weak_distance=0.35)
    assert (stats.thumbs_up, stats.thumbs_down) == (1, 0)
    await press(CUSTOMER_ID, down)
    stats = bot.engine.history.stats(weak_distance=0.35)
    assert (stats.thumbs_up, stats.thumbs_down) == (0, 1)
    await press(OTHER_CUSTOMER_ID, up)  # someone else, e.g. who opened a shared link
    stats = bot.engine.history.stats(weak_distance=0.35)
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
    stats = bot.engine.history.stats(weak_distance=0.35)
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


async def test_a_colour_in_the_caption_puts_that_colour_first(
    bot: BotHarness, footwear: Path
) -> None:
    red_pump = query_image(footwear, "search_image_01.jpg")
    _, plain = await search(bot, red_pump)
    album, in_black = await search(bot, red_pump, caption="in black")
    shown = [item.product.colour for item in listing_search(bot, plain).items]
    asked = [item.product.colour for item in listing_search(bot, in_black).items]
    assert shown[0] == "red" and asked[0] == "black"
    # Each result shows its colour: under its photo, beside its price, and in the listing.
    for caption, colour in zip(captions(album), asked, strict=True):
        assert f"price on request · {colour} · " in caption, caption
    listed = str(in_black.params["text"]).split("\n")[1:]
    for line, colour in zip(listed, asked, strict=True):
        assert f" · price on request · {colour} · " in line, line
    assert asked.count("black") > shown.count("black")
    assert listing_search(bot, in_black).filters["colour"] == "black"
