"""The fake Telegram Bot API, exercised by the real python-telegram-bot over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import http.client
import io
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from PIL import Image
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

from tests.fakebotapi import FILE_DOWNLOAD, FakeBotAPI, HtmlParseError, parse_html
from tests.fakebotapi.fixtures import fake_bot_api

__all__ = ["fake_bot_api"]  # the fixture, re-exported so pytest finds it in this module

USER = 42


def _jpeg(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest_asyncio.fixture
async def bot(fake_bot_api: FakeBotAPI) -> AsyncIterator[Bot]:
    """A real PTB Bot talking to the fake, with user 42 already known to it."""
    fake_bot_api.add_chat(USER)
    async with Bot(**fake_bot_api.bot_kwargs()) as real_bot:
        yield real_bot


# ------------------------------------------------------------------------------ basics


@pytest.mark.asyncio
async def test_get_me(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot and me.username == "lookalike_test_bot"
    assert me.id == 123456 and me.supports_inline_queries and me.can_join_groups
    assert fake_bot_api.calls_to("getMe")[-1].ok


@pytest.mark.asyncio
async def test_send_message_html_and_inline_keyboard(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("More like this", callback_data="m:7")]])
    sent = await bot.send_message(
        USER, "<b>Red</b> &amp; <i>blue</i> shoes", parse_mode=ParseMode.HTML, reply_markup=keyboard
    )
    assert sent.text == "Red & blue shoes"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 3),
        ("italic", 6, 4),
    ]
    assert sent.reply_markup == keyboard
    assert sent.from_user is not None and sent.from_user.id == bot.id
    assert sent.chat.id == USER

    call = fake_bot_api.calls_to("sendMessage")[-1]
    assert call.params["chat_id"] == USER  # JSON-decoded
    assert call.params["text"] == "<b>Red</b> &amp; <i>blue</i> shoes"  # strings stay strings
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "More like this", "callback_data": "m:7"}]]
    }
    assert call.result["message_id"] == sent.message_id
    assert fake_bot_api.chat_history(USER)[-1]["text"] == "Red & blue shoes"


@pytest.mark.asyncio
async def test_validation_like_telegram(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    # PTB strips "Bad Request: " and .capitalize()s the rest, so compare the server's own
    # description, recorded on the call, with Telegram's wording.
    long_data = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
    cases = [
        (bot.send_message(USER, "<b>bold", parse_mode=ParseMode.HTML),
         "can't parse entities: Can't find end tag corresponding to start tag \"b\""),
        (bot.send_message(USER, "a<br>b", parse_mode=ParseMode.HTML),
         "can't parse entities: Unsupported start tag \"br\" at byte offset 1"),
        (bot.send_message(USER, "x" * 4097), "message is too long"),
        (bot.send_message(USER, "  "), "message text is empty"),
        (bot.send_message(USER, "hi", reply_markup=long_data), "BUTTON_DATA_INVALID"),
        (bot.send_photo(USER, _jpeg(), caption="c" * 1025), "message caption is too long"),
        (bot.send_message(999, "hi"), "chat not found"),
    ]  # fmt: skip
    for request, description in cases:
        with pytest.raises(BadRequest):
            await request
        assert fake_bot_api.calls[-1].failed_status == 400
        assert fake_bot_api.calls[-1].description == f"Bad Request: {description}"
    fake_bot_api.block_bot(USER)
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(USER, "hi")
    assert fake_bot_api.calls[-1].failed_status == 403


@pytest.mark.asyncio
async def test_edit_press_button_and_answer(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Next", callback_data="page:2")]])
    sent = await bot.send_message(USER, "page 1", reply_markup=keyboard)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("page 1", chat_id=USER, message_id=sent.message_id,
                                    reply_markup=keyboard)  # fmt: skip

    update = fake_bot_api.press_button(
        user_id=USER, message=fake_bot_api.calls_to("sendMessage")[-1], data="page:2"
    )
    query_id = update["callback_query"]["id"]
    assert update["callback_query"]["message"]["text"] == "page 1"
    assert await bot.answer_callback_query(query_id)
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query_id)

    edited = await bot.edit_message_text("page 2", chat_id=USER, message_id=sent.message_id)
    assert isinstance(edited, object) and fake_bot_api.message(USER, sent.message_id) is not None
    current = fake_bot_api.message(USER, sent.message_id)
    assert current is not None and current["text"] == "page 2" and "reply_markup" not in current
    with pytest.raises(AssertionError, match="no button"):
        fake_bot_api.press_button(user_id=USER, message=current, data="page:2")
    assert await bot.delete_message(USER, sent.message_id)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(USER, sent.message_id)


@pytest.mark.asyncio
async def test_user_updates_are_valid_for_ptb(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    command = fake_bot_api.send_text(user_id=5, text="/start@lookalike_test_bot x")
    text = Update.de_json(command, bot).message
    assert text is not None and text.text == "/start@lookalike_test_bot x"
    assert text.entities[0].length == len("/start@lookalike_test_bot")
    group = fake_bot_api.send_text(user_id=5, chat_id=-100123, chat_type="supergroup", text="hey")
    group_chat = Update.de_json(group, bot).effective_chat
    assert group_chat is not None and group_chat.type == "supergroup"
    album = fake_bot_api.send_album(user_id=5, images=[_jpeg(), _jpeg()], caption="both")
    parsed = [Update.de_json(u, bot).message for u in album]
    assert len({m.media_group_id for m in parsed if m}) == 1
    sticker = Update.de_json(fake_bot_api.send_sticker(user_id=5), bot).message
    assert sticker is not None and sticker.sticker is not None
    voice = Update.de_json(fake_bot_api.send_voice(user_id=5), bot).message
    assert voice is not None and voice.voice is not None
    document = fake_bot_api.send_document(
        user_id=5, data=b"x", file_name="x.txt", mime_type="text/plain", caption="doc"
    )
    doc = Update.de_json(document, bot).message
    assert doc is not None and doc.document is not None and doc.document.file_name == "x.txt"
    edit = fake_bot_api.edit_message(user_id=5, message_id=text.message_id, text="/help")
    edited = Update.de_json(edit, bot).edited_message
    assert edited is not None and edited.text == "/help" and edited.edit_date is not None
    inline = Update.de_json(fake_bot_api.inline_query(user_id=5, query="red shoes"), bot)
    assert inline.inline_query is not None and inline.inline_query.query == "red shoes"
    assert await bot.answer_inline_query(inline.inline_query.id, [])
    with pytest.raises(BadRequest):
        await bot.answer_inline_query(inline.inline_query.id, [])


@pytest.mark.asyncio
async def test_commands_and_concurrent_sends(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    assert await bot.set_my_commands([("start", "Start"), ("help", "How it works")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    assert fake_bot_api.commands == [
        {"command": "start", "description": "Start"},
        {"command": "help", "description": "How it works"},
    ]
    sent = await asyncio.gather(*(bot.send_message(USER, f"m{i}") for i in range(40)))
    assert len({m.message_id for m in sent}) == 40
    assert len(fake_bot_api.calls_to("sendMessage")) == 40
    with pytest.raises(AssertionError, match="no editMessageText call"):
        fake_bot_api.wait_for_call("editMessageText", timeout=0.05)


# ---------------------------------------------------------------------------- files


@pytest.mark.asyncio
async def test_send_photo_upload_then_file_id(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    image = _jpeg(40, 30)
    first = await bot.send_photo(USER, image, caption="<b>Look</b>", parse_mode=ParseMode.HTML)
    photo = first.photo[-1]
    assert (photo.width, photo.height, photo.file_size) == (40, 30, len(image))
    assert first.caption == "Look"
    again = await bot.send_photo(USER, photo.file_id)
    assert again.photo[-1].file_unique_id == photo.file_unique_id

    upload, reuse = fake_bot_api.calls_to("sendPhoto")
    assert upload.photo_sources() == ["upload"] and upload.files["photo"] == image
    assert reuse.photo_sources() == ["file_id"] and reuse.params["photo"] == photo.file_id
    assert fake_bot_api.file_bytes(photo.file_id) == image

    await bot.send_photo(USER, "https://example.com/shoe.jpg")
    assert fake_bot_api.calls_to("sendPhoto")[-1].photo_sources() == ["url"]
    with pytest.raises(BadRequest, match="Wrong file identifier/http url specified"):
        await bot.send_photo(USER, "AgACAgIAAxk-not-a-file-id")
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(USER, b"definitely not an image")


@pytest.mark.asyncio
async def test_send_media_group(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    images = [_jpeg(20 + i, 20) for i in range(3)]
    messages = await bot.send_media_group(
        USER, [InputMediaPhoto(image) for image in images], caption="Similar items"
    )
    assert len(messages) == 3
    assert len({m.media_group_id for m in messages}) == 1 and messages[0].media_group_id
    assert messages[0].caption == "Similar items" and messages[1].caption is None
    assert [m.photo[-1].width for m in messages] == [20, 21, 22]

    call = fake_bot_api.calls_to("sendMediaGroup")[-1]
    assert call.photo_sources() == ["upload"] * 3
    names = [item["media"].removeprefix("attach://") for item in call.params["media"]]
    assert [call.files[name] for name in names] == images

    with pytest.raises(BadRequest, match="2-10 items"):
        await bot.send_media_group(USER, [InputMediaPhoto(images[0])])
    with pytest.raises(BadRequest, match="Too many messages to send as an album"):
        await bot.send_media_group(USER, [InputMediaPhoto(images[0])] * 11)


@pytest.mark.asyncio
async def test_get_file_and_download(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    image = _jpeg(64, 48)
    update = fake_bot_api.send_photo(user_id=USER, image=image, caption="find this")
    size = update["message"]["photo"][-1]
    assert (size["width"], size["height"], size["file_size"]) == (64, 48, len(image))
    file = await bot.get_file(size["file_id"])
    assert file.file_path is not None and file.file_path.startswith(fake_bot_api.base_file_url)
    assert bytes(await file.download_as_bytearray()) == image
    assert fake_bot_api.calls_to(FILE_DOWNLOAD)[-1].ok

    big = fake_bot_api.send_document(
        user_id=USER, data=b"%PDF-1.4", file_name="a.pdf", mime_type="application/pdf",
        file_size=25 * 1024 * 1024,
    )  # fmt: skip
    assert big["message"]["document"]["file_size"] == 25 * 1024 * 1024
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(big["message"]["document"]["file_id"])


@pytest.mark.asyncio
async def test_multipart_upload_is_byte_exact(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    data = os.urandom(50_000) + b"\r\n--\r\n\r\n" + bytes(range(256))
    sent = await bot.send_document(USER, data, filename="blob.bin", caption="42")
    call = fake_bot_api.calls_to("sendDocument")[-1]
    assert call.files["document"] == data and call.file_names["document"] == "blob.bin"
    assert call.params["caption"] == "42"  # text-like parameters are never JSON-decoded
    assert sent.document is not None and sent.document.file_name == "blob.bin"
    assert fake_bot_api.file_bytes(sent.document.file_id) == data


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # int retry_after
async def test_fault_injection(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    fake_bot_api.fail_next("sendMessage", status=429, description="Too Many Requests: retry "
                           "after 1", retry_after=1)  # fmt: skip
    with pytest.raises(RetryAfter) as retry:
        await bot.send_message(USER, "hi")
    assert retry.value.retry_after in (1, dtm.timedelta(seconds=1))

    fake_bot_api.fail_next("sendMessage", status=502, description="Bad Gateway")
    with pytest.raises(NetworkError) as network:
        await bot.send_message(USER, "hi")
    assert type(network.value) is NetworkError

    fake_bot_api.fail_next("sendPhoto", status=403)
    with pytest.raises(Forbidden):
        await bot.send_photo(USER, _jpeg())

    assert (await bot.send_message(USER, "hi")).text == "hi"  # faults are consumed
    statuses = [(c.method, c.failed_status) for c in fake_bot_api.calls if c.method != "getMe"]
    assert statuses == [
        ("sendMessage", 429),
        ("sendMessage", 502),
        ("sendPhoto", 403),
        ("sendMessage", None),
    ]


@pytest.mark.asyncio
async def test_delay_provokes_client_timeout(fake_bot_api: FakeBotAPI) -> None:
    mark = fake_bot_api.mark()
    fake_bot_api.add_chat(USER)
    fake_bot_api.delay_next("sendMessage", 0.6)
    with pytest.raises(AssertionError, match="delayed sendMessage"):
        await fake_bot_api.wait_delays_taken_async("sendMessage", timeout=0.1)  # no call yet
    request = HTTPXRequest(read_timeout=0.2)
    async with Bot(**fake_bot_api.bot_kwargs(), request=request) as impatient:
        with pytest.raises(TimedOut):
            await impatient.send_message(USER, "slow")
    await fake_bot_api.wait_delays_taken_async("sendMessage", timeout=1)
    # Telegram still delivers what it received: the message exists after the delay.
    call = await fake_bot_api.wait_for_call_async("sendMessage", after=mark, timeout=3)
    assert call.ok and call.answered_at - call.at >= 0.5 and call.client_gone


def test_wrong_token_unknown_method_and_stray_paths(fake_bot_api: FakeBotAPI) -> None:
    with httpx.Client(base_url=fake_bot_api.url) as client:
        wrong = client.post("/bot999:WRONG/getMe")
        assert wrong.status_code == 401
        assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        unknown = client.post(f"/bot{fake_bot_api.token}/noSuchMethod")
        assert unknown.status_code == 404 and unknown.json()["description"] == "Not Found"
        missing = client.get(f"/file/bot{fake_bot_api.token}/photos/nothing.jpg")
        assert missing.status_code == 404
        get_me = client.get(f"/bot{fake_bot_api.token}/getme")  # method names: any case
        assert get_me.json()["result"]["username"] == "lookalike_test_bot"


@pytest.mark.asyncio
async def test_invalid_token_with_ptb(fake_bot_api: FakeBotAPI) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("999:WRONG", base_url=fake_bot_api.base_url):
            pass


# --------------------------------------------------------------------------- polling


@pytest.mark.asyncio
async def test_get_updates_long_poll(fake_bot_api: FakeBotAPI, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.to_thread(fake_bot_api.wait_polling, timeout=5)
    started = time.monotonic()
    fake_bot_api.send_text(user_id=7, text="hello")  # arrives while the poll waits
    updates = await poll
    assert time.monotonic() - started < 1.0
    assert [u.message.text for u in updates if u.message] == ["hello"]

    # Not confirmed yet: the same update comes again until the offset moves past it.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [updates[0].update_id]
    with pytest.raises(AssertionError, match=f"updates up to #{updates[0].update_id} confirmed"):
        await fake_bot_api.wait_confirmed_async(timeout=0.2)
    started = time.monotonic()
    confirming = asyncio.create_task(bot.get_updates(offset=updates[-1].update_id + 1, timeout=1))
    await fake_bot_api.wait_confirmed_async(timeout=5)  # as soon as the offset arrives
    assert time.monotonic() - started < 0.9 and not confirming.done()
    assert await confirming == ()
    assert 0.9 <= time.monotonic() - started < 2.0
    assert fake_bot_api.pending_updates == 0


def test_a_client_resetting_its_connection_is_not_an_error(
    fake_bot_api: FakeBotAPI, capfd: pytest.CaptureFixture[str]
) -> None:
    """A bot killed with kill -9 resets its keep-alive connections: the fake closes them
    quietly (no traceback in the test output) and keeps serving."""
    done = fake_bot_api.connections_done
    host, port = fake_bot_api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", f"/bot{fake_bot_api.token}/getMe")
    assert connection.getresponse().read().startswith(b'{"ok": true')
    # The server now waits for the next request on this connection: reset it (RST, not FIN).
    assert connection.sock is not None
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
    fake_bot_api.wait_connections_done(done + 1, timeout=5)
    assert "Traceback" not in capfd.readouterr().err
    assert fake_bot_api.server_errors == []
    with httpx.Client(base_url=fake_bot_api.url) as client:
        assert client.post(f"/bot{fake_bot_api.token}/getMe").json()["ok"] is True


def test_stop_is_prompt_during_long_poll() -> None:
    fake = FakeBotAPI()
    fake.start()
    outcome: list[object] = []

    def poll() -> None:
        try:
            with httpx.Client(timeout=10) as client:
                response = client.post(
                    f"{fake.base_url}{fake.token}/getUpdates", data={"timeout": "30"}
                )
                outcome.append(response.json())
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    fake.wait_polling(timeout=5)  # the poll has reached the server and waits there
    started = time.monotonic()
    fake.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 1.5
    assert outcome and (
        isinstance(outcome[0], Exception) or outcome[0] == {"ok": True, "result": []}
    )


@pytest.mark.asyncio
async def test_application_polling_end_to_end(fake_bot_api: FakeBotAPI) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("hi")

    application = (
        ApplicationBuilder()
        .token(fake_bot_api.token)
        .base_url(fake_bot_api.base_url)
        .base_file_url(fake_bot_api.base_file_url)
        .build()
    )
    application.add_handler(CommandHandler("start", start))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=1)
        mark = fake_bot_api.mark()
        fake_bot_api.send_text(user_id=USER, text="/start", username="shopper")
        call = await fake_bot_api.wait_for_call_async("sendMessage", after=mark, timeout=5)
        assert call.ok and call.params == {"chat_id": USER, "text": "hi"}
        await application.updater.stop()
        await application.stop()
    assert fake_bot_api.pending_updates == 0  # the final getUpdates confirmed /start
    methods = {c.method for c in fake_bot_api.calls}
    assert {"getMe", "deleteWebhook", "getUpdates", "sendMessage"} <= methods
    # PTB cancels its pending long poll on stop; that one may end 409 to nobody.
    assert all(c.ok or c.client_gone for c in fake_bot_api.calls), fake_bot_api.describe_calls(
        polls=True
    )


# --------------------------------------------------------------------------- HTML parser


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("plain", "plain", []),
        ("a &lt;b&gt; &amp; &quot;c&quot; &copy; &#65;", 'a <b> & "c" &copy; A', []),
        (
            '<b>x<i>y</i></b> <a href="https://e.com/?a=1&amp;b=2">l</a>',
            "xy l",
            [
                {"type": "bold", "offset": 0, "length": 2},
                {"type": "italic", "offset": 1, "length": 1},
                {"type": "text_link", "offset": 3, "length": 1, "url": "https://e.com/?a=1&b=2"},
            ],
        ),
        ("😀<u>é</u>", "😀é", [{"type": "underline", "offset": 2, "length": 1}]),
        (
            '<pre><code class="language-python">x=1</code></pre>',
            "x=1",
            [{"type": "pre", "offset": 0, "length": 3, "language": "python"}],
        ),
        (
            '<span class="tg-spoiler">s</span><blockquote expandable>q</blockquote>',
            "sq",
            [
                {"type": "spoiler", "offset": 0, "length": 1},
                {"type": "expandable_blockquote", "offset": 1, "length": 1},
            ],
        ),
    ],
)
def test_parse_html_accepts(html: str, text: str, entities: list[dict[str, object]]) -> None:
    assert parse_html(html) == (text, entities)


@pytest.mark.parametrize(
    ("html", "message"),
    [
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("é<div>", 'Unsupported start tag "div" at byte offset 2'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_parse_html_rejects(html: str, message: str) -> None:
    with pytest.raises(HtmlParseError) as error:
        parse_html(html)
    assert str(error.value) == message
