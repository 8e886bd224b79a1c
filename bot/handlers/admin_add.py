"""/add: a photo captioned `/add SKU | Name | Price | URL | Category`, or a short guided
conversation when /add comes alone (photo first, then the details line; /cancel stops).

"Added" is said only once the product, its image file and its vector are stored and searchable
(SearchService.store_prepared does all three atomically). The vector comes from the shared
inference worker, so admin adds queue with customers' searches instead of competing with them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from html import escape
from typing import Any

from telegram import Message, Update
from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import (
    BaseHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.context import BotServices, Context
from bot.handlers.admin_common import AdminRequest, audit, authorise
from bot.render import product_card
from bot.replies import chat_action
from db.media import MediaStoreError
from db.records import ProductRecord
from search.fields import FieldError, ProductFields, clean_product_fields, clean_sku
from search.preprocess import InvalidImageError
from search.service import AddOutcome, CatalogError

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # a bot cannot download more from Telegram
CONVERSATION_TIMEOUT_SECONDS = 5 * 60
PHOTO, DETAILS = range(2)
_PENDING_KEY = "admin_add"

_COMMAND = re.compile(r"^/add(@\w+)?")
_WITH_DETAILS = r"^/add(@\w+)?\s+\S"
_BARE = r"^/add(@\w+)?\s*$"

FORMAT = "<code>SKU | Name | Price | URL | Category</code>"
USAGE = (
    f"To add a product, send its photo with the caption <code>/add</code> {FORMAT} "
    "(URL and category are optional), or send /add alone and I'll ask step by step.\n"
    "A photo captioned <code>/add SKU</code> adds another image to an existing product."
)
ASK_PHOTO = "Send me the product's photo (as a photo or an image file), or /cancel to stop."
ASK_DETAILS = (
    f"Now send the details in one line: {FORMAT}\n"
    "URL and category are optional; just the SKU adds this photo to an existing product. "
    "/cancel stops."
)
NOT_AN_IMAGE = (
    "That file isn't an image. Send the product photo as a photo or an image file "
    "(JPEG, PNG or WebP)."
)


@dataclass(frozen=True, slots=True)
class PhotoRef:
    file_id: str
    file_size: int | None
    is_photo: bool  # a Telegram photo: its file_id can be sent back as a photo later

    @classmethod
    def of(cls, message: Message) -> PhotoRef:
        if message.photo:
            size = message.photo[-1]
            return cls(size.file_id, size.file_size, is_photo=True)
        assert message.document is not None
        return cls(message.document.file_id, message.document.file_size, is_photo=False)


@dataclass(frozen=True, slots=True)
class AddRequest:
    sku: str
    fields: ProductFields | None  # None: only a SKU, another photo of an existing product


@dataclass(slots=True)
class PendingAdd:
    """What the guided conversation has been given so far (in context.user_data)."""

    photo: PhotoRef | None = None
    request: AddRequest | None = None


def parse_details(text: str, *, currency: str) -> AddRequest:
    """`SKU | Name | Price | URL | Category` (or just `SKU`); FieldError says what is wrong."""
    parts = [part.strip() for part in text.split("|")]
    if not parts[0]:
        raise FieldError("the SKU is missing")
    if len(parts) == 1:
        if len(parts[0].split()) > 1:
            raise FieldError("separate the fields with '|': SKU | Name | Price | URL | Category")
        return AddRequest(sku=clean_sku(parts[0]), fields=None)
    if len(parts) > 5:
        raise FieldError(
            "too many fields: at most SKU | Name | Price | URL | Category "
            "(a name cannot contain '|')"
        )
    if len(parts) == 2 or not parts[2]:
        raise FieldError("the price is missing: SKU | Name | Price | URL | Category")
    fields = clean_product_fields(
        sku=parts[0],
        name=parts[1],
        price=parts[2],
        currency=currency,
        url=parts[3] if len(parts) > 3 else None,
        category=parts[4] if len(parts) > 4 else None,
    )
    return AddRequest(sku=fields.sku, fields=fields)


def _details_of(text: str | None) -> str:
    return _COMMAND.sub("", text or "", count=1).strip()


def _target_of(details: str) -> str | None:
    """The SKU-ish start of a details line, for the audit log (not validated)."""
    return details.split("|", 1)[0].strip()[:64] or None


def _fields_of(product: ProductRecord) -> ProductFields:
    return ProductFields(
        sku=product.sku,
        name=product.name,
        price=product.price,
        currency=product.currency,
        url=product.url,
        category=product.category,
    )


async def _resolve(req: AdminRequest, request: AddRequest) -> ProductFields | None:
    """The fields to store; for a bare SKU, the existing product's (None, and the admin told,
    when there is no such product)."""
    if request.fields is not None:
        return request.fields
    product = await asyncio.to_thread(req.services.search.get_product, request.sku)
    if product is None:
        await req.fail(
            "add",
            request.sku,
            f"There is no product {request.sku} yet. To create it, send the details: "
            "SKU | Name | Price | URL | Category",
        )
        return None
    return _fields_of(product)


async def _store(
    services: BotServices, context: Context, photo: PhotoRef, fields: ProductFields
) -> AddOutcome | str:
    """Download, check, embed and store the photo; a str is why it was not added."""
    if photo.file_size is not None and photo.file_size > MAX_DOWNLOAD_BYTES:
        return "Not added: that file is over 20 MB. Please send a smaller photo."
    try:
        telegram_file = await context.bot.get_file(photo.file_id)
        data = bytes(await telegram_file.download_as_bytearray())
        prepared = await asyncio.to_thread(services.search.prepare, data)
        vector = await services.inference.embed(prepared)
        return await asyncio.to_thread(services.search.store_prepared, fields, prepared, vector)
    except InvalidImageError as exc:
        return f"Not added: I couldn't use that image: {exc}"
    except CatalogError as exc:
        return f"Not added: {exc}."
    except MediaStoreError as exc:
        return f"Not added: the image file could not be stored ({exc})."
    except TelegramError as exc:
        log.warning("could not download an admin's photo: %s", exc)
        return "Not added: I couldn't download that photo from Telegram. Please send it again."
    except Exception:
        log.exception("adding a product failed")
        return "Not added: something went wrong (the details are in the log). Please try again."


async def add_photo(
    req: AdminRequest, context: Context, photo: PhotoRef, request: AddRequest
) -> bool:
    """Store the photo for the request and tell the admin how it went. True once stored."""
    fields = await _resolve(req, request)
    if fields is None:
        return False
    async with chat_action(context.bot, req.message.chat_id, ChatAction.TYPING):
        outcome = await _store(req.services, context, photo, fields)
    if isinstance(outcome, str):
        await req.fail("add", request.sku, outcome)
        return False
    if photo.is_photo and outcome.created_image and outcome.image.telegram_file_id is None:
        # The admin's photo is these exact bytes: customers' albums can reuse its file_id.
        await asyncio.to_thread(
            req.services.search.remember_telegram_file_id, outcome.image.id, photo.file_id
        )
    near = [item.product.sku for item in outcome.near_duplicates]
    await req.audit(
        "add",
        "ok",
        outcome.product.sku,
        created_product=outcome.created_product,
        created_image=outcome.created_image,
        image_id=outcome.image.id,
        near_duplicates=near,
    )
    await req.reply(added_text(outcome, request.fields))
    return True


def added_text(outcome: AddOutcome, typed: ProductFields | None) -> str:
    product = outcome.product
    sku = escape(product.sku)
    if outcome.created_product:
        lines = [f"✅ Added <b>{sku}</b>: customers can find it now."]
    elif outcome.created_image:
        lines = [f"✅ Added another photo to <b>{sku}</b> ({len(product.images)} photos now)."]
    else:
        lines = [f"This photo is already an image of <b>{sku}</b>: nothing changed."]
    if typed is not None and not outcome.created_product and typed != _fields_of(product):
        lines.append("The product already existed, so the details you typed were not applied.")
    if outcome.near_duplicates:
        similar = ", ".join(
            f"<b>{escape(item.product.sku)}</b> ({item.similarity:.0f}% similar)"
            for item in outcome.near_duplicates
        )
        lines.append(f"⚠️ It looks almost the same as {similar}. Please check it's no duplicate.")
    return "\n".join(lines) + "\n\n" + product_card(product, staff=True)


# ---- a photo captioned with /add and the details ----------------------------------------------


async def add_captioned(update: Update, context: Context) -> None:
    message = update.effective_message
    details = _details_of(message.caption if message else None)
    req = await authorise(update, context, "add", _target_of(details))
    if req is None:
        return
    try:
        request = parse_details(details, currency=req.services.settings.currency)
    except FieldError as exc:
        await req.fail("add", _target_of(details), f"Not added: {exc}.", hint=USAGE)
        return
    await add_photo(req, context, PhotoRef.of(req.message), request)


async def add_not_an_image(update: Update, context: Context) -> None:
    """A file that is not an image, captioned /add."""
    message = update.effective_message
    details = _details_of(message.caption if message else None)
    req = await authorise(update, context, "add", _target_of(details))
    if req is not None:
        await req.fail("add", _target_of(details), NOT_AN_IMAGE)


# ---- the guided conversation ------------------------------------------------------------------
#
# Updates are handled concurrently, and a ConversationHandler sets its new state only when the
# callback returns. So a callback that changes the state does not await its reply (or the add):
# it schedules it and returns at once, and the admin never sees "send the photo" before the
# conversation is ready for the photo.


def _after_return(update: Update, context: Context, work: Coroutine[Any, Any, object]) -> None:
    """Run `work` once the callback has returned and the new state is set (errors still reach
    the error handler)."""
    context.application.create_task(work, update=update)


def _pending(context: Context) -> PendingAdd:
    data = context.user_data
    if data is None:
        return PendingAdd()
    pending = data.get(_PENDING_KEY)
    if not isinstance(pending, PendingAdd):
        pending = PendingAdd()
        data[_PENDING_KEY] = pending
    return pending


def _forget(context: Context) -> PendingAdd | None:
    """Take the conversation's data out (before any await: a second message finds nothing)."""
    pending = context.user_data.pop(_PENDING_KEY, None) if context.user_data else None
    return pending if isinstance(pending, PendingAdd) else None


async def start(update: Update, context: Context) -> int:
    """/add typed as text: alone, or with the details (then the photo is asked for)."""
    message = update.effective_message
    details = _details_of(message.text if message else None)
    req = await authorise(update, context, "add", _target_of(details))
    if req is None:
        return ConversationHandler.END
    _forget(context)
    if details:
        try:
            request = parse_details(details, currency=req.services.settings.currency)
        except FieldError as exc:
            reason = f"Not added: {exc}."
            _after_return(update, context, req.fail("add", _target_of(details), reason, hint=USAGE))
            return ConversationHandler.END
        _pending(context).request = request
    _after_return(update, context, req.reply(ASK_PHOTO))
    return PHOTO


async def start_with_photo(update: Update, context: Context) -> int:
    """A photo captioned just /add: ask for its details."""
    req = await authorise(update, context, "add")
    if req is None:
        return ConversationHandler.END
    _forget(context)
    _pending(context).photo = PhotoRef.of(req.message)
    _after_return(update, context, req.reply(ASK_DETAILS))
    return DETAILS


async def got_photo(update: Update, context: Context) -> int:
    req = await authorise(update, context, "add")
    if req is None:
        return ConversationHandler.END
    photo = PhotoRef.of(req.message)
    pending = _forget(context)
    if pending is None or pending.request is None:
        _pending(context).photo = photo
        _after_return(update, context, req.reply(ASK_DETAILS))
        return DETAILS
    _after_return(update, context, add_photo(req, context, photo, pending.request))
    return ConversationHandler.END


async def need_photo(update: Update, context: Context) -> None:
    message = update.effective_message
    if message is not None:
        text = NOT_AN_IMAGE if message.document is not None else ASK_PHOTO
        await message.reply_text(text)


async def got_details(update: Update, context: Context) -> int | None:
    message = update.effective_message
    details = (message.text or "").strip() if message else ""
    req = await authorise(update, context, "add", _target_of(details))
    if req is None:
        return ConversationHandler.END
    pending = _pending(context)
    if pending.photo is None:
        _forget(context)
        _after_return(update, context, req.reply("Please start again with /add."))
        return ConversationHandler.END
    photo = pending.photo
    try:
        request = parse_details(details, currency=req.services.settings.currency)
    except FieldError as exc:
        await req.fail("add", _target_of(details), f"Not added: {exc}.", hint=ASK_DETAILS)
        return None  # stay: the admin can send the line again
    if request.fields is None and await _resolve(req, request) is None:
        return None  # told there is no such product; stay
    if _forget(context) is not pending:
        return None  # another message of this conversation got there first
    _after_return(update, context, add_photo(req, context, photo, request))
    return ConversationHandler.END


async def cancel(update: Update, context: Context) -> int:
    pending = _forget(context)
    req = await authorise(update, context, "cancel")
    if req is None:
        return ConversationHandler.END
    target = pending.request.sku if pending and pending.request else None
    await req.audit("add", "failed", target, error="cancelled by the admin")
    _after_return(update, context, req.reply("Cancelled: nothing was added."))
    return ConversationHandler.END


async def timed_out(update: object, context: Context) -> None:
    """The conversation waited too long for the next step."""
    _forget(context)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    user = update.effective_user
    if user is not None:
        await audit(context.bot_data.services, user.id, "add", "failed", error="timed out")
    await context.bot.send_message(
        chat_id=update.effective_chat.id,
        text="The /add conversation timed out: nothing was added. Send /add to start again.",
    )


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """The captioned /add first (it never enters the conversation), then the conversation."""
    new = filters.UpdateType.MESSAGE
    image = filters.PHOTO | filters.Document.IMAGE | filters.Document.FileExtension("webp")
    conversation: ConversationHandler[Context] = ConversationHandler(
        entry_points=[
            CommandHandler("add", start, filters=new),
            MessageHandler(new & image & filters.CaptionRegex(_BARE), start_with_photo),
        ],
        states={
            PHOTO: [
                MessageHandler(new & image, got_photo),
                MessageHandler(new & ~filters.COMMAND, need_photo),
            ],
            DETAILS: [MessageHandler(new & filters.TEXT & ~filters.COMMAND, got_details)],
            ConversationHandler.TIMEOUT: [TypeHandler(Update, timed_out)],
        },
        fallbacks=[CommandHandler("cancel", cancel, filters=new)],
        allow_reentry=True,
        per_chat=True,
        per_user=True,
        conversation_timeout=CONVERSATION_TIMEOUT_SECONDS,
    )
    return [
        MessageHandler(new & image & filters.CaptionRegex(_WITH_DETAILS), add_captioned),
        MessageHandler(
            new & filters.Document.ALL & ~image & filters.CaptionRegex(r"^/add(@\w+)?(\s|$)"),
            add_not_an_image,
        ),
        conversation,  # type: ignore[list-item]
    ]
