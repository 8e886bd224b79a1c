"""`lookalike catalog import DIR [--csv FILE]`: a folder of photos becomes catalogue products.

Running it again changes nothing: an image already stored for its SKU is recognised by its hash
and skipped before any featurisation. Decoding runs in threads while the model works on the
previous batch.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from sqlalchemy import select

from db.models import Product, ProductImage
from search.fields import (
    FieldError,
    ProductFields,
    clean_product_fields,
    sku_from_file_name,
)
from search.preprocess import InvalidImageError
from search.service import CatalogError, PreparedImage, SearchService, content_hash

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
    label: str  # what the summary calls it: the file name, or "line N" of the CSV
    path: Path
    fields: ProductFields
    from_csv: bool


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
            entries.append(ImportEntry(label=path.name, path=path, fields=fields, from_csv=False))
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
            yield ImportEntry(label=label, path=path, fields=fields, from_csv=True)


def import_catalog(
    service: SearchService,
    directory: Path,
    *,
    csv_path: Path | None = None,
    currency: str = "EUR",
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import every image (or CSV row) of `directory`. `progress(n)` is called as n more
    entries are done; `on_total(total)` once the work is known."""
    started = time.perf_counter()
    summary = ImportSummary()
    entries = plan_entries(directory, csv_path, currency=currency, summary=summary)
    if on_total is not None:
        on_total(len(entries))
    advance = progress or (lambda _n: None)

    # Cheap pass first: what is already stored needs no decoding and no model.
    with service.session() as session:
        rows = session.execute(select(ProductImage.content_hash, ProductImage.product_id))
        known = {image_hash: product_id for image_hash, product_id in rows}
        sku_ids = {
            sku: product_id for sku, product_id in session.execute(select(Product.sku, Product.id))
        }
    to_featurise: list[tuple[ImportEntry, bytes]] = []
    for entry in entries:
        try:
            data = entry.path.read_bytes()
        except OSError as exc:
            summary.skipped.append((entry.label, f"cannot read the file: {exc.strerror}"))
            advance(1)
            continue
        owner = known.get(content_hash(data))
        if owner is not None and owner == sku_ids.get(entry.fields.sku):
            if entry.from_csv:
                _, changed = service.update_product(entry.fields)
                (summary.updated if changed else summary.unchanged).append(entry.fields.sku)
            else:
                summary.unchanged.append(entry.fields.sku)
            advance(1)
            continue
        to_featurise.append((entry, data))

    pending = iter(to_featurise)
    while batch := list(islice(pending, batch_size)):
        prepared_batch: list[tuple[ImportEntry, PreparedImage]] = []
        by_label = {entry.label: entry for entry, _ in batch}
        for label, result in service.prepare_many((e.label, data) for e, data in batch):
            if isinstance(result, InvalidImageError):
                summary.skipped.append((label, str(result)))
                advance(1)
            else:
                prepared_batch.append((by_label[label], result))
        if not prepared_batch:
            continue
        vectors = service.embed([prepared for _, prepared in prepared_batch])  # (n, dim)
        summary.featurised += len(prepared_batch)
        for (entry, prepared), vector in zip(prepared_batch, vectors, strict=True):
            try:
                outcome = service.store_prepared(entry.fields, prepared, vector)
            except CatalogError as exc:
                summary.skipped.append((entry.label, str(exc)))
            else:
                if outcome.created_product:
                    summary.added.append(entry.fields.sku)
                elif outcome.created_image:
                    summary.images_added.append(entry.fields.sku)
                else:
                    summary.unchanged.append(entry.fields.sku)
                if entry.from_csv and not outcome.created_product:
                    _, changed = service.update_product(entry.fields)
                    if changed:
                        summary.updated.append(entry.fields.sku)
            advance(1)
    summary.seconds = time.perf_counter() - started
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
