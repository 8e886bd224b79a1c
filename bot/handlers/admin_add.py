"""/add: a photo captioned `/add SKU | Name | Price | URL | Category`, or a short guided
conversation when /add comes alone (photo first, then the details line; /cancel stops).

"Added" is said only once the product, its image file and its vector are stored and searchable
(`SearchEngine.add_photo` does all three atomically). The vector comes from the engine's shared
inference worker, so admin adds queue with customers' searches instead of competing with them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from html import escape
from typing import Any

from telegram import Update
from telegram.constants import ChatAction, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    ApplicationHandlerStop,
    BaseHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.context import BotServices, Context
from bot.drafts import DETAILS, PHOTO, Draft, PhotoRef
from bot.files import DownloadFailure, download
from bot.handlers.admin_common import AdminRequest, audit, authorise
from bot.render import product_card
from bot.replies import chat_action
from lookalike.i18n import N_, Translator
from search import (
    AddOutcome,
    CatalogError,
    FieldError,
    InvalidImageError,
    MediaStoreError,
    ProductFields,
    clean_product_fields,
    clean_sku,
)

log = logging.getLogger(__name__)

CONVERSATION_TIMEOUT_SECONDS = 5 * 60  # a draft unchanged for this long has expired
DRAFT_SWEEP_SECONDS = 30  # how often expired drafts are looked for (and their admins told)

_COMMAND = re.compile(r"^/add(@\w+)?")
_WITH_DETAILS = r"^/add(@\w+)?\s+\S"
_BARE = r"^/add(@\w+)?\s*$"
_CANCEL = re.compile(r"^/cancel(@\w+)?(\s|$)")
_IMAGE = filters.PHOTO | filters.Document.IMAGE | filters.Document.FileExtension("webp")

# The fields of a details line, in their order (the labels only explain it: they are not typed).
FIELDS = N_("SKU | Name | Price | URL | Category")
USAGE = N_(
    "To add a product, send its photo with the caption <code>/add</code> {format} "
    "(URL and category are optional), or send /add alone and I'll ask step by step.\n"
    "A photo captioned <code>/add SKU</code> adds another image to an existing product."
)
ASK_PHOTO = N_("Send me the product's photo (as a photo or an image file), or /cancel to stop.")
ASK_DETAILS = N_(
    "Now send the details in one line: {format}\n"
    "URL and category are optional; just the SKU adds this photo to an existing product. "
    "/cancel stops."
)
TIMED_OUT = N_("The /add conversation timed out: nothing was added. Send /add to start again.")
NOT_AN_IMAGE = N_(
    "That file isn't an image. Send the product photo as a photo or an image file "
    "(JPEG, PNG or WebP)."
)
CANCELLED = N_("Cancelled: nothing was added.")
# "Not added: " and why; a reason raised here (FieldError below) is translated, the engine's
# stay English.
NOT_ADDED = N_("Not added: {reason}.")
NO_PRODUCT_YET = N_(
    "There is no product {sku} yet. To create it, send the details: "
    "SKU | Name | Price | URL | Category"
)
TOO_LARGE = N_("Not added: that file is over 20 MB. Please send a smaller photo.")
DOWNLOAD_FAILED = N_(
    "Not added: I couldn't download that photo from Telegram. Please send it again."
)
UNUSABLE_IMAGE = N_("Not added: I couldn't use that image: {reason}")
NOT_STORED = N_("Not added: the image file could not be stored ({reason}).")
FAILED = N_("Not added: something went wrong (the details are in the log). Please try again.")
MISSING_SKU = N_("the SKU is missing")
NOT_SEPARATED = N_("separate the fields with '|': SKU | Name | Price | URL | Category")
TOO_MANY_FIELDS = N_(
    "too many fields: at most SKU | Name | Price | URL | Category (a name cannot contain '|')"
)
MISSING_PRICE = N_("the price is missing: SKU | Name | Price | URL | Category")


def _format(t: Translator) -> str:
    return f"<code>{escape(t(FIELDS))}</code>"


def usage(t: Translator) -> str:
    return t(USAGE, format=_format(t))


def ask_details(t: Translator) -> str:
    return t(ASK_DETAILS, format=_format(t))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a photo was not added: a marked message and its values (translated when shown)."""

    message: str
    reason: Exception | None = None  # the engine's, for a message with {reason}


@dataclass(frozen=True, slots=True)
class AddRequest:
    sku: str
    fields: ProductFields | None  # None: only a SKU, another photo of an existing product


def parse_details(text: str, *, currency: str) -> AddRequest:
    """`SKU | Name | Price | URL | Category` (or just `SKU`); FieldError says what is wrong."""
    parts = [part.strip() for part in text.split("|")]
    if not parts[0]:
        raise FieldError(MISSING_SKU)
    if len(parts) == 1:
        if len(parts[0].split()) > 1:
            raise FieldError(NOT_SEPARATED)
        return AddRequest(sku=clean_sku(parts[0]), fields=None)
    if len(parts) > 5:
        raise FieldError(TOO_MANY_FIELDS)
    if len(parts) == 2 or not parts[2]:
        raise FieldError(MISSING_PRICE)
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


async def _resolve(req: AdminRequest, request: AddRequest) -> ProductFields | None:
    """The fields to store; for a bare SKU, the existing product's (None, and the admin told,
    when there is no such product)."""
    if request.fields is not None:
        return request.fields
    engine = req.services.engine
    product = await engine.run(engine.catalog.get, request.sku)
    if product is None:
        await req.fail("add", request.sku, NO_PRODUCT_YET, sku=request.sku)
        return None
    return product.fields


async def _store(
    services: BotServices, context: Context, photo: PhotoRef, fields: ProductFields
) -> AddOutcome | Refusal:
    """Download, check, embed and store the photo; a Refusal says why it was not added."""
    data = await download(context.bot, photo.file_id, photo.file_size)
    if data is DownloadFailure.TOO_LARGE:
        return Refusal(TOO_LARGE)
    if isinstance(data, DownloadFailure):
        return Refusal(DOWNLOAD_FAILED)
    try:
        return await services.engine.add_photo(fields, data)
    except InvalidImageError as exc:
        return Refusal(UNUSABLE_IMAGE, exc)
    except CatalogError as exc:
        return Refusal(NOT_ADDED, exc)
    except MediaStoreError as exc:
        return Refusal(NOT_STORED, exc)
    except Exception:
        log.exception("adding a product failed")
        return Refusal(FAILED)


async def add_photo(
    req: AdminRequest, context: Context, photo: PhotoRef, request: AddRequest
) -> bool:
    """Store the photo for the request and tell the admin how it went. True once stored."""
    fields = await _resolve(req, request)
    if fields is None:
        return False
    async with chat_action(context.bot, req.message.chat_id, ChatAction.TYPING):
        outcome = await _store(req.services, context, photo, fields)
    if isinstance(outcome, Refusal):
        await req.fail("add", request.sku, outcome.message, reason=outcome.reason)
        return False
    if photo.is_photo and outcome.created_image and outcome.image.telegram_file_id is None:
        # The admin's photo is these exact bytes: customers' albums can reuse its file_id.
        engine = req.services.engine
        await engine.run(engine.catalog.remember_telegram_file_id, outcome.image.id, photo.file_id)
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
    await req.reply(added_text(outcome, request.fields, req.t))
    return True


def added_text(outcome: AddOutcome, typed: ProductFields | None, t: Translator) -> str:
    product = outcome.product
    sku = escape(product.sku)
    if outcome.created_product:
        lines = [t("✅ Added <b>{sku}</b>: customers can find it now.", sku=sku)]
    elif outcome.created_image:
        photos = t.n("{count} photo now", "{count} photos now", len(product.images))
        lines = [t("✅ Added another photo to <b>{sku}</b> ({photos}).", sku=sku, photos=photos)]
    else:
        lines = [t("This photo is already an image of <b>{sku}</b>: nothing changed.", sku=sku)]
    if typed is not None and not outcome.created_product and typed != product.fields:
        lines.append(t("The product already existed, so the details you typed were not applied."))
    if outcome.near_duplicates:
        similar = ", ".join(
            t(
                "<b>{sku}</b> ({percent} similar)",
                sku=escape(item.product.sku),
                percent=t.percent(item.similarity),
            )
            for item in outcome.near_duplicates
        )
        lines.append(
            t(
                "⚠️ It looks almost the same as {similar}. Please check it's no duplicate.",
                similar=similar,
            )
        )
    return "\n".join(lines) + "\n\n" + product_card(product, staff=True, t=t)


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
        await req.fail("add", _target_of(details), NOT_ADDED, hint=usage(req.t), reason=exc)
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
# The conversation's state is a draft in the database (bot.drafts), so each step's message may
# reach any bot instance. It is written before the bot asks for the next step: the admin never
# answers a question before the draft is ready for the answer. An admin's message in a private
# chat first goes to `continue_draft` (handler group -1), which hands it to the draft's step or
# lets the ordinary handlers have it (commands, a photo while the details are awaited...).


async def start(update: Update, context: Context) -> None:
    """/add typed as text: alone, or with the details (then the photo is asked for)."""
    message = update.effective_message
    details = _details_of(message.text if message else None)
    req = await authorise(update, context, "add", _target_of(details))
    if req is None:
        return
    drafts = req.services.drafts
    if details:
        try:
            parse_details(details, currency=req.services.settings.currency)
        except FieldError as exc:
            await req.services.engine.run(drafts.clear, req.user_id)
            await req.fail("add", _target_of(details), NOT_ADDED, hint=usage(req.t), reason=exc)
            return
    await req.services.engine.run(drafts.start, req.user_id, PHOTO, details=details or None)
    await req.reply(req.t(ASK_PHOTO))


async def start_with_photo(update: Update, context: Context) -> None:
    """A photo captioned just /add: ask for its details."""
    req = await authorise(update, context, "add")
    if req is None:
        return
    await req.services.engine.run(
        req.services.drafts.start, req.user_id, DETAILS, photo=PhotoRef.of(req.message)
    )
    await req.reply(ask_details(req.t))


def _is_image(update: Update) -> bool:
    return bool(_IMAGE.check_update(update))


async def continue_draft(update: Update, context: Context) -> None:
    """An admin's message in a private chat: the next step of their /add draft if it is one
    (then no other handler sees it), else nothing happens here."""
    message, user, chat = update.effective_message, update.effective_user, update.effective_chat
    services = context.bot_data.services
    if message is None or user is None or chat is None or chat.type != ChatType.PRIVATE:
        return
    if not services.is_admin(user.id):
        return
    draft = await services.engine.run(services.drafts.get, user.id)
    if draft is None:
        return
    if draft.expired:  # handled as if there were no draft; the admin is told it timed out
        if await services.engine.run(services.drafts.take, draft):
            await tell_timed_out(services, context.bot, draft, user.language_code)
        return
    command = bool(filters.COMMAND.check_update(update))
    step: Coroutine[Any, Any, None]
    if command and _CANCEL.match(message.text or ""):
        step = cancel(update, context)
    elif draft.step == PHOTO and _is_image(update):
        step = got_photo(update, context, draft)
    elif draft.step == PHOTO and not command:
        step = need_photo(update, context)
    elif draft.step == DETAILS and message.text is not None and not command:
        step = got_details(update, context, draft)
    else:
        return  # another command, or a photo while the details are awaited: not the draft's
    try:
        await step
    except Exception as exc:  # reported as usual, and the message is not handled twice
        await context.application.process_error(update, exc)
    raise ApplicationHandlerStop


async def got_photo(update: Update, context: Context, draft: Draft) -> None:
    req = await authorise(update, context, "add")
    if req is None:
        return
    photo = PhotoRef.of(req.message)
    drafts = req.services.drafts
    if draft.details is None:
        if await req.services.engine.run(drafts.advance, draft, DETAILS, photo=photo):
            await req.reply(ask_details(req.t))
        return  # else another message of this conversation got there first
    if not await req.services.engine.run(drafts.take, draft):
        return
    try:
        request = parse_details(draft.details, currency=req.services.settings.currency)
    except FieldError as exc:  # checked when typed; only a changed setting could do this
        await req.fail("add", _target_of(draft.details), NOT_ADDED, hint=usage(req.t), reason=exc)
        return
    await add_photo(req, context, photo, request)


async def need_photo(update: Update, context: Context) -> None:
    message = update.effective_message
    if message is not None:
        t = await context.bot_data.services.translator_for(update.effective_user)
        text = NOT_AN_IMAGE if message.document is not None else ASK_PHOTO
        await message.reply_text(t(text))


async def got_details(update: Update, context: Context, draft: Draft) -> None:
    message = update.effective_message
    details = (message.text or "").strip() if message else ""
    req = await authorise(update, context, "add", _target_of(details))
    if req is None:
        return
    assert draft.photo is not None  # a draft at step "details" has its photo (bot.drafts)
    try:
        request = parse_details(details, currency=req.services.settings.currency)
    except FieldError as exc:
        await req.fail("add", _target_of(details), NOT_ADDED, hint=ask_details(req.t), reason=exc)
        return  # the draft stays: the admin can send the line again
    if request.fields is None and await _resolve(req, request) is None:
        return  # told there is no such product; the draft stays
    if not await req.services.engine.run(req.services.drafts.take, draft):
        return  # another message of this conversation got there first
    await add_photo(req, context, draft.photo, request)


async def cancel(update: Update, context: Context) -> None:
    """/cancel while a draft is open (without one, /cancel is an unknown command)."""
    req = await authorise(update, context, "cancel")
    if req is None:
        return
    draft = await req.services.engine.run(req.services.drafts.clear, req.user_id)
    await req.audit("add", "failed", _sku_of(draft), error="cancelled by the admin")
    await req.reply(req.t(CANCELLED))


def _sku_of(draft: Draft | None) -> str | None:
    if draft is None or draft.details is None:
        return None
    try:
        return clean_sku(draft.details.split("|", 1)[0].strip())
    except FieldError:
        return None


async def tell_timed_out(
    services: BotServices, bot: Any, draft: Draft, language_code: str | None = None
) -> None:
    """The draft waited too long for its next step (it is deleted already). From the sweeping
    job there is no message, so no Telegram client's language: only a /language choice."""
    await audit(services, draft.user_id, "add", "failed", _sku_of(draft), error="timed out")
    t = await services.translator_for_id(draft.user_id, language_code)
    await bot.send_message(chat_id=draft.user_id, text=t(TIMED_OUT))


async def expire_drafts(context: Context) -> None:
    """A repeating job: drafts nobody continued within the timeout are deleted, and their
    admins told (by whichever instance deletes each first)."""
    services = context.bot_data.services
    for draft in await services.engine.run(services.drafts.take_expired):
        try:
            await tell_timed_out(services, context.bot, draft)
        except TelegramError as exc:
            log.info("could not tell admin %s their /add timed out: %s", draft.user_id, exc)


def handlers() -> list[BaseHandler[Update, Context, None]]:
    """Group 0, before everyone else's: the captioned /add (it never uses a draft), then the
    commands and photos that start a draft. `draft_handlers` go in group -1."""
    new = filters.UpdateType.MESSAGE
    return [
        MessageHandler(new & _IMAGE & filters.CaptionRegex(_WITH_DETAILS), add_captioned),
        MessageHandler(
            new & filters.Document.ALL & ~_IMAGE & filters.CaptionRegex(r"^/add(@\w+)?(\s|$)"),
            add_not_an_image,
        ),
        CommandHandler("add", start, filters=new),
        MessageHandler(new & _IMAGE & filters.CaptionRegex(_BARE), start_with_photo),
    ]


def draft_handlers() -> list[BaseHandler[Update, Context, None]]:
    """Group -1: an admin's private message continues their draft, if they have one. Photos
    captioned /add start something new and never continue a draft."""
    return [
        MessageHandler(
            filters.UpdateType.MESSAGE
            & filters.ChatType.PRIVATE
            & ~filters.CaptionRegex(r"^/add(@\w+)?(\s|$)"),
            continue_draft,
        )
    ]
