"""Telegram's HTML parse mode, strict enough to reject what Telegram rejects.

Modelled on tdlib's ``parse_html`` (which the Bot API server uses): only the documented tags
are allowed, tags must nest properly, a ``<`` must start a tag, and the named entities
``&lt; &gt; &amp; &quot;`` plus numeric ones are decoded (an unknown ``&name;`` stays as is).
Errors carry tdlib's wording and UTF-8 byte offsets, e.g.
``Unsupported start tag "br" at byte offset 5``; the server prefixes them with
``Bad Request: can't parse entities: ``.

The result is the plain text and the MessageEntity dicts (offsets and lengths in UTF-16 code
units, as Telegram counts them) that a real ``Message`` would carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HtmlParseError", "parse_html", "utf16_len"]

_ENTITY_TYPES: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_CHAR_REF = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8})|([a-zA-Z]{1,10}));")


class HtmlParseError(ValueError):
    """The text is not valid Telegram HTML; ``str(exc)`` is tdlib's message."""


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of MessageEntity offsets)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Open:
    name: str
    offset: int  # UTF-16 offset in the output where the tag's content starts
    attrs: dict[str, str] = field(default_factory=dict)
    language: str | None = None  # for <pre>, set by a nested <code class="language-...">


def _decode_char_ref(match: re.Match[str]) -> str | None:
    dec, hexa, name = match.groups()
    if name is not None:
        return _NAMED_ENTITIES.get(name)
    code = int(dec) if dec is not None else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _unescape(text: str) -> str:
    """Decode character references in an attribute value the way the text is decoded."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "&":
            match = _CHAR_REF.match(text, i)
            char = _decode_char_ref(match) if match else None
            if match and char is not None:
                out.append(char)
                i = match.end()
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[str] = []
        self.out_len = 0  # UTF-16 length of "".join(out)
        self.stack: list[_Open] = []
        self.entities: list[dict[str, Any]] = []

    def byte_offset(self, index: int) -> int:
        return len(self.text[:index].encode("utf-8", "surrogatepass"))

    def emit(self, chunk: str) -> None:
        self.out.append(chunk)
        self.out_len += utf16_len(chunk)

    def parse(self) -> tuple[str, list[dict[str, Any]]]:
        text = self.text
        i = 0
        while i < len(text):
            char = text[i]
            if char == "&":
                match = _CHAR_REF.match(text, i)
                decoded = _decode_char_ref(match) if match else None
                if match and decoded is not None:
                    self.emit(decoded)
                    i = match.end()
                else:
                    self.emit("&")
                    i += 1
            elif char == "<":
                if i + 1 < len(text) and text[i + 1] == "/":
                    i = self.end_tag(i)
                else:
                    i = self.start_tag(i)
            else:
                j = i
                while j < len(text) and text[j] not in "&<":
                    j += 1
                self.emit(text[i:j])
                i = j
        if self.stack:
            raise HtmlParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"'
            )
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.out), self.entities

    def start_tag(self, begin: int) -> int:
        text = self.text
        j = begin + 1
        while j < len(text) and not text[j].isspace() and text[j] != ">":
            j += 1
        if j >= len(text):
            raise HtmlParseError(f"Unclosed start tag at byte offset {self.byte_offset(begin)}")
        name = text[begin + 1 : j].lower()
        if name not in _ENTITY_TYPES:
            raise HtmlParseError(
                f'Unsupported start tag "{name}" at byte offset {self.byte_offset(begin)}'
            )
        attrs: dict[str, str] = {}
        while True:
            while j < len(text) and text[j].isspace():
                j += 1
            if j >= len(text):
                raise HtmlParseError(f"Unclosed start tag at byte offset {self.byte_offset(begin)}")
            if text[j] == ">":
                j += 1
                break
            k = j
            while k < len(text) and not text[k].isspace() and text[k] not in "=>":
                k += 1
            attr_name = text[j:k].lower()
            if not attr_name:  # a stray "=" where a name should be
                raise HtmlParseError(
                    f'Empty attribute name in the tag "{name}" at byte offset '
                    f"{self.byte_offset(begin)}"
                )
            j = k
            while j < len(text) and text[j].isspace():
                j += 1
            value = ""
            if j < len(text) and text[j] == "=":
                j += 1
                while j < len(text) and text[j].isspace():
                    j += 1
                if j >= len(text):
                    raise HtmlParseError(
                        f"Unclosed start tag at byte offset {self.byte_offset(begin)}"
                    )
                if text[j] in "\"'":
                    end = text.find(text[j], j + 1)
                    if end == -1:
                        raise HtmlParseError(
                            f"Unclosed start tag at byte offset {self.byte_offset(begin)}"
                        )
                    value = _unescape(text[j + 1 : end])
                    j = end + 1
                else:
                    k = j
                    while k < len(text) and not text[k].isspace() and text[k] != ">":
                        k += 1
                    value = _unescape(text[j:k])
                    j = k
            attrs[attr_name] = value
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HtmlParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self.byte_offset(begin)}'
            )
        if name == "tg-emoji" and not attrs.get("emoji-id"):
            raise HtmlParseError(
                f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset '
                f"{self.byte_offset(begin)}"
            )
        self.stack.append(_Open(name=name, offset=self.out_len, attrs=attrs))
        return j

    def end_tag(self, begin: int) -> int:
        text = self.text
        end = text.find(">", begin + 2)
        if end == -1:
            raise HtmlParseError(f"Unclosed end tag at byte offset {self.byte_offset(begin)}")
        name = text[begin + 2 : end].strip().lower()
        if not self.stack:
            raise HtmlParseError(f"Unexpected end tag at byte offset {self.byte_offset(begin)}")
        top = self.stack.pop()
        if name != top.name:
            raise HtmlParseError(
                f"Unmatched end tag at byte offset {self.byte_offset(begin)}, "
                f'expected "</{top.name}>", found "</{name}>"'
            )
        self.close(top)
        return end + 1

    def close(self, tag: _Open) -> None:
        length = self.out_len - tag.offset
        parent = self.stack[-1] if self.stack else None
        language = tag.attrs.get("class", "")
        if (
            tag.name == "code"
            and parent is not None
            and parent.name == "pre"
            and language.startswith("language-")
            and parent.offset == tag.offset
        ):
            parent.language = language.removeprefix("language-")
            return
        if length <= 0:
            return
        entity: dict[str, Any] = {
            "type": _ENTITY_TYPES[tag.name],
            "offset": tag.offset,
            "length": length,
        }
        if tag.name == "a":
            href = tag.attrs.get("href", "")
            if not href:
                return
            user = re.fullmatch(r"tg://user\?id=(\d+)", href)
            if user:
                entity["type"] = "text_mention"
                entity["user"] = {"id": int(user.group(1)), "is_bot": False, "first_name": ""}
            else:
                entity["url"] = href
        elif tag.name == "pre" and tag.language:
            entity["language"] = tag.language
        elif tag.name == "blockquote" and "expandable" in tag.attrs:
            entity["type"] = "expandable_blockquote"
        elif tag.name == "tg-emoji":
            entity["custom_emoji_id"] = tag.attrs["emoji-id"]
        self.entities.append(entity)


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML into ``(plain_text, entities)``; raise HtmlParseError if invalid."""
    return _Parser(text).parse()
