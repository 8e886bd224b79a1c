"""A fake Telegram Bot API HTTP server for end-to-end tests.

``FakeBotAPI`` listens on 127.0.0.1 (standard library ``ThreadingHTTPServer`` in a background
thread) and speaks the Bot API the way python-telegram-bot 22 uses it:

* ``POST /bot<token>/<method>`` with ``application/x-www-form-urlencoded`` fields (PTB sends
  strings as they are and every other value JSON-encoded: ints, bools, ``reply_markup``,
  ``media``...), or ``multipart/form-data`` when files are uploaded (a single file is a part
  named after the parameter, e.g. ``photo``; media-group items say ``"media":
  "attach://attached<hex>"`` and the bytes come in a part of that name). GET with a query
  string and JSON bodies are understood too.
* ``GET /file/bot<token>/<file_path>`` serves stored file bytes.

Three sides of the API:

* what the bot did: ``calls`` (every request, in order of completion), ``calls_to``,
  ``wait_for_call`` / ``wait_for_call_async``, ``mark``, ``chat_history``; and what it has
  taken so far: ``wait_confirmed`` (every queued update confirmed by a getUpdates offset past
  it), ``wait_polling`` (a long poll is waiting at the server), ``wait_delays_taken``;
* what users do: ``send_text``, ``send_photo``, ``send_album``, ``send_document``,
  ``send_sticker``, ``send_voice``, ``edit_message``, ``press_button``, ``inline_query``,
  ``queue_update`` - each queues an update for ``getUpdates`` and returns it;
* faults: ``fail_next`` (an error response, e.g. 429 with ``retry_after``, 502, 403) and
  ``delay_next`` (answer late, to provoke client timeouts), consumed in order, per method.
  File downloads count as the pseudo method ``FILE_DOWNLOAD`` ("downloadFile").

Validation follows Telegram where that is cheap (descriptions are Telegram's): text and
caption lengths, HTML parse mode (see ``html.py``), callback_data size, media-group size,
unknown file_ids, unknown chats, edits that change nothing, double-answered callback queries,
undecodable uploaded photos.

Blocking helpers (``wait_for_call``) must not be called from the event loop that runs the
bot, or the bot can never make the call: use ``await fake.wait_for_call_async(...)`` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import re
import secrets
import select
import socket
import threading
import time
import traceback
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypedDict

from .html import HtmlParseError, parse_html, utf16_len
from .multipart import FormError, UploadedFile, parse_body

__all__ = ["FILE_DOWNLOAD", "ApiCall", "ApiError", "BotKwargs", "FakeBotAPI", "StoredFile"]

FILE_DOWNLOAD = "downloadFile"
"""Pseudo method name under which file downloads are recorded, failed and delayed."""

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
MIN_MEDIA_GROUP, MAX_MEDIA_GROUP = 2, 10

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
WRONG_FILE_ID = "wrong file identifier/HTTP URL specified"

# Parameters whose form value is a plain string even when it looks like JSON ("42", "true").
_STRING_PARAMS = frozenset(
    {
        "action", "address", "animation", "audio", "business_connection_id", "callback_query_id",
        "caption", "certificate", "currency", "custom_title", "description", "document", "emoji",
        "explanation", "explanation_parse_mode", "file_id", "first_name", "inline_message_id",
        "inline_query_id", "ip_address", "language_code", "last_name", "message_effect_id",
        "name", "next_offset", "parse_mode", "payload", "phone_number", "photo", "provider_token",
        "query", "question", "question_parse_mode", "quote", "quote_parse_mode", "secret_token",
        "short_description", "start_parameter", "sticker", "sticker_set_name",
        "switch_pm_parameter", "switch_pm_text", "text", "thumbnail", "title", "url", "video",
        "video_note", "voice",
    }
)  # fmt: skip

_CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
        "upload_document", "choose_sticker", "find_location", "record_video_note",
        "upload_video_note",
    }
)  # fmt: skip

_BUTTON_ACTIONS = frozenset(
    {
        "url", "callback_data", "web_app", "login_url", "switch_inline_query",
        "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
        "callback_game", "pay",
    }
)  # fmt: skip

_FILE_ID_PREFIX = {
    "photo": "AgACAgIAAxk",
    "document": "BQACAgIAAxk",
    "video": "BAACAgIAAxk",
    "audio": "CQACAgIAAxk",
    "voice": "AwACAgIAAxk",
    "sticker": "CAACAgIAAxk",
}
_FILE_DIR = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "video": ("videos", ".mp4"),
    "audio": ("music", ".mp3"),
    "voice": ("voice", ".oga"),
    "sticker": ("stickers", ".webp"),
}

# ----------------------------------------------------------------------------------- records


@dataclass
class ApiCall:
    """One request the bot made, recorded when the server answered it.

    ``params`` holds the form fields, JSON-decoded where the value is JSON (``chat_id`` is an
    int, ``reply_markup`` and ``media`` are dicts/lists) but text-like parameters (``text``,
    ``caption``, ``photo``...) stay strings. ``files`` maps multipart part names to bytes.
    ``result`` is the ``result`` the server returned (e.g. the sent Message dict) or None when
    the call failed; then ``failed_status`` and ``description`` say how.
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    """``time.monotonic()`` when the request arrived."""
    index: int = -1
    """Position in ``FakeBotAPI.calls``."""
    http_method: str = "POST"
    file_names: dict[str, str] = field(default_factory=dict)
    failed_status: int | None = None
    description: str | None = None
    result: Any = None
    answered_at: float = 0.0
    """``time.monotonic()`` when the server answered (after any ``delay_next``)."""
    client_gone: bool = False
    """The client had closed the connection before the answer (it timed out or cancelled,
    e.g. PTB's pending long poll at shutdown): the bot never saw this response."""

    @property
    def ok(self) -> bool:
        """True if the server answered with ``"ok": true``."""
        return self.failed_status is None

    def media_sources(self) -> list[str]:
        """How each file in the request was given: ``"upload"``, ``"file_id"`` or ``"url"``.

        One entry for sendPhoto/sendDocument/sendVideo/sendAudio/sendVoice/sendSticker and
        editMessageMedia, one per item for sendMediaGroup; [] for other methods.
        """
        if self.method == "sendMediaGroup":
            media = self.params.get("media")
            items = media if isinstance(media, list) else []
            return [
                _source(item.get("media") if isinstance(item, dict) else None) for item in items
            ]
        if self.method == "editMessageMedia":
            media = self.params.get("media")
            return [_source(media.get("media") if isinstance(media, dict) else None)]
        fieldname = _SINGLE_FILE_METHODS.get(self.method)
        if fieldname is None:
            return []
        if fieldname in self.files:
            return ["upload"]
        return [_source(self.params.get(fieldname))]

    def photo_sources(self) -> list[str]:
        """Same as ``media_sources`` (named for the common case: sendPhoto, sendMediaGroup)."""
        return self.media_sources()

    def summary(self, width: int = 100) -> str:
        """A one-line description for failure messages."""
        status = "ok" if self.ok else f"{self.failed_status} {self.description!r}"
        if self.client_gone:
            status += ", client gone"
        shown = {k: v for k, v in self.params.items() if v is not None}
        text = json.dumps(shown, ensure_ascii=False, default=str)
        if len(text) > width:
            text = text[: width - 3] + "..."
        files = f" files={sorted(self.files)}" if self.files else ""
        return f"#{self.index} {self.method} [{status}] {text}{files}"


_SINGLE_FILE_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendVideo": "video",
    "sendAudio": "audio",
    "sendVoice": "voice",
    "sendSticker": "sticker",
}


def _source(value: Any) -> str:
    if isinstance(value, str):
        if value.startswith("attach://"):
            return "upload"
        if value.startswith(("http://", "https://")):
            return "url"
        return "file_id"
    return "upload"


class BotKwargs(TypedDict):
    """Keyword arguments that point ``telegram.Bot`` at the fake."""

    token: str
    base_url: str
    base_file_url: str


@dataclass
class StoredFile:
    """A file the fake server knows: uploaded by the bot, sent by a test user, or added."""

    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    file_size: int
    file_path: str
    width: int = 0
    height: int = 0
    file_name: str | None = None
    mime_type: str | None = None
    url: str | None = None

    def photo_size(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "width": self.width,
            "height": self.height,
            "file_size": self.file_size,
        }


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None


class ApiError(Exception):
    """Raised inside a method implementation to answer with ``"ok": false``."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass
class _Request:
    params: dict[str, Any]
    files: dict[str, UploadedFile]


_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if Pillow can fully decode ``data``, else None."""
    try:
        from PIL import Image  # optional: only photos need it
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            return int(width), int(height)
    except Exception:  # any decoder error means "not an image"
        return None


def _as_int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise _bad_request(f"wrong integer value {value!r}") from exc


# -------------------------------------------------------------------------------- the server


class FakeBotAPI:
    """The Telegram Bot API, faked over HTTP on 127.0.0.1 for one test.

    Point python-telegram-bot at it with ``base_url=fake.base_url`` and
    ``base_file_url=fake.base_file_url`` (or ``**fake.bot_kwargs()``). Thread-safe: the HTTP
    handlers run in server threads, the test calls the helpers from its own thread or loop.

    ``strict_chats`` (default True): the bot may only send to chats a test user has written
    from (or that ``add_chat`` registered); others give "Bad Request: chat not found".
    ``validate_uploads`` (default True): an uploaded photo must decode with Pillow, else
    "Bad Request: IMAGE_PROCESS_FAILED", as on Telegram.
    """

    def __init__(
        self,
        *,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "lookalike_test_bot",
        bot_first_name: str = "Lookalike (test)",
        strict_chats: bool = True,
        validate_uploads: bool = True,
    ) -> None:
        bot_id, sep, _ = token.partition(":")
        if not sep or not bot_id.isdigit():
            raise ValueError(f"token must look like '<digits>:<secret>', got {token!r}")
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(bot_id)
        self.strict_chats = strict_chats
        self.validate_uploads = validate_uploads
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.calls: list[ApiCall] = []
        """Every request the bot made, in the order the server answered them."""
        self.server_errors: list[str] = []
        """Tracebacks of exceptions inside the fake itself (answered with 500)."""

        self._cond = threading.Condition(threading.RLock())
        self._stop_event = threading.Event()
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._local = threading.local()

        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._last_update_id = 0
        self._polls_waiting = 0
        self._connections_done = 0
        self._allowed_updates: set[str] | None = None
        self._poll_generation = 0
        self._webhook_url = ""
        self._users: dict[int, dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._blocked: set[int] = set()
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._last_message_id: dict[int, int] = {}
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_numbers = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._callback_queries: dict[str, bool] = {}  # id -> answered
        self._inline_queries: dict[str, bool] = {}
        self._my_commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, deque[float]] = {}

        methods: list[tuple[str, Callable[[_Request], Any]]] = [
            ("getMe", self._get_me),
            ("logOut", self._true),
            ("close", self._true),
            ("getUpdates", self._get_updates),
            ("setWebhook", self._set_webhook),
            ("deleteWebhook", self._delete_webhook),
            ("getWebhookInfo", self._get_webhook_info),
            ("setMyCommands", self._set_my_commands),
            ("getMyCommands", self._get_my_commands),
            ("deleteMyCommands", self._delete_my_commands),
            ("getChat", self._get_chat),
            ("sendMessage", self._send_message),
            ("sendPhoto", self._send_photo),
            ("sendDocument", self._send_document),
            ("sendMediaGroup", self._send_media_group),
            ("editMessageText", self._edit_message_text),
            ("editMessageCaption", self._edit_message_caption),
            ("editMessageReplyMarkup", self._edit_message_reply_markup),
            ("editMessageMedia", self._edit_message_media),
            ("deleteMessage", self._delete_message),
            ("sendChatAction", self._send_chat_action),
            ("answerCallbackQuery", self._answer_callback_query),
            ("answerInlineQuery", self._answer_inline_query),
            ("getFile", self._get_file),
        ]
        # Accepted and recorded, nothing else: settings a bot may touch at start-up.
        for name in (
            "setMyDescription",
            "setMyShortDescription",
            "setMyName",
            "setChatMenuButton",
            "setMyDefaultAdministratorRights",
            "setMessageReaction",
            "pinChatMessage",
            "unpinChatMessage",
        ):
            methods.append((name, self._true))
        self._methods = {name.lower(): (name, fn) for name, fn in methods}

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("FakeBotAPI already started")
        server = _Server(("127.0.0.1", 0), _Handler)
        server.api = self
        self._server = server
        host, port = server.server_address[:2]
        self._url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeBotAPI:{port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Shut down promptly: wakes long polls and delays, closes open connections."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stop_event.set()
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._cond:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(2.0)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; available after ``start()``."""
        if self._url is None:
            raise RuntimeError("FakeBotAPI not started")
        return self._url

    @property
    def base_url(self) -> str:
        """Value for PTB's ``base_url`` (the token is appended by PTB)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for PTB's ``base_file_url``."""
        return f"{self.url}/file/bot"

    def bot_kwargs(self) -> BotKwargs:
        """``token``, ``base_url`` and ``base_file_url`` for ``telegram.Bot(**...)``."""
        return BotKwargs(token=self.token, base_url=self.base_url, base_file_url=self.base_file_url)

    # ----------------------------------------------------------------- what the bot did

    def calls_to(self, method: str) -> list[ApiCall]:
        """The recorded calls of one method (any outcome), in order."""
        with self._cond:
            return [call for call in self.calls if call.method == method]

    def mark(self) -> int:
        """The number of calls so far, to pass as ``after=`` to ``wait_for_call``."""
        with self._cond:
            return len(self.calls)

    def wait_for_call(
        self,
        method: str,
        *,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 30.0,
        after: int = 0,
    ) -> ApiCall:
        """Block until a call to ``method`` with index >= ``after`` matches ``predicate``.

        Matches calls of any outcome (check ``call.ok`` in the predicate to skip failures).
        Raises AssertionError listing recent calls on timeout. Do not call this from the event
        loop the bot runs in; use ``wait_for_call_async`` there.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            checked = after
            while True:
                for call in self.calls[checked:]:
                    if call.method == method and (predicate is None or predicate(call)):
                        return call
                checked = max(checked, len(self.calls))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    why = "the server stopped" if self._stopping else f"{timeout:g}s passed"
                    raise AssertionError(
                        f"no {method} call (after #{after}"
                        f"{', matching the predicate' if predicate else ''}) before {why}.\n"
                        + self.describe_calls(after=max(0, after - 5))
                    )
                self._cond.wait(remaining)

    async def wait_for_call_async(
        self,
        method: str,
        *,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 30.0,
        after: int = 0,
    ) -> ApiCall:
        """``wait_for_call`` without blocking the event loop (runs it in a worker thread)."""
        return await asyncio.to_thread(
            self.wait_for_call, method, predicate=predicate, timeout=timeout, after=after
        )

    def describe_calls(self, *, after: int = 0, limit: int = 30, polls: bool = False) -> str:
        """Recent calls, one per line; successful getUpdates polls are left out by default."""
        with self._cond:
            shown = [
                call
                for call in self.calls[after:]
                if polls or call.method != "getUpdates" or not call.ok or call.result
            ]
            total = len(self.calls)
        lines = [call.summary() for call in shown[-limit:]]
        head = f"calls #{after}..#{total - 1} ({len(shown)} shown, empty polls hidden):"
        return "\n".join([head, *lines]) if lines else f"no calls since #{after} (total {total})"

    def chat_history(self, chat_id: int) -> list[dict[str, Any]]:
        """Current state of every message in the chat (both sides, deleted ones gone)."""
        with self._cond:
            found = [msg for (cid, _), msg in self._messages.items() if cid == chat_id]
            found.sort(key=lambda msg: int(msg["message_id"]))
            return copy.deepcopy(found)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """Current state of one message, or None if unknown or deleted."""
        with self._cond:
            msg = self._messages.get((chat_id, message_id))
            return copy.deepcopy(msg) if msg is not None else None

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The commands set with setMyCommands for the default scope and language."""
        return self.commands_for()

    def commands_for(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """The commands set for a scope (e.g. ``{"type": "all_private_chats"}``)."""
        with self._cond:
            key = (self._scope_key(scope), language_code)
            return copy.deepcopy(self._my_commands.get(key, []))

    def wait_confirmed(self, *, timeout: float = 30.0) -> None:
        """Block until the bot has confirmed every update queued so far: a getUpdates with an
        offset past it has reached the server. python-telegram-bot asks with that offset only
        after it has put the earlier updates into its Application's update_queue (whose
        ``join()`` then says they have been handled). Raises AssertionError on timeout."""
        with self._cond:
            last = self._last_update_id
        self._wait_until(
            lambda: not any(u["update_id"] <= last for u in self._updates),
            timeout=timeout,
            what=f"updates up to #{last} confirmed",
        )

    async def wait_confirmed_async(self, *, timeout: float = 30.0) -> None:
        """``wait_confirmed`` without blocking the event loop."""
        await asyncio.to_thread(self.wait_confirmed, timeout=timeout)

    def wait_polling(self, *, timeout: float = 30.0) -> None:
        """Block until a getUpdates long poll is waiting at the server for updates."""
        self._wait_until(lambda: self._polls_waiting > 0, timeout=timeout, what="a waiting poll")

    def wait_delays_taken(self, method: str, *, timeout: float = 30.0) -> None:
        """Block until every delay ``delay_next`` queued for ``method`` has been taken by a
        call that reached the server (and is now being held back)."""
        self._wait_until(
            lambda: not self._delays.get(method),
            timeout=timeout,
            what=f"the delayed {method} call(s) arriving",
        )

    async def wait_delays_taken_async(self, method: str, *, timeout: float = 30.0) -> None:
        """``wait_delays_taken`` without blocking the event loop."""
        await asyncio.to_thread(self.wait_delays_taken, method, timeout=timeout)

    @property
    def connections_done(self) -> int:
        """Client connections handled to the end so far (closed, errors reported)."""
        with self._cond:
            return self._connections_done

    def wait_connections_done(self, count: int, *, timeout: float = 30.0) -> None:
        """Block until ``count`` client connections have been handled to the end: closed, and
        any error in the HTTP layer printed by then."""
        self._wait_until(
            lambda: self._connections_done >= count,
            timeout=timeout,
            what=f"{count} connections handled",
        )

    def _wait_until(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Wait on the server's condition until ``condition()`` (checked under its lock)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    why = "the server stopped" if self._stopping else f"{timeout:g}s passed"
                    raise AssertionError(
                        f"no {what} before {why}.\n" + self.describe_calls(polls=True, limit=10)
                    )
                self._cond.wait(remaining)

    @property
    def pending_updates(self) -> int:
        """Queued updates the bot has not confirmed (via getUpdates' offset) yet."""
        with self._cond:
            return len(self._updates)

    @property
    def webhook_url(self) -> str:
        with self._cond:
            return self._webhook_url

    def file_bytes(self, file_id: str) -> bytes:
        """The stored bytes of a file (KeyError if unknown)."""
        with self._cond:
            return self._files[file_id].data

    def stored_file(self, file_id: str) -> StoredFile:
        with self._cond:
            return self._files[file_id]

    # --------------------------------------------------------------------- what users do

    def add_user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        """Register (or update) a user; ``send_*`` create users implicitly."""
        with self._cond:
            user = self._users.get(user_id)
            if user is None:
                user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
                if language_code:
                    user["language_code"] = language_code
                self._users[user_id] = user
            if first_name is not None:
                user["first_name"] = first_name
            if username is not None:
                user["username"] = username
            return copy.deepcopy(user)

    def add_chat(
        self, chat_id: int, *, chat_type: str = "private", title: str | None = None
    ) -> dict[str, Any]:
        """Make a chat known so the bot may write to it without a user writing first."""
        with self._cond:
            if chat_type == "private":
                user = self._users.get(chat_id) or self.add_user(chat_id)
                chat: dict[str, Any] = {
                    "id": chat_id,
                    "type": "private",
                    "first_name": user["first_name"],
                }
                if "username" in user:
                    chat["username"] = user["username"]
            else:
                chat = {"id": chat_id, "type": chat_type, "title": title or f"Chat {chat_id}"}
            self._chats[chat_id] = chat
            return copy.deepcopy(chat)

    def block_bot(self, user_id: int, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends to them get 403 Forbidden."""
        with self._cond:
            if blocked:
                self._blocked.add(user_id)
            else:
                self._blocked.discard(user_id)

    def send_text(
        self,
        *,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a text message; a leading ``/command`` gets a bot_command entity."""
        content: dict[str, Any] = {"text": text}
        entities = _command_entities(text)
        if entities:
            content["entities"] = entities
        return self._user_message(
            "message",
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            username=username,
            reply_to_message_id=reply_to_message_id,
            content=content,
        )

    def send_photo(
        self,
        *,
        user_id: int,
        image: bytes,
        caption: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        media_group_id: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a photo; the bytes become a downloadable file.

        The update carries one PhotoSize (width/height from Pillow, 1x1 if undecodable).
        """
        size = _image_size(image) or (1, 1)
        with self._cond:
            stored = self._store_file("photo", image, width=size[0], height=size[1])
        content: dict[str, Any] = {"photo": [stored.photo_size()]}
        if caption is not None:
            content["caption"] = caption
            entities = _command_entities(caption)
            if entities:
                content["caption_entities"] = entities
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return self._user_message(
            "message",
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            username=username,
            reply_to_message_id=reply_to_message_id,
            content=content,
        )

    def send_album(
        self,
        *,
        user_id: int,
        images: Iterable[bytes],
        caption: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
    ) -> list[dict[str, Any]]:
        """The user sends several photos as one album: one update per photo, sharing a
        ``media_group_id`` (Telegram delivers them as separate updates); caption on the first.
        """
        group_id = str(10**17 + secrets.randbelow(9 * 10**17))
        updates = []
        for position, image in enumerate(images):
            updates.append(
                self.send_photo(
                    user_id=user_id,
                    image=image,
                    caption=caption if position == 0 else None,
                    chat_id=chat_id,
                    chat_type=chat_type,
                    username=username,
                    media_group_id=group_id,
                )
            )
        return updates

    def send_document(
        self,
        *,
        user_id: int,
        data: bytes,
        file_name: str,
        mime_type: str,
        file_size: int | None = None,
        caption: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
    ) -> dict[str, Any]:
        """The user sends a file. ``file_size`` may claim more than ``len(data)`` (e.g. 25 MB
        without storing 25 MB); getFile then refuses it above 20 MB, as Telegram does.
        """
        with self._cond:
            stored = self._store_file(
                "document",
                data,
                file_size=file_size,
                file_name=file_name,
                mime_type=mime_type,
            )
        content: dict[str, Any] = {
            "document": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_name": file_name,
                "mime_type": mime_type,
                "file_size": stored.file_size,
            }
        }
        if caption is not None:
            content["caption"] = caption
        return self._user_message(
            "message",
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            username=username,
            reply_to_message_id=None,
            content=content,
        )

    def send_sticker(
        self,
        *,
        user_id: int,
        emoji: str = "🙂",
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
    ) -> dict[str, Any]:
        """The user sends a (static, 512x512) sticker."""
        with self._cond:
            stored = self._store_file(
                "sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 ", width=512, height=512
            )
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "TestStickers",
            "file_size": stored.file_size,
        }
        return self._user_message(
            "message",
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            username=username,
            reply_to_message_id=None,
            content={"sticker": sticker},
        )

    def send_voice(
        self,
        *,
        user_id: int,
        duration: int = 2,
        data: bytes = b"OggS\x00fake-voice",
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
    ) -> dict[str, Any]:
        """The user sends a voice note."""
        with self._cond:
            stored = self._store_file("voice", data, mime_type="audio/ogg")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": stored.file_size,
        }
        return self._user_message(
            "message",
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            username=username,
            reply_to_message_id=None,
            content={"voice": voice},
        )

    def edit_message(
        self, *, user_id: int, message_id: int, text: str, chat_id: int | None = None
    ) -> dict[str, Any]:
        """The user edits one of their messages (its text, or its caption if it has media)."""
        cid = user_id if chat_id is None else chat_id
        with self._cond:
            original = self._messages.get((cid, message_id))
            if original is None or original.get("from", {}).get("id") != user_id:
                raise AssertionError(
                    f"user {user_id} has no message {message_id} in chat {cid} to edit"
                )
            edited = copy.deepcopy(original)
            key = "text" if "text" in edited else "caption"
            entities_key = "entities" if key == "text" else "caption_entities"
            edited[key] = text
            edited.pop(entities_key, None)
            entities = _command_entities(text)
            if entities:
                edited[entities_key] = entities
            edited["edit_date"] = int(time.time())
            self._messages[(cid, message_id)] = edited
            return self._queue_update("edited_message", edited)

    def press_button(
        self,
        *,
        user_id: int,
        message: dict[str, Any] | ApiCall,
        data: str,
        check: bool = True,
    ) -> dict[str, Any]:
        """The user presses an inline button with ``callback_data == data`` on a bot message.

        ``message`` is the Message dict the bot got back (``call.result``) or the ApiCall
        itself. The update carries the message's *current* state. With ``check`` (default)
        the button must exist on the current inline keyboard (AssertionError otherwise).
        """
        msg = message.result if isinstance(message, ApiCall) else message
        if not isinstance(msg, dict) or "chat" not in msg or "message_id" not in msg:
            raise TypeError("press_button needs a Message dict (e.g. a sendMessage result)")
        key = (int(msg["chat"]["id"]), int(msg["message_id"]))
        with self._cond:
            current = self._messages.get(key)
            if current is None:
                raise AssertionError(f"message {key[1]} in chat {key[0]} is unknown or deleted")
            if check:
                available = _callback_data_of(current)
                if data not in available:
                    raise AssertionError(
                        f"no button with callback_data {data!r} on message {key[1]}; "
                        f"it has {available}"
                    )
            user = self._ensure_user(user_id, None)
            query_id = str(next(self._query_ids) * 1_000_003 + user_id)
            self._callback_queries[query_id] = False
            callback = {
                "id": query_id,
                "from": user,
                "message": copy.deepcopy(current),
                "chat_instance": str(abs(hash(key[0])) % 10**18),
                "data": data,
            }
            return self._queue_update("callback_query", callback)

    def inline_query(
        self, *, user_id: int, query: str, offset: str = "", chat_type: str = "sender"
    ) -> dict[str, Any]:
        """The user types ``@bot query`` in some chat."""
        with self._cond:
            user = self._ensure_user(user_id, None)
            query_id = str(next(self._query_ids) * 1_000_003 + user_id)
            self._inline_queries[query_id] = False
            payload = {
                "id": query_id,
                "from": user,
                "query": query,
                "offset": offset,
                "chat_type": chat_type,
            }
            return self._queue_update("inline_query", payload)

    def queue_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a hand-made update (e.g. ``{"my_chat_member": {...}}``); assigns update_id."""
        if len(update) != 1:
            raise ValueError("an update has exactly one field besides update_id")
        ((kind, payload),) = update.items()
        with self._cond:
            return self._queue_update(kind, payload)

    def add_file(
        self,
        data: bytes,
        *,
        kind: str = "photo",
        file_name: str | None = None,
        mime_type: str | None = None,
        file_size: int | None = None,
    ) -> tuple[str, str]:
        """Store a file as if it had been uploaded before; returns (file_id, file_unique_id)."""
        size = _image_size(data) if kind == "photo" else None
        with self._cond:
            stored = self._store_file(
                kind,
                data,
                width=size[0] if size else 1,
                height=size[1] if size else 1,
                file_name=file_name,
                mime_type=mime_type,
                file_size=file_size,
            )
            return stored.file_id, stored.file_unique_id

    # --------------------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        *,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error.

        The body is ``{"ok": false, "error_code": status, "description": ...}`` plus
        ``"parameters": {"retry_after": n}`` when ``retry_after`` is given. Without a
        description Telegram's usual one is used ("Too Many Requests: retry after N" for 429).
        The call is recorded with ``failed_status``; the method itself does not run.
        Use ``FILE_DOWNLOAD`` as the method to fail file downloads.
        """
        if description is None:
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after or 1}"
            else:
                description = _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}")
        fault = _Fault(status=status, description=description, retry_after=retry_after)
        with self._cond:
            queue = self._faults.setdefault(method, deque())
            queue.extend(fault for _ in range(times))

    def delay_next(self, method: str, seconds: float, times: int = 1) -> None:
        """Sleep ``seconds`` before answering the next ``times`` calls of ``method``.

        The request is still carried out after the delay (as Telegram does when the client
        gave up waiting), so a timed-out sendMessage may still deliver its message.
        """
        with self._cond:
            queue = self._delays.setdefault(method, deque())
            queue.extend(seconds for _ in range(times))

    def clear_faults(self) -> None:
        """Forget all queued faults and delays."""
        with self._cond:
            self._faults.clear()
            self._delays.clear()

    # ========================================================== internals: HTTP plumbing

    def _handle_http(
        self,
        verb: str,
        raw_path: str,
        content_type: str | None,
        body: bytes,
        peer_closed: Callable[[], bool] | None = None,
    ) -> tuple[int, str, bytes]:
        """Answer one HTTP request: (status, content type, body).

        ``peer_closed`` tells whether the client has hung up (checked when recording).
        """
        self._local.peer_closed = peer_closed
        at = time.monotonic()
        split = urllib.parse.urlsplit(raw_path)
        path = urllib.parse.unquote(split.path)
        if path.startswith("/file/bot"):
            token, _, file_path = path[len("/file/bot") :].partition("/")
            return self._serve_file(verb, token, file_path, at)
        if not path.startswith("/bot"):
            return _json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token, _, method = path[len("/bot") :].partition("/")
        call = ApiCall(method=method, params={}, files={}, at=at, http_method=verb)
        try:
            fields, uploads, typed = parse_body(content_type, body)
        except FormError as exc:
            return self._fail(call, 400, f"Bad Request: {exc}")
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        params = _decode_params(query, typed=False)
        params.update(_decode_params(fields, typed=typed))
        call.params = params
        call.files = {name: upload.data for name, upload in uploads.items()}
        call.file_names = {name: upload.filename for name, upload in uploads.items()}
        if token != self.token:
            return self._fail(call, 401, "Unauthorized")
        entry = self._methods.get(method.lower())
        if entry is None:
            return self._fail(call, 404, "Not Found")
        call.method, implementation = entry
        fault = self._take_fault(call.method)
        if fault is not None:
            parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
            return self._fail(call, fault.status, fault.description, parameters)
        try:
            with self._cond:
                result = implementation(_Request(params=params, files=uploads))
        except ApiError as exc:
            return self._fail(call, exc.status, exc.description, exc.parameters)
        return self._succeed(call, result)

    def _serve_file(
        self, verb: str, token: str, file_path: str, at: float
    ) -> tuple[int, str, bytes]:
        call = ApiCall(
            method=FILE_DOWNLOAD, params={"file_path": file_path}, files={}, at=at, http_method=verb
        )
        if token != self.token:
            return self._fail(call, 401, "Unauthorized")
        fault = self._take_fault(FILE_DOWNLOAD)
        if fault is not None:
            parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
            return self._fail(call, fault.status, fault.description, parameters)
        with self._cond:
            stored = self._files_by_path.get(file_path)
        if stored is None:
            return self._fail(call, 404, "Not Found")
        call.result = {"file_id": stored.file_id, "bytes": len(stored.data)}
        self._record(call)
        return 200, "application/octet-stream", stored.data

    def _take_fault(self, method: str) -> _Fault | None:
        """Pop this method's next delay (and sleep it) and next fault."""
        with self._cond:
            delays = self._delays.get(method)
            delay = delays.popleft() if delays else 0.0
            faults = self._faults.get(method)
            fault = faults.popleft() if faults else None
            if delay > 0 or fault is not None:
                self._cond.notify_all()  # for wait_delays_taken
        if delay > 0:
            self._stop_event.wait(delay)
        return fault

    def _record(self, call: ApiCall) -> None:
        peer_closed: Callable[[], bool] | None = getattr(self._local, "peer_closed", None)
        call.client_gone = bool(peer_closed and peer_closed())
        with self._cond:
            call.answered_at = time.monotonic()
            call.index = len(self.calls)
            self.calls.append(call)
            self._cond.notify_all()

    def _succeed(self, call: ApiCall, result: Any) -> tuple[int, str, bytes]:
        call.result = copy.deepcopy(result)
        self._record(call)
        return _json_response(200, {"ok": True, "result": result})

    def _fail(
        self,
        call: ApiCall,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> tuple[int, str, bytes]:
        call.failed_status = status
        call.description = description
        self._record(call)
        payload: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            payload["parameters"] = parameters
        return _json_response(status, payload)

    def _internal_error(self, exc: BaseException) -> tuple[int, str, bytes]:
        with self._cond:
            self.server_errors.append("".join(traceback.format_exception(exc)))
        description = f"Internal Server Error: fake Bot API bug: {exc!r}"
        return _json_response(500, {"ok": False, "error_code": 500, "description": description})

    def _track(self, sock: socket.socket, thread: threading.Thread, active: bool) -> None:
        with self._cond:
            if active:
                self._connections.add(sock)
                self._handler_threads.add(thread)
            else:
                self._connections.discard(sock)
                self._handler_threads.discard(thread)

    # ======================================================= internals: state (under lock)

    def _ensure_user(self, user_id: int, username: str | None) -> dict[str, Any]:
        if user_id not in self._users or username is not None:
            self.add_user(user_id, username=username)
        return copy.deepcopy(self._users[user_id])

    def _ensure_chat(self, user: dict[str, Any], chat_id: int, chat_type: str) -> dict[str, Any]:
        if chat_type == "private":
            if chat_id != user["id"]:
                raise ValueError("a private chat's id is the user's id")
            chat: dict[str, Any] = {
                "id": chat_id,
                "type": "private",
                "first_name": user["first_name"],
            }
            if "username" in user:
                chat["username"] = user["username"]
            self._chats[chat_id] = chat
        elif chat_id not in self._chats or self._chats[chat_id]["type"] != chat_type:
            self._chats[chat_id] = {"id": chat_id, "type": chat_type, "title": f"Chat {chat_id}"}
        return copy.deepcopy(self._chats[chat_id])

    def _next_message_id(self, chat_id: int) -> int:
        number = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = number
        return number

    def _user_message(
        self,
        kind: str,
        *,
        user_id: int,
        chat_id: int | None,
        chat_type: str,
        username: str | None,
        reply_to_message_id: int | None,
        content: dict[str, Any],
    ) -> dict[str, Any]:
        with self._cond:
            user = self._ensure_user(user_id, username)
            chat = self._ensure_chat(user, user_id if chat_id is None else chat_id, chat_type)
            message: dict[str, Any] = {
                "message_id": self._next_message_id(chat["id"]),
                "from": user,
                "chat": chat,
                "date": int(time.time()),
            }
            if reply_to_message_id is not None:
                replied = self._messages.get((chat["id"], reply_to_message_id))
                if replied is None:
                    raise AssertionError(f"no message {reply_to_message_id} to reply to")
                message["reply_to_message"] = _without_reply(replied)
            message.update(copy.deepcopy(content))
            self._messages[(chat["id"], message["message_id"])] = message
            return self._queue_update(kind, message)

    def _queue_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), kind: copy.deepcopy(payload)}
        self._last_update_id = int(update["update_id"])
        self._updates.append(update)
        self._cond.notify_all()
        return copy.deepcopy(update)

    def _store_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_size: int | None = None,
        width: int = 0,
        height: int = 0,
        file_name: str | None = None,
        mime_type: str | None = None,
        url: str | None = None,
    ) -> StoredFile:
        number = next(self._file_numbers)
        prefix = _FILE_ID_PREFIX.get(kind, "BQACAgIAAxk")
        folder, suffix = _FILE_DIR.get(kind, ("documents", ""))
        if kind == "document" and file_name and "." in file_name:
            suffix = "." + file_name.rsplit(".", 1)[1]
        stored = StoredFile(
            file_id=f"{prefix}{number:06d}{secrets.token_urlsafe(24)}",
            file_unique_id=f"AQAD{number:06d}{secrets.token_urlsafe(6)}",
            kind=kind,
            data=data,
            file_size=len(data) if file_size is None else file_size,
            file_path=f"{folder}/file_{number}{suffix}",
            width=width,
            height=height,
            file_name=file_name,
            mime_type=mime_type,
            url=url,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _scope_key(self, scope: Any) -> str:
        if scope is None or scope == {"type": "default"}:
            return "default"
        return json.dumps(scope, sort_keys=True)

    # --------------------------------------------------------------- request validation

    def _resolve_chat(self, chat_id: Any) -> dict[str, Any]:
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        chat: dict[str, Any] | None = None
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for candidate in self._chats.values():
                if candidate.get("username") == chat_id[1:] and candidate["type"] != "private":
                    chat = candidate
        else:
            try:
                number = int(chat_id)
            except (TypeError, ValueError) as exc:
                raise _bad_request("chat not found") from exc
            chat = self._chats.get(number)
            if chat is None and not self.strict_chats:
                chat = self.add_chat(number, chat_type="private" if number > 0 else "group")
        if chat is None:
            raise _bad_request("chat not found")
        if chat["id"] in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _format(
        self, text: Any, parse_mode: Any, entities: Any
    ) -> tuple[str, list[dict[str, Any]]]:
        text = "" if text is None else str(text)
        mode = parse_mode.lower() if isinstance(parse_mode, str) else ""
        if mode == "html":
            try:
                return parse_html(text)
            except HtmlParseError as exc:
                raise _bad_request(f"can't parse entities: {exc}") from exc
        if mode in ("markdown", "markdownv2"):
            return text, []  # not validated; the text is echoed unchanged
        if mode:
            raise _bad_request("unsupported parse_mode")
        if isinstance(entities, list):
            return text, entities
        return text, []

    def _check_markup(self, markup: Any) -> dict[str, Any] | None:
        """Validate reply_markup; return what a Message echoes (only inline keyboards)."""
        if markup is None or markup == "":
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError as exc:
                raise _bad_request("can't parse reply keyboard markup JSON object") from exc
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return None  # reply keyboards, removal and force_reply are not echoed
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad_request(
                        'can\'t parse inline keyboard button: Field "text" must be of type String'
                    )
                if not _BUTTON_ACTIONS & button.keys():
                    raise _bad_request(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not (
                        0 < len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
                    ):
                        raise _bad_request("BUTTON_DATA_INVALID")
        return {"inline_keyboard": copy.deepcopy(rows)}

    def _caption(
        self, caption: Any, parse_mode: Any, entities: Any
    ) -> tuple[str, list[dict[str, Any]]]:
        plain, found = self._format(caption, parse_mode, entities)
        if len(plain) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        return plain, found

    def _text(self, text: Any, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
        if text is None:
            raise _bad_request("message text is empty")
        plain, found = self._format(text, parse_mode, entities)
        if not plain.strip():
            raise _bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return plain, found

    def _input_file(self, req: _Request, value: Any, *, fieldname: str, kind: str) -> StoredFile:
        """Resolve a file given as an upload part, ``attach://`` URI, http(s) URL or file_id."""
        if value is None or value == "":
            upload = req.files.get(fieldname)
            if upload is None:
                raise _bad_request(f"there is no {fieldname} in the request")
            return self._store_upload(upload, kind)
        if not isinstance(value, str):
            raise _bad_request(WRONG_FILE_ID)
        if value.startswith("attach://"):
            upload = req.files.get(value[len("attach://") :])
            if upload is None:
                raise _bad_request(WRONG_FILE_ID)
            return self._store_upload(upload, kind)
        if value.startswith(("http://", "https://")):
            return self._store_file(kind, b"", width=1, height=1, url=value)
        stored = self._files.get(value)
        if stored is None:
            raise _bad_request(WRONG_FILE_ID)
        if stored.kind != kind:
            raise _bad_request("type of file mismatch")
        return stored

    def _store_upload(self, upload: UploadedFile, kind: str) -> StoredFile:
        if not upload.data:
            raise _bad_request("file must be non-empty")
        if kind != "photo":
            return self._store_file(
                kind, upload.data, file_name=upload.filename, mime_type=upload.content_type
            )
        size = _image_size(upload.data)
        if size is None:
            if self.validate_uploads:
                raise _bad_request("IMAGE_PROCESS_FAILED")
            size = (1, 1)
        width, height = size
        if width + height > 10000 or max(width, height) > 20 * min(width, height):
            raise _bad_request("PHOTO_INVALID_DIMENSIONS")
        return self._store_file("photo", upload.data, width=width, height=height)

    def _media_content(self, stored: StoredFile) -> dict[str, Any]:
        if stored.kind == "photo":
            return {"photo": [stored.photo_size()]}
        obj: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
        }
        if stored.kind == "document":
            obj["file_name"] = stored.file_name or "file"
            obj["mime_type"] = stored.mime_type or "application/octet-stream"
        elif stored.kind == "video":
            obj.update(width=stored.width or 1, height=stored.height or 1, duration=1)
        elif stored.kind in ("audio", "voice"):
            obj["duration"] = 1
        return {stored.kind: obj}

    def _bot_message(
        self, chat: dict[str, Any], params: dict[str, Any], content: dict[str, Any]
    ) -> dict[str, Any]:
        """Create, store and return a message from the bot (content must be validated)."""
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat["id"]),
            "from": copy.deepcopy(self.bot_user),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
        }
        reply = params.get("reply_parameters")
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        reply_to = reply_to if reply_to is not None else params.get("reply_to_message_id")
        if reply_to is not None:
            replied = self._messages.get((chat["id"], _as_int(reply_to, 0)))
            if replied is not None:
                message["reply_to_message"] = _without_reply(replied)
            elif not (
                isinstance(reply, dict) and reply.get("allow_sending_without_reply")
            ) and not params.get("allow_sending_without_reply"):
                raise _bad_request("message to be replied not found")
        message.update({k: v for k, v in content.items() if v not in (None, [], "")})
        self._messages[(chat["id"], message["message_id"])] = message
        return message

    def _find_message(self, params: dict[str, Any], not_found: str) -> dict[str, Any] | None:
        """The message an edit/delete refers to; None for inline messages."""
        if params.get("inline_message_id"):
            return None
        chat = self._resolve_chat(params.get("chat_id"))
        message_id = _as_int(params.get("message_id"), 0)
        message = self._messages.get((chat["id"], message_id))
        if message is None:
            raise _bad_request(not_found)
        return message

    def _commit_edit(
        self, message: dict[str, Any], changes: dict[str, Any], removed: Iterable[str]
    ) -> dict[str, Any]:
        if message["from"]["id"] != self.bot_id:
            raise _bad_request("message can't be edited")
        edited = copy.deepcopy(message)
        for key in removed:
            edited.pop(key, None)
        edited.update({k: v for k, v in changes.items() if v not in (None, [], "")})
        comparable = (
            "text",
            "entities",
            "caption",
            "caption_entities",
            "reply_markup",
            "photo",
            "document",
            "video",
            "audio",
        )
        if all(edited.get(k) == message.get(k) for k in comparable):
            raise _bad_request(NOT_MODIFIED)
        edited["edit_date"] = int(time.time())
        self._messages[(edited["chat"]["id"], edited["message_id"])] = edited
        return edited

    # ========================================================= Bot API method implementations

    def _true(self, req: _Request) -> bool:
        return True

    def _get_me(self, req: _Request) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _get_updates(self, req: _Request) -> list[dict[str, Any]]:
        params = req.params
        if self._webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params.get("offset"), 0)
        limit = min(max(_as_int(params.get("limit"), 100), 1), 100)
        try:
            timeout = max(0.0, float(params.get("timeout") or 0))
        except (TypeError, ValueError) as exc:
            raise _bad_request("wrong timeout") from exc
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = set(allowed) if allowed else None
        self._poll_generation += 1
        generation = self._poll_generation
        self._cond.notify_all()  # an older long poll still waiting now ends with 409
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        deadline = time.monotonic() + timeout
        while True:
            if self._stopping:
                return []
            if generation != self._poll_generation:
                raise ApiError(409, _DEFAULT_DESCRIPTIONS[409])
            if self._allowed_updates is not None:
                allowed_kinds = self._allowed_updates
                self._updates = [u for u in self._updates if _update_kind(u) in allowed_kinds]
            if self._updates:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._polls_waiting += 1
            self._cond.notify_all()  # for wait_polling
            try:
                self._cond.wait(remaining)
            finally:
                self._polls_waiting -= 1

    def _set_webhook(self, req: _Request) -> bool:
        url = req.params.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self._webhook_url = str(url)
        if req.params.get("drop_pending_updates") is True:
            self._updates.clear()
        return True

    def _delete_webhook(self, req: _Request) -> bool:
        self._webhook_url = ""
        if req.params.get("drop_pending_updates") is True:
            self._updates.clear()
        return True

    def _get_webhook_info(self, req: _Request) -> dict[str, Any]:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _set_my_commands(self, req: _Request) -> bool:
        commands = req.params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("too many commands specified")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand")
            name = command.get("command")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad_request("BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = (self._scope_key(req.params.get("scope")), str(req.params.get("language_code") or ""))
        self._my_commands[key] = copy.deepcopy(commands)
        return True

    def _get_my_commands(self, req: _Request) -> list[dict[str, Any]]:
        key = (self._scope_key(req.params.get("scope")), str(req.params.get("language_code") or ""))
        return copy.deepcopy(self._my_commands.get(key, []))

    def _delete_my_commands(self, req: _Request) -> bool:
        key = (self._scope_key(req.params.get("scope")), str(req.params.get("language_code") or ""))
        self._my_commands.pop(key, None)
        return True

    def _get_chat(self, req: _Request) -> dict[str, Any]:
        chat = self._resolve_chat(req.params.get("chat_id"))
        return {**copy.deepcopy(chat), "accent_color_id": 0, "max_reaction_count": 11}

    def _send_message(self, req: _Request) -> dict[str, Any]:
        params = req.params
        chat = self._resolve_chat(params.get("chat_id"))
        text, entities = self._text(
            params.get("text"), params.get("parse_mode"), params.get("entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        content = {"text": text, "entities": entities, "reply_markup": markup}
        return self._bot_message(chat, params, content)

    def _send_photo(self, req: _Request) -> dict[str, Any]:
        return self._send_single_file(req, "photo")

    def _send_document(self, req: _Request) -> dict[str, Any]:
        return self._send_single_file(req, "document")

    def _send_single_file(self, req: _Request, kind: str) -> dict[str, Any]:
        params = req.params
        chat = self._resolve_chat(params.get("chat_id"))
        caption, entities = self._caption(
            params.get("caption"), params.get("parse_mode"), params.get("caption_entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        stored = self._input_file(req, params.get(kind), fieldname=kind, kind=kind)
        content = {
            **self._media_content(stored),
            "caption": caption,
            "caption_entities": entities,
            "reply_markup": markup,
        }
        return self._bot_message(chat, params, content)

    def _send_media_group(self, req: _Request) -> list[dict[str, Any]]:
        params = req.params
        chat = self._resolve_chat(params.get("chat_id"))
        media = params.get("media")
        if media is None or media == "":
            raise _bad_request('parameter "media" is required')
        if not isinstance(media, list):
            raise _bad_request("can't parse media JSON object")
        if not media:
            raise _bad_request("there are no messages to send")
        if len(media) > MAX_MEDIA_GROUP:
            raise _bad_request("too many messages to send as an album")
        if len(media) < MIN_MEDIA_GROUP:
            raise _bad_request(
                f"media group must include {MIN_MEDIA_GROUP}-{MAX_MEDIA_GROUP} items"
            )
        kinds = []
        for item in media:
            if not isinstance(item, dict):
                raise _bad_request("can't parse InputMedia: expected an Object")
            kind = item.get("type")
            if kind not in ("photo", "video", "document", "audio"):
                raise _bad_request(f'can\'t parse InputMedia: type "{kind}" is unsupported')
            kinds.append(kind)
        for lonely in ("document", "audio"):
            if lonely in kinds and set(kinds) != {lonely}:
                raise _bad_request(f"{lonely} can't be mixed with other media types")
        contents = []
        for position, item in enumerate(media, start=1):
            caption, entities = self._caption(
                item.get("caption"), item.get("parse_mode"), item.get("caption_entities")
            )
            try:
                stored = self._input_file(
                    req, item.get("media"), fieldname="media", kind=str(item["type"])
                )
            except ApiError as exc:
                reason = exc.description.removeprefix("Bad Request: ")
                raise _bad_request(
                    f"failed to send message #{position} with the error message "
                    f'"{reason[:1].upper()}{reason[1:]}"'
                ) from exc
            contents.append(
                {**self._media_content(stored), "caption": caption, "caption_entities": entities}
            )
        group_id = str(10**17 + secrets.randbelow(9 * 10**17))
        return [
            self._bot_message(chat, params, {**content, "media_group_id": group_id})
            for content in contents
        ]

    def _edit_message_text(self, req: _Request) -> dict[str, Any] | bool:
        params = req.params
        text, entities = self._text(
            params.get("text"), params.get("parse_mode"), params.get("entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        message = self._find_message(params, "message to edit not found")
        if message is None:
            return True
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        return self._commit_edit(
            message,
            {"text": text, "entities": entities, "reply_markup": markup},
            removed=("entities", "reply_markup"),
        )

    def _edit_message_caption(self, req: _Request) -> dict[str, Any] | bool:
        params = req.params
        caption, entities = self._caption(
            params.get("caption"), params.get("parse_mode"), params.get("caption_entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        message = self._find_message(params, "message to edit not found")
        if message is None:
            return True
        if "text" in message:
            raise _bad_request("there is no caption in the message to edit")
        return self._commit_edit(
            message,
            {"caption": caption, "caption_entities": entities, "reply_markup": markup},
            removed=("caption", "caption_entities", "reply_markup"),
        )

    def _edit_message_reply_markup(self, req: _Request) -> dict[str, Any] | bool:
        params = req.params
        markup = self._check_markup(params.get("reply_markup"))
        message = self._find_message(params, "message to edit not found")
        if message is None:
            return True
        return self._commit_edit(message, {"reply_markup": markup}, removed=("reply_markup",))

    def _edit_message_media(self, req: _Request) -> dict[str, Any] | bool:
        params = req.params
        media = params.get("media")
        if not isinstance(media, dict) or media.get("type") not in (
            "photo",
            "video",
            "document",
            "audio",
        ):
            raise _bad_request("can't parse InputMedia")
        caption, entities = self._caption(
            media.get("caption"), media.get("parse_mode"), media.get("caption_entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        message = self._find_message(params, "message to edit not found")
        stored = self._input_file(req, media.get("media"), fieldname="media", kind=media["type"])
        if message is None:
            return True
        if "text" in message:
            raise _bad_request("there is no media in the message to edit")
        return self._commit_edit(
            message,
            {
                **self._media_content(stored),
                "caption": caption,
                "caption_entities": entities,
                "reply_markup": markup,
            },
            removed=(
                "photo",
                "document",
                "video",
                "audio",
                "caption",
                "caption_entities",
                "reply_markup",
            ),
        )

    def _delete_message(self, req: _Request) -> bool:
        message = self._find_message(req.params, "message to delete not found")
        if message is not None:
            del self._messages[(message["chat"]["id"], message["message_id"])]
        return True

    def _send_chat_action(self, req: _Request) -> bool:
        self._resolve_chat(req.params.get("chat_id"))
        if req.params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _answer_callback_query(self, req: _Request) -> bool:
        query_id = str(req.params.get("callback_query_id") or "")
        if self._callback_queries.get(query_id, True):
            raise _bad_request(QUERY_TOO_OLD)
        text = req.params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        self._callback_queries[query_id] = True
        return True

    def _answer_inline_query(self, req: _Request) -> bool:
        query_id = str(req.params.get("inline_query_id") or "")
        if self._inline_queries.get(query_id, True):
            raise _bad_request(QUERY_TOO_OLD)
        results = req.params.get("results")
        if not isinstance(results, list):
            raise _bad_request("can't parse results JSON object")
        if len(results) > 50:
            raise _bad_request("RESULTS_TOO_MUCH")
        self._inline_queries[query_id] = True
        return True

    def _get_file(self, req: _Request) -> dict[str, Any]:
        stored = self._files.get(str(req.params.get("file_id") or ""))
        if stored is None:
            raise _bad_request("invalid file_id")
        if stored.file_size > MAX_DOWNLOAD_SIZE:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }


# ------------------------------------------------------------------------------ helpers


def _json_response(status: int, payload: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _decode_params(raw: dict[str, Any], *, typed: bool) -> dict[str, Any]:
    if typed:
        return dict(raw)
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _STRING_PARAMS or not isinstance(value, str):
            decoded[key] = value
            continue
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    return decoded


def _command_entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    if len(command) < 2:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]


def _callback_data_of(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    rows = markup.get("inline_keyboard") or []
    return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


def _without_reply(message: dict[str, Any]) -> dict[str, Any]:
    replied = copy.deepcopy(message)
    replied.pop("reply_to_message", None)
    return replied


def _update_kind(update: dict[str, Any]) -> str:
    return next(key for key in update if key != "update_id")


# ---------------------------------------------------------------------------- HTTP layer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    api: FakeBotAPI

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.api._cond:
                self.api._connections_done += 1
                self.api._cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.api._track(self.connection, threading.current_thread(), True)

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            # The client reset the connection between requests or mid-request (a bot killed
            # with kill -9, a client timing out): there is nobody left to answer. Any other
            # exception still reaches socketserver's handle_error and prints its traceback.
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track(self.connection, threading.current_thread(), False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; ApiCall records are the log

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _peer_closed(self) -> bool:
        """True if the client has closed its end (EOF waiting on the socket)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _dispatch(self, verb: str) -> None:
        api = self.server.api
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            status, content_type, payload = api._handle_http(
                verb, self.path, self.headers.get("Content-Type"), body, self._peer_closed
            )
        except Exception as exc:  # a bug in the fake: answer 500 and keep the traceback
            status, content_type, payload = api._internal_error(exc)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (timeout, cancelled poll)
