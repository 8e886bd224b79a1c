"""Customers, end to end: the real Application over HTTP against the fake Bot API."""

from __future__ import annotations

from pathlib import Path

from tests.bot.conftest import CUSTOMER_ID, BotHarness


async def test_start_answers_and_menu_is_set(bot: BotHarness) -> None:
    assert [c["command"] for c in bot.api.commands][:2] == ["start", "help"]
    mark = bot.api.mark()
    bot.api.send_text(user_id=CUSTOMER_ID, text="/start")
    reply = await bot.reply_to(CUSTOMER_ID, after=mark)
    assert "photo" in reply.params["text"]


async def test_query_photo_gives_album_of_8_and_list_with_buttons(
    bot: BotHarness, footwear: Path
) -> None:
    mark = bot.api.mark()
    bot.api.send_photo(
        user_id=CUSTOMER_ID, image=(footwear / "queries" / "search_image_01.jpg").read_bytes()
    )
    album = await bot.wait_for("sendMediaGroup", after=mark)
    assert album.ok, album.description
    media = album.params["media"]
    assert len(media) == 8
    assert all(item["caption"].startswith(f"<b>{i}.</b>") for i, item in enumerate(media, 1))
    assert album.photo_sources() == ["upload"] * 8
    action = bot.api.calls_to("sendChatAction")
    assert action and action[0].index > mark and action[0].index < album.index
    listing = await bot.reply_to(CUSTOMER_ID, after=album.index)
    keyboard = listing.params["reply_markup"]["inline_keyboard"]
    data = [b.get("callback_data") for row in keyboard for b in row]
    assert any(d and d.startswith("fb:") for d in data)
    assert any(
        "start%3Dr_" in (b.get("url") or "") or "start=r_" in (b.get("url") or "")
        for row in keyboard
        for b in row
    )

    # A second search re-sends the same product photos by file_id.
    mark = bot.api.mark()
    bot.api.send_photo(
        user_id=CUSTOMER_ID, image=(footwear / "queries" / "search_image_01.jpg").read_bytes()
    )
    again = await bot.wait_for("sendMediaGroup", after=mark)
    assert again.photo_sources() == ["file_id"] * 8
