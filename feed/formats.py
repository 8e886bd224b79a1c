"""Reading a product feed file, streaming: RSS 2.0 or Atom XML with the g: namespace, or a
tab- or comma-separated text feed with the attribute names as its header. Which one is
detected from the first bytes.

The XML is parsed with expat in chunks (bounded memory however long the feed); a document
type declaration may be there (some exporters write a harmless public one), but any entity
declaration is refused before it could be expanded, and no external entity or DTD is ever
read (billion laughs, external entities). Rows come out as RawRecord: a label for messages
("item 12", "line 14") and attribute name -> values. A file that cannot be read as a feed at
all raises FeedFormatError; the sync then changes nothing.

Tab-separated feeds are read as Google defines them: one product per line, cells split on
tabs, no csv quoting rules (an unbalanced '"' swallows nothing); a cell wholly inside quotes
("a ""b"" c") is unquoted, Google's quoted-fields option, within one line. A row with fewer
cells than the header (a file cut mid-row) or with more non-empty cells breaks the whole file.
In text feeds a repeated attribute's values share one cell, comma-separated
(additional_image_link); XML repeats the element instead, so an XML value is never split.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.parsers import expat

from feed.items import RawRow

G_NAMESPACE = "http://base.google.com/ns/1.0"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
# Item children taken without the g: prefix (RSS's and Atom's own elements, Atom's <id> as
# in Google's Atom example); g: wins.
PLAIN_ATTRIBUTES = frozenset({"title", "link", "description", "id"})
# Text feeds' attributes whose one cell holds several comma-separated values.
COMMA_LISTS = frozenset({"additional_image_link"})
CHUNK_BYTES = 64 * 1024
HEAD_BYTES = 4096

FeedFormat = Literal["xml", "tsv", "csv"]


class FeedFormatError(ValueError):
    """The file is not a feed this reader understands; str() is one line."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    label: str  # "item 12" (XML) or "line 14" (text), for messages
    row: RawRow


def detect_format(head: bytes) -> FeedFormat:
    """'xml' when the first non-blank character is '<', else 'tsv' when the header line has a
    tab, else 'csv'."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text:
        raise FeedFormatError("the feed is empty")
    if text.startswith(b"<"):
        return "xml"
    header = text.split(b"\n", 1)[0]
    return "tsv" if b"\t" in header else "csv"


def read_records(path: Path) -> Iterator[RawRecord]:
    """Every row of the feed file at `path`, in order."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise FeedFormatError(f"cannot read {path.name}: {exc.strerror}") from None
    with handle:
        head = handle.read(HEAD_BYTES)
        if not head.removeprefix(b"\xef\xbb\xbf").strip():
            return  # an empty export: no rows (the sync's guard decides what that means)
        kind = detect_format(head)
        handle.seek(0)
        if kind == "xml":
            yield from _xml_records(handle)
        else:
            yield from _text_records(handle, delimiter="\t" if kind == "tsv" else ",")


# ---- XML (RSS 2.0 <item>, Atom <entry>) ----------------------------------------------------


@dataclass
class _XmlState:
    depth: int = 0
    item_depth: int | None = None  # depth of the open <item>/<entry>
    count: int = 0
    key: str | None = None  # the item child whose text is being collected
    key_is_g: bool = False
    text: list[str] = field(default_factory=list)
    g_values: RawRow = field(default_factory=dict)
    plain_values: RawRow = field(default_factory=dict)
    done: list[RawRecord] = field(default_factory=list)


def _split(name: str) -> tuple[str, str]:
    namespace, _, local = name.rpartition(" ")
    return namespace, local


def _refuse_entities(*_args: object) -> None:
    raise FeedFormatError("the XML declares an entity; feeds must not (entities refused)")


def _refuse_external(*_args: object) -> int:
    raise FeedFormatError("the XML refers to an external entity; feeds must not")


def _xml_records(handle: io.BufferedReader) -> Iterator[RawRecord]:
    state = _XmlState()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.EntityDeclHandler = _refuse_entities
    parser.UnparsedEntityDeclHandler = _refuse_entities
    parser.ExternalEntityRefHandler = _refuse_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True

    def start(name: str, attrs: dict[str, str]) -> None:
        state.depth += 1
        namespace, local = _split(name)
        if state.item_depth is None:
            if local in ("item", "entry"):
                state.item_depth = state.depth
                state.g_values, state.plain_values = {}, {}
            return
        if state.depth != state.item_depth + 1:
            return  # deeper than an item's child (g:shipping's parts): not an attribute
        if namespace == G_NAMESPACE:
            state.key, state.key_is_g = local, True
        elif namespace in ("", ATOM_NAMESPACE) and local in PLAIN_ATTRIBUTES:
            if local == "id" and namespace != ATOM_NAMESPACE:
                return  # only Atom's <id> is the product's; an RSS <id> is nobody's
            state.key, state.key_is_g = local, False
            href = attrs.get("href")
            if local == "link" and href and attrs.get("rel", "alternate") == "alternate":
                state.plain_values.setdefault("link", []).append(href)
                state.key = None
        state.text = []

    def characters(data: str) -> None:
        if state.key is not None:
            state.text.append(data)

    def end(name: str) -> None:
        if state.item_depth is not None and state.depth == state.item_depth + 1:
            if state.key is not None:
                target = state.g_values if state.key_is_g else state.plain_values
                target.setdefault(state.key, []).append("".join(state.text).strip())
            state.key = None
        elif state.item_depth is not None and state.depth == state.item_depth:
            state.count += 1
            row = {**state.plain_values, **state.g_values}
            state.done.append(RawRecord(label=f"item {state.count}", row=row))
            state.item_depth = None
        state.depth -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        while chunk := handle.read(CHUNK_BYTES):
            parser.Parse(chunk, False)
            yield from state.done
            state.done.clear()
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise FeedFormatError(
            f"the XML is broken at line {exc.lineno}: {expat.ErrorString(exc.code)}"
        ) from None
    yield from state.done


# ---- text feeds (TSV, CSV) -----------------------------------------------------------------


def _column_name(header: str) -> str:
    name = "_".join(header.strip().lower().split())
    return name.removeprefix("g:")


def _text_records(handle: io.BufferedReader, *, delimiter: str) -> Iterator[RawRecord]:
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace", newline="")
    lines: Iterator[tuple[int, list[str]]]
    if delimiter == "\t":
        lines = _tsv_lines(text)
    else:
        reader = csv.reader(text, delimiter=delimiter)
        lines = ((reader.line_num, cells) for cells in reader)
    try:
        first_line = next(lines, None)
        if first_line is None:
            raise FeedFormatError("the feed is empty")
        names = [_column_name(cell) for cell in first_line[1]]
        if "id" not in names:
            raise FeedFormatError("the feed's header has no id column")
        for number, cells in lines:
            if not any(cell.strip() for cell in cells):
                continue
            _check_width(number, cells, len(names))
            row: RawRow = {}
            for name, cell in zip(names, cells, strict=False):
                if not name or not cell.strip():
                    continue
                values = cell.split(",") if name in COMMA_LISTS else [cell]
                row.setdefault(name, []).extend(value for value in values if value.strip())
            yield RawRecord(label=f"line {number}", row=row)
    except csv.Error as exc:
        raise FeedFormatError(f"the feed is broken: {exc}") from None
    finally:
        text.detach()


def _tsv_lines(text: io.TextIOWrapper) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each line, split on tabs."""
    for number, line in enumerate(text, start=1):
        yield number, [_unquote(cell) for cell in line.rstrip("\r\n").split("\t")]


def _unquote(cell: str) -> str:
    if len(cell) >= 2 and cell.startswith('"') and cell.endswith('"'):
        return cell[1:-1].replace('""', '"')
    return cell


def _check_width(number: int, cells: list[str], width: int) -> None:
    """A row has a cell for each column of the header (fewer: the file was cut mid-row); more
    non-empty cells mean a stray separator, which shifts every value after it."""
    if len(cells) < width:
        raise FeedFormatError(
            f"line {number} has {len(cells)} cells but the header {width}: the file is cut or "
            "broken; nothing changed"
        )
    if any(cell.strip() for cell in cells[width:]):
        raise FeedFormatError(
            f"line {number} has {len(cells)} cells but the header {width} (a stray tab or "
            "comma?); nothing changed"
        )
