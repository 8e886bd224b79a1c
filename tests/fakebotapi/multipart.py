"""Request-body decoding for the fake Bot API: urlencoded, JSON and multipart/form-data.

Multipart bodies are split on the boundary by hand (byte-exact for binary uploads; ``cgi`` is
deprecated and ``email``'s body parser is line-oriented); only each part's headers go through
``email``, to read the ``Content-Disposition`` parameters.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

__all__ = ["FormError", "UploadedFile", "parse_body"]


class FormError(ValueError):
    """The request body could not be decoded."""


@dataclass(frozen=True)
class UploadedFile:
    """One multipart part that carried a ``filename``."""

    filename: str
    content_type: str
    data: bytes


def _header_params(content_type: str) -> Message:
    msg = Message()
    msg["Content-Type"] = content_type
    return msg


def parse_body(
    content_type: str | None, body: bytes
) -> tuple[dict[str, Any], dict[str, UploadedFile], bool]:
    """Decode a request body into ``(fields, files, typed)``.

    ``fields`` maps names to strings for form encodings (``typed`` False: the caller decides
    which values are JSON) and to already-typed JSON values for an ``application/json`` body
    (``typed`` True). ``files`` holds the multipart parts that had a filename.
    """
    if not body:
        return {}, {}, False
    header = _header_params(content_type or "application/x-www-form-urlencoded")
    mime = header.get_content_type()
    if mime == "application/json":
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise FormError(f"can't parse JSON body: {exc}") from exc
        if not isinstance(value, dict):
            raise FormError("JSON body must be an object")
        return value, {}, True
    if mime == "multipart/form-data":
        boundary = header.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise FormError("multipart body without boundary")
        fields, files = _parse_multipart(body, boundary.encode("latin-1"))
        return fields, files, False
    text = body.decode("utf-8", "replace")
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
    return dict(pairs), {}, False


def _parse_multipart(
    body: bytes, boundary: bytes
) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise FormError("multipart boundary not found in body")
    fields: dict[str, Any] = {}
    files: dict[str, UploadedFile] = {}
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise FormError("multipart part without a blank line after its headers")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise FormError("multipart part without a name")
        filename = headers.get_filename()
        if filename is None:
            fields[name] = content.decode("utf-8", "replace")
        else:
            files[name] = UploadedFile(
                filename=filename,
                content_type=headers.get_content_type()
                if headers.get("content-type")
                else "application/octet-stream",
                data=content,
            )
    return fields, files
