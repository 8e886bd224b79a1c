"""GET /media/{name}: product images, cached for a year (a name is its content's sha256, so
it never changes), with an ETag and If-None-Match; `?w=` gives a JPEG thumbnail at one of a
fixed set of widths (kept in a small in-memory cache).

The name from the URL is checked against the content-hash pattern (db.media.MediaStore
.path_for refuses anything else) before any file system call, and must name a stored file."""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse
from PIL import Image

from lookalike.i18n import N_
from web.config import THUMBNAIL_WIDTHS
from web.problems import ProblemError

if TYPE_CHECKING:
    from search import SearchEngine

# ab/<64 hex>.<ext>: the names db.media generates (checked again by MediaStore.path_for).
_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tiff)$")
_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}
CACHE_CONTROL = "public, max-age=31536000, immutable"
THUMBNAIL_CACHE_ENTRIES = 512  # ~15 KB each at 320 px: a few MB


class ThumbnailCache:
    """name+width -> JPEG bytes, least recently used first out; thread-safe."""

    def __init__(self, capacity: int = THUMBNAIL_CACHE_ENTRIES) -> None:
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get_or_make(self, engine: SearchEngine, file_name: str, width: int) -> bytes:
        key = (file_name, width)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = make_thumbnail(engine.media.read(file_name), width)
        with self._lock:
            self._items[key] = data
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return data


def make_thumbnail(data: bytes, width: int) -> bytes:
    """A JPEG `width` pixels wide (never wider than the original). Stored images passed the
    engine's checks when added, so they are known to decode within the pixel limit."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        rgb = image.convert("RGB")
    if rgb.width > width:
        rgb = rgb.resize(
            (width, max(1, round(rgb.height * width / rgb.width))), Image.Resampling.LANCZOS
        )
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=82, optimize=True)
    return buffer.getvalue()


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: `*` matches any current representation; tags compare weakly."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _not_found(file_name: str) -> ProblemError:
    return ProblemError(
        404, N_("there is no image {name}"), kind="not-found", values={"name": repr(file_name[:80])}
    )


def router(engine: SearchEngine) -> APIRouter:
    routes = APIRouter(tags=["media"])
    thumbnails = ThumbnailCache()

    @routes.get(
        "/media/{file_name:path}",
        summary="A product image (or its thumbnail)",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "not modified"}},
    )
    async def get_media(
        file_name: str,
        w: Annotated[
            int | None, Query(description=f"thumbnail width, one of {THUMBNAIL_WIDTHS}")
        ] = None,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        if not _NAME.match(file_name):
            raise _not_found(file_name)
        path = engine.media.path_for(file_name)  # checks the pattern again, raises otherwise
        if not await engine.run(path.is_file):
            raise _not_found(file_name)
        if w is not None and w not in THUMBNAIL_WIDTHS:
            raise ProblemError(
                422,
                N_("w must be one of {widths}"),
                kind="invalid-request",
                values={"widths": ", ".join(map(str, THUMBNAIL_WIDTHS))},
            )
        content_hash = file_name.split("/")[1].split(".")[0]
        etag = f'"{content_hash}"' if w is None else f'"{content_hash}-w{w}"'
        headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}
        if if_none_match is not None and _matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        if w is not None:
            data = await engine.run(thumbnails.get_or_make, engine, file_name, w)
            return Response(data, media_type="image/jpeg", headers=headers)
        media_type = _TYPES[file_name.rsplit(".", 1)[1]]
        return FileResponse(path, media_type=media_type, headers=headers)

    return routes
