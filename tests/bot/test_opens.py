"""Opening results: each product in a result list links to `o_<share token>_<rank>`, which
shows the product's card in the bot and is counted (result_opens), as is opening a shared
`r_` link; /stats reports the online quality per model and metric from those counts."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.handlers.deep_links import LINK_INVALID
from bot.query import DeepLink, parse_deep_link
from db.tables import ResultOpen
from search import SearchQuery
from tests.bot.conftest import ADMIN_ID, CUSTOMER_ID, OTHER_CUSTOMER_ID, BotHarness
from tests.bot.test_customer import (
    buttons,
    callback_data,
    listing_search,
    query_image,
    reply_text,
    results,
    search,
    set_product,
    to_chat,
)

TOKEN = "AbCd-_0123456789"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (f"o_{TOKEN}_1", DeepLink("o", 0, TOKEN, 1)),
        (f"o_{TOKEN}_8", DeepLink("o", 0, TOKEN, 8)),
        (f"o_{TOKEN}_50", DeepLink("o", 0, TOKEN, 50)),
        (f"o_{'A' * 15}__3", DeepLink("o", 0, "A" * 15 + "_", 3)),  # a token ending in "_"
        (f"o_{TOKEN}_51", None),  # more than TOP_K can ever be
        (f"o_{TOKEN}_0", None),
        (f"o_{TOKEN}_07", None),
        (f"o_{TOKEN}_100", None),
        (f"o_{TOKEN}_", None),
        (f"o_{TOKEN}", None),
        (f"o_{TOKEN[:-1]}_1", None),  # 15 characters
        (f"o_{TOKEN}x_1", None),  # 17
        (f"o_{TOKEN}_1_2", None),
        (f"o_{TOKEN}_-1", None),
        (f"o_{TOKEN.replace('-', '/')}_1", None),
        (f"o_{TOKEN}_1\n", None),
        (f"o_12_{TOKEN}", None),
    ],
)
def test_parse_open_link(payload: str, expected: DeepLink | None) -> None:
    assert parse_deep_link(payload) == expected


def opens(bot: BotHarness) -> list[tuple[int, int | None, int | None, str]]:
    with bot.engine.sessions() as session:
        rows = session.execute(
            select(
                ResultOpen.search_id, ResultOpen.product_id, ResultOpen.rank, ResultOpen.user_ref
            ).order_by(ResultOpen.id)
        ).all()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def text_links(message: dict[str, object]) -> list[str]:
    entities = message.get("entities") or message.get("caption_entities") or []
    assert isinstance(entities, list)
    return [str(e["url"]) for e in entities if e["type"] == "text_link"]


async def start(bot: BotHarness, user_id: int, payload: str) -> int:
    mark = bot.api.mark()
    bot.api.send_text(user_id=user_id, text=f"/start {payload}")
    return mark


async def test_result_links_open_the_product_and_are_counted_in_stats(
    bot: BotHarness, footwear: Path
) -> None:
    services = bot.app.bot_data.services
    username = bot.api.bot_username
    _, listing = await search(bot, query_image(footwear))
    found = listing_search(bot, listing)
    assert found.search_id is not None and found.share_token is not None
    token = found.share_token
    links = text_links(listing.result)
    assert links == [f"https://t.me/{username}?start=o_{token}_{rank}" for rank in range(1, 9)]

    # Result 2, given a shop page first: its card on its photo, with the page and lookalikes.
    second = found.items[1].product
    set_product(bot, second.sku, url="https://shop.example/p/2?a=1&b=<2>")
    for _ in range(2):
        mark = await start(bot, CUSTOMER_ID, f"o_{token}_2")
        card = await bot.wait_for("sendPhoto", after=mark, predicate=to_chat(CUSTOMER_ID))
        assert card.ok, card.description
        assert card.photo_sources() == ["file_id"]  # Telegram's id from the album
        assert card.params["caption"].startswith(f"<b>{second.name}</b>\nSKU {second.sku}")
        assert [(b["text"], b["url"]) for b in buttons(card)] == [
            ("🛍 Product page", "https://shop.example/p/2?a=1&b=<2>"),
            ("🔎 More like this", f"https://t.me/{username}?start=p_{second.id}"),
        ]
    ref = services.user_ref(CUSTOMER_ID)
    assert opens(bot) == [(found.search_id, second.id, 2, ref)] * 2

    # "More like this" is the product's own deep link: its card and its lookalikes.
    mark = await start(bot, CUSTOMER_ID, f"p_{second.id}")
    _, similar = await results(bot, CUSTOMER_ID, after=mark)
    assert similar.params["text"].startswith("<b>Similar products</b>")

    # Links that open nothing say so and count nothing.
    other_token = "Z" * 16 if token != "Z" * 16 else "Y" * 16
    for payload in (f"o_{token}_9", f"o_{other_token}_1", f"o_{token}_0", f"o_{token}_51"):
        mark = await start(bot, CUSTOMER_ID, payload)
        assert (await reply_text(bot, CUSTOMER_ID, after=mark)).startswith(LINK_INVALID)
    assert len(opens(bot)) == 2

    # Result 1 removed, then the results shared: the shared list shows 7, and its links
    # carry the ranks as logged (the first shown is result 2). Opening it counts (rank None).
    first = found.items[0].product
    bot.engine.catalog.remove(first.sku)
    share = next(b["url"] for b in buttons(listing) if "url" in b)
    shared_payload = re.search(r"start=(r_[A-Za-z0-9_-]{16})", urllib.parse.unquote(share))
    assert shared_payload is not None
    mark = await start(bot, OTHER_CUSTOMER_ID, shared_payload.group(1))
    album, shared = await results(bot, OTHER_CUSTOMER_ID, after=mark)
    assert len(album.params["media"]) == 7
    assert text_links(shared.result) == [
        f"https://t.me/{username}?start=o_{token}_{rank}" for rank in range(2, 9)
    ]
    assert opens(bot)[-1] == (found.search_id, None, None, services.user_ref(OTHER_CUSTOMER_ID))

    # The customer likes the results; one more search runs with another metric.
    mark = bot.api.mark()
    bot.api.press_button(user_id=CUSTOMER_ID, message=listing, data=callback_data(listing, "fb:"))
    assert (await bot.wait_for("answerCallbackQuery", after=mark)).ok
    bot.engine.searcher.search_image(query_image(footwear), SearchQuery(metric="euclidean"))

    # /stats: per model and metric. The cosine searches: the photo search and the "more like
    # this" one; 1 👍; 3 opens (result 2 twice, the shared set once).
    mark = bot.api.mark()
    bot.api.send_text(user_id=ADMIN_ID, text="/stats")
    stats = await reply_text(bot, ADMIN_ID, after=mark)
    model = bot.engine.models.active.name
    cosine = "2 searches · 👍 1 👎 0 (100% 👍) · 3 opens (1.50 per search)"
    euclidean = "1 search · 👍 0 👎 0 (no votes) · 0 opens (0.00 per search)"
    assert "<b>Quality by model and metric</b>" in stats
    assert (
        f"<i>{model} · cosine</i>\n7 days: {cosine}\nAll time: {cosine}\n"
        f"<i>{model} · euclidean</i>\n7 days: {euclidean}\nAll time: {euclidean}"
    ) in stats
