"""Bulk import: many products with their photos, pipelined, in bounded memory.

`import_entries` takes any stream of entries (a folder, a CSV, a product feed); running it
again changes nothing: an image already stored for its SKU is recognised by its hash and
skipped before any featurisation. Photos are loaded lazily, decoding runs in threads while the
model works on the current batch, and a writer thread stores the previous batch meanwhile.
`import_directory` is `lookalike catalog import DIR [--csv FILE]`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from db import photos
from db.records import PhotoVariant
from db.tables import Product, ProductImage
from search.catalog import check_product_photo
from search.errors import CatalogError, InvalidImageError
from search.featurize import PreparedImage, content_hash
from search.fields import (
    FieldError,
    ProductFields,
    clean_product_fields,
    sku_from_file_name,
)

if TYPE_CHECKING:
    from search.engine import SearchEngine

__all__ = [
    "CSV_COLUMNS",
    "IMAGE_SUFFIXES",
    "ImportEntry",
    "ImportSummary",
    "featurise_files",
    "import_directory",
    "import_entries",
    "plan_entries",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
CSV_COLUMNS = ("sku", "name", "price", "currency", "url", "category", "image")


@dataclass
class ImportSummary:
    added: list[str] = field(default_factory=list)  # SKUs of new products
    images_added: list[str] = field(default_factory=list)  # SKUs that got another image
    updated: list[str] = field(default_factory=list)  # SKUs whose fields changed (CSV)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or row, reason)
    featurised: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return (
            len(self.added)
            + len(self.images_added)
            + len(self.updated)
            + len(self.unchanged)
            + len(self.skipped)
        )


@dataclass(frozen=True, slots=True)
class ImportEntry:
    label: str  # what the summary calls it: the file name, "line N" of the CSV, a feed row
    fields: ProductFields
    # The photo's bytes, called once, when the pipeline gets to it. May raise OSError (or
    # CatalogError / InvalidImageError with a reason): the entry is then skipped.
    load: Callable[[], bytes]
    # An existing product's name, price, URL and category are replaced by these fields
    # (False for a plain folder of photos, whose names are made up from file names).
    update_fields: bool = True
    # The stock flag of a product this entry creates (a feed's out_of_stock item is created
    # out of stock, never shown in stock meanwhile); an existing product's is left alone.
    in_stock: bool = True
    # The photo's colour as the source names it (a feed's `color` read as one of the colour
    # NAMES): stored instead of the colour named from its pixels. None: the computed one.
    colour_name: str | None = None
    # The variant of the product this photo shows (a feed's row of an item_group_id): its
    # link and price, shown when a search matches this photo. None: the product's own.
    variant: PhotoVariant | None = None


def _humanise(stem: str) -> str:
    return " ".join(part.capitalize() for part in stem.replace("-", " ").replace("_", " ").split())


def plan_entries(
    directory: Path, csv_path: Path | None, *, currency: str, summary: ImportSummary
) -> list[ImportEntry]:
    """The products to import; rows that cannot be used go to summary.skipped."""
    if not directory.is_dir():
        raise CatalogError(f"{directory} is not a folder")
    if csv_path is None:
        entries = []
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                sku = sku_from_file_name(path.stem)
                fields = clean_product_fields(
                    sku=sku, name=_humanise(path.stem), price=None, currency=currency
                )
            except FieldError as exc:
                summary.skipped.append((path.name, str(exc)))
                continue
            entries.append(
                ImportEntry(
                    label=path.name,
                    fields=fields,
                    load=partial(path.read_bytes),
                    update_fields=False,
                )
            )
        return entries
    return list(_csv_entries(directory, csv_path, currency=currency, summary=summary))


def _csv_entries(
    directory: Path, csv_path: Path, *, currency: str, summary: ImportSummary
) -> Iterator[ImportEntry]:
    try:
        handle = csv_path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CatalogError(f"cannot read {csv_path}: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = {"sku", "name", "image"} - set(reader.fieldnames or [])
        if missing:
            raise CatalogError(
                f"{csv_path.name} lacks the column(s) {', '.join(sorted(missing))}; "
                f"expected {','.join(CSV_COLUMNS)}"
            )
        root = directory.resolve()
        for line, row in enumerate(reader, start=2):
            label = f"{csv_path.name} line {line}"
            try:
                fields = clean_product_fields(
                    sku=row.get("sku") or "",
                    name=row.get("name") or "",
                    price=row.get("price"),
                    currency=row.get("currency") or currency,
                    url=row.get("url"),
                    category=row.get("category"),
                )
            except FieldError as exc:
                summary.skipped.append((label, str(exc)))
                continue
            image_name = (row.get("image") or "").strip()
            path = (directory / image_name).resolve()
            # The CSV names a file in DIR: never read outside it.
            if not image_name or path.parent != root or not path.is_file():
                summary.skipped.append((label, f"no image file {image_name!r} in {directory}"))
                continue
            yield ImportEntry(label=label, fields=fields, load=partial(path.read_bytes))


def featurise_files(
    engine: SearchEngine, paths: Iterable[Path], *, batch_size: int = 32
) -> Iterator[tuple[Path, np.ndarray | InvalidImageError]]:
    """(path, (dim,) vector) for each image file, in order; (path, error) for unusable ones.

    The featurisation half of the import pipeline, without storing anything: files read one at
    a time, decoded in threads ahead of the model, featurised in batches of `batch_size`.
    """

    def payloads() -> Iterator[tuple[str, bytes]]:
        for path in paths:
            yield str(path), path.read_bytes()

    batch: list[tuple[Path, PreparedImage]] = []

    def flush() -> Iterator[tuple[Path, np.ndarray | InvalidImageError]]:
        vectors = engine.models.embed([prepared for _, prepared in batch])  # (n, dim)
        for (path, _), vector in zip(batch, vectors, strict=True):
            yield path, vector
        batch.clear()

    for key, result in engine.models.prepare_many(payloads(), lookahead=2 * batch_size):
        if isinstance(result, InvalidImageError):
            yield Path(key), result
            continue
        batch.append((Path(key), result))
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def import_directory(
    engine: SearchEngine,
    directory: Path,
    *,
    csv_path: Path | None = None,
    currency: str = "EUR",
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import every image (or CSV row) of `directory`. `on_total(total)` is called once the
    work is known; `progress(n)` as n more entries are done."""
    started = time.perf_counter()
    summary = ImportSummary()
    entries = plan_entries(directory, csv_path, currency=currency, summary=summary)
    if on_total is not None:
        on_total(len(entries))
    import_entries(engine, entries, batch_size=batch_size, progress=progress, summary=summary)
    summary.seconds = time.perf_counter() - started  # planning included
    log.info(
        "import of %s: %d added, %d updated, %d unchanged, %d skipped in %.1f s",
        directory,
        len(summary.added),
        len(summary.updated),
        len(summary.unchanged),
        len(summary.skipped),
        summary.seconds,
    )
    return summary


def import_entries(
    engine: SearchEngine,
    entries: Iterable[ImportEntry],
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    summary: ImportSummary | None = None,
) -> ImportSummary:
    """Store every entry's product and photo; `progress(n)` as n more entries are done.

    A pipeline with bounded memory, however many entries: photos are loaded lazily; worker
    threads decode the next images while the model works on the current batch; a writer
    thread stores each featurised batch (file, database row, index) while the model works on
    the next one. Results are stored in the order of the entries.
    """
    started = time.perf_counter()
    summary = summary if summary is not None else ImportSummary()
    advance = progress or (lambda _n: None)

    # Cheap check first: what is already stored needs no decoding and no model.
    with engine.sessions() as session:
        rows = session.execute(select(ProductImage.content_hash, ProductImage.product_id))
        known = {(image_hash, product_id) for image_hash, product_id in rows}
        sku_ids = {
            sku: product_id for sku, product_id in session.execute(select(Product.sku, Product.id))
        }
    in_flight: dict[str, ImportEntry] = {}

    def to_featurise() -> Iterator[tuple[str, bytes]]:
        """(label, bytes) of the entries that need the model, loaded one at a time."""
        for entry in entries:
            try:
                data = entry.load()
            except OSError as exc:
                writer.put(_Skip(entry.label, f"cannot read the file: {exc.strerror or exc}"))
                continue
            except (CatalogError, InvalidImageError) as exc:
                writer.put(_Skip(entry.label, str(exc)))
                continue
            product_id = sku_ids.get(entry.fields.sku)
            if product_id is not None and (content_hash(data), product_id) in known:
                writer.put(_Unchanged(entry))
                continue
            # The same bytes in another product are welcome (a set and its base product):
            # decoded for this product's row, featurised only once (_Vectors).
            in_flight[entry.label] = entry
            yield entry.label, data

    writer = _Writer(engine, summary, advance)
    vectors = _Vectors(engine)
    try:
        batch: list[tuple[ImportEntry, PreparedImage]] = []
        decoded = engine.models.prepare_many(to_featurise(), lookahead=2 * batch_size)
        for label, result in decoded:
            entry = in_flight.pop(label)
            if not isinstance(result, InvalidImageError):
                try:  # refused before it is featurised (Catalog.store would refuse it too)
                    check_product_photo(result)
                except InvalidImageError as exc:
                    result = exc
            if isinstance(result, InvalidImageError):
                writer.put(_Skip(label, str(result)))
            else:
                batch.append((entry, result))
            if len(batch) >= batch_size:
                _featurise(vectors, batch, writer, summary)
                batch = []
        if batch:
            _featurise(vectors, batch, writer, summary)
    except BaseException:
        writer.close(raise_error=False)  # the first error is the one to report
        raise
    writer.close()
    if summary.added:
        # A catalogue that has doubled gets its post-processing fitted again (the mean moves).
        engine.models.refit_if_due()
    summary.seconds += time.perf_counter() - started
    return summary


def _featurise(
    vectors_of: _Vectors,
    batch: list[tuple[ImportEntry, PreparedImage]],
    writer: _Writer,
    summary: ImportSummary,
) -> None:
    vectors, featurised = vectors_of([prepared for _, prepared in batch])  # (n, dim)
    summary.featurised += featurised
    # The writer needs the file bytes, not the (224, 224, 3) model input: free that now.
    stored = [
        (entry, dataclasses.replace(prepared, model_input=_NO_PIXELS), vector)
        for (entry, prepared), vector in zip(batch, vectors, strict=True)
    ]
    writer.put(_Store(stored))


_NO_PIXELS = np.zeros((0,), dtype=np.float32)


class _Vectors:
    """Raw vectors of prepared photos, each distinct bytes featurised once: bytes the catalogue
    already holds (in another product) reuse its stored vector, and bytes seen earlier in this
    import reuse the vector computed then (the last RECENT of them, so memory stays bounded)."""

    RECENT = 4096  # vectors kept: 4096 x 512 float32 = 8 MB

    def __init__(self, engine: SearchEngine) -> None:
        self._engine = engine
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, batch: list[PreparedImage]) -> tuple[list[np.ndarray], int]:
        """(one (dim,) vector per photo, how many the model computed)."""
        model_name = self._engine.models.active.name
        missing = {p.content_hash for p in batch} - self._recent.keys()
        if missing:
            with self._engine.sessions() as session:
                stored = photos.raw_vectors_by_hash(
                    session, content_hashes=sorted(missing), model_name=model_name
                )
            for digest, vector in stored.items():
                self._remember(digest, vector)
        todo: dict[str, PreparedImage] = {}
        for prepared in batch:
            if prepared.content_hash not in self._recent:
                todo.setdefault(prepared.content_hash, prepared)
        if todo:
            computed = self._engine.models.embed(list(todo.values()))  # (len(todo), dim)
            for digest, vector in zip(todo, computed, strict=True):
                self._remember(digest, vector)
        return [self._recent[p.content_hash] for p in batch], len(todo)

    def _remember(self, digest: str, vector: np.ndarray) -> None:
        self._recent[digest] = vector
        self._recent.move_to_end(digest)
        while len(self._recent) > self.RECENT:
            self._recent.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _Skip:
    label: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Unchanged:
    entry: ImportEntry


@dataclass(frozen=True, slots=True)
class _Store:
    items: list[tuple[ImportEntry, PreparedImage, np.ndarray]]


_Job = _Skip | _Unchanged | _Store


class _Writer:
    """Applies import results in order in one thread, so storing overlaps the model's work.

    The queue is short (backpressure: the model never runs far ahead of the disk), and an
    error in the writer stops the import at the next `put`.
    """

    def __init__(
        self, engine: SearchEngine, summary: ImportSummary, advance: Callable[[int], None]
    ) -> None:
        self._catalog = engine.catalog
        self._summary = summary
        self._advance = advance
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="import-writer", daemon=True)
        self._thread.start()

    def put(self, job: _Job) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(job)

    def close(self, *, raise_error: bool = True) -> None:
        """Wait for every queued job; re-raise the writer's error, if any."""
        self._queue.put(None)
        self._thread.join()
        if raise_error and self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the import is failing
            try:
                self._apply(job)
            except BaseException as exc:
                self._error = exc

    def _apply(self, job: _Job) -> None:
        summary, catalog = self._summary, self._catalog
        if isinstance(job, _Skip):
            summary.skipped.append((job.label, job.reason))
            self._advance(1)
        elif isinstance(job, _Unchanged):
            entry = job.entry
            if entry.update_fields:
                _, changed = catalog.update(entry.fields)
                (summary.updated if changed else summary.unchanged).append(entry.fields.sku)
            else:
                summary.unchanged.append(entry.fields.sku)
            self._advance(1)
        else:
            for entry, prepared, vector in job.items:
                self._store(entry, prepared, vector)
                self._advance(1)

    def _store(self, entry: ImportEntry, prepared: PreparedImage, vector: np.ndarray) -> None:
        summary, catalog = self._summary, self._catalog
        try:
            outcome = catalog.store(
                entry.fields,
                prepared,
                vector,
                in_stock=entry.in_stock,
                colour_name=entry.colour_name,
                variant=entry.variant,
            )
        except (CatalogError, InvalidImageError) as exc:
            summary.skipped.append((entry.label, str(exc)))
            return
        if outcome.created_product:
            summary.added.append(entry.fields.sku)
        elif outcome.created_image:
            summary.images_added.append(entry.fields.sku)
        else:
            summary.unchanged.append(entry.fields.sku)
        if entry.update_fields and not outcome.created_product:
            _, changed = catalog.update(entry.fields)
            if changed:
                summary.updated.append(entry.fields.sku)
