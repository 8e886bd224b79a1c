"""What every command shares: one-line errors with exit codes, tables, JSON shapes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from search import ProductRecord, SearchEngine, SearchResult

log = logging.getLogger("lookalike")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A failure to report in one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ---- output helpers ------------------------------------------------------------------------


class ProgressBar:
    """A progress bar on stderr (tqdm) for work whose size is known only once it is planned:
    `on_total(n)` sets the size, `advance(n)` moves it on. A context manager; `quiet` shows
    nothing (and, as tqdm does, nothing is drawn when stderr is not a terminal)."""

    def __init__(self, desc: str, *, quiet: bool = False, unit: str = "img") -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=0, unit=unit, desc=desc, disable=quiet or None, file=sys.stderr)

    def on_total(self, total: int) -> None:
        self._bar.total = total
        self._bar.refresh()

    def advance(self, count: int = 1) -> None:
        self._bar.update(count)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.close()


def format_price(product: ProductRecord) -> str:
    return f"{product.price} {product.currency}" if product.price is not None else "-"


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: TextIO) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out.write(line.rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def product_json(product: ProductRecord, engine: SearchEngine) -> dict[str, Any]:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "price": str(product.price) if product.price is not None else None,
        "currency": product.currency,
        "url": product.url,
        "category": product.category,
        "colour": product.colour,
        "in_stock": product.in_stock,
        "removed": product.removed,
        "images": [str(engine.media.path_for(image.file_name)) for image in product.images],
        "created_at": product.created_at.isoformat(),
        "updated_at": product.updated_at.isoformat(),
    }


def result_json(result: SearchResult, engine: SearchEngine, query: str) -> dict[str, Any]:
    return {
        "query": query,
        "search_id": result.search_id,
        "latency_ms": round(result.latency_ms, 1),
        "model": result.model_name,
        "metric": result.metric,
        "inferred_category": result.inferred_category,
        "filters": result.filters,
        "results": [
            {
                "rank": item.rank,
                **product_json(item.product, engine),
                "image": str(engine.media.path_for(item.image.file_name)),
                "distance": round(item.distance, 6),
                "similarity": round(item.similarity, 2),
            }
            for item in result.items
        ],
    }


def read_image_arg(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", EXIT_BAD_INPUT) from exc
