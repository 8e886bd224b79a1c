"""Writes of the catalogue's colours that are not a photo's arrival (where `Catalog.store`
stores it): an admin's correction (`correct_colour`) and `lookalike colour backfill`
(`fill_colours`): the colour of every stored image that has none yet (a catalogue imported
before colours existed), from its file, with the same code as a new image's. (A feed's new
colour word for photos a product already holds is written with their variants:
search.photo_variants.)

The backfill is resumable: each batch is committed as it is computed, and a run continues with
the images still without a colour. Images whose file cannot be read or decoded are listed, not
retried in the same run. Neither touches the vector index: colours are read from the database
at search time. An in-memory index's colour memo (search.index.colour_memo) keeps only the
descriptors it has read, never an image's lack of one, so a backfilled image is read afresh."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from db import colours
from db import repository as repo
from db.media import MediaStoreError
from db.records import ProductRecord
from search.colour import stored_colour
from search.errors import CatalogError
from search.featurize import InvalidImageError

if TYPE_CHECKING:
    from search.engine import SearchEngine

__all__ = ["ColourFillSummary", "correct_colour", "fill_colours"]

_BATCH = 64  # images read, described and committed together


@dataclass(slots=True)
class ColourFillSummary:
    computed: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    seconds: float = 0.0


def fill_colours(
    engine: SearchEngine,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ColourFillSummary:
    """Describe every image without a colour; returns what was done."""
    started = time.perf_counter()
    summary = ColourFillSummary()
    advance = progress or (lambda _n: None)
    with engine.sessions() as session:
        if on_total is not None:
            on_total(colours.count_images_without_colour(session))
    after_id = 0
    while True:
        with engine.sessions() as session:
            todo = colours.images_without_colour(session, after_id=after_id, limit=_BATCH)
        if not todo:
            break
        after_id = todo[-1][0]
        _fill_batch(engine, todo, summary)
        advance(len(todo))
    summary.seconds = time.perf_counter() - started
    return summary


def _fill_batch(
    engine: SearchEngine, todo: list[tuple[int, str]], summary: ColourFillSummary
) -> None:
    def read_all() -> Iterator[tuple[str, bytes]]:
        for image_id, file_name in todo:
            try:
                data = engine.media.read(file_name)
            except (OSError, MediaStoreError) as exc:
                summary.failed.append((image_id, f"cannot read {file_name}: {exc}"))
                continue
            yield str(image_id), data

    computed: list[tuple[int, bytes, str]] = []  # (image id, descriptor bytes, name)
    for key, result in engine.models.prepare_many(read_all(), lookahead=_BATCH):
        if isinstance(result, InvalidImageError):
            summary.failed.append((int(key), str(result)))
        elif result.colour is not None:
            computed.append((int(key), *stored_colour(result.colour)))
    with engine.sessions.begin() as session:
        for image_id, colour, name in computed:
            colours.set_colour(session, image_id=image_id, colour=colour, colour_name=name)
    summary.computed += len(computed)


def correct_colour(engine: SearchEngine, sku: str, colour: str | None) -> ProductRecord:
    """An admin's colour name for the product (already `clean_colour`'d), or None to go back to
    the colour computed from its photos. It wins over the computed one and is kept across
    imports and feed syncs (they never write it)."""
    with engine.sessions() as session:
        row = repo.get_product(session, sku=sku)
        if row is None:
            raise CatalogError(f"there is no product with SKU {sku!r}")
        row.colour = colour
        # Not `sessions.begin()`: the row is read again after the commit.
        session.commit()
        session.refresh(row, ["images"])
        return ProductRecord.from_row(row)
