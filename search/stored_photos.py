"""The catalogue's stored photo files, read again and prepared in batches: what `reindex`
(another backbone) and `refeaturize` (another producer of the same model) both featurise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from db.media import MediaStoreError
from search.featurize import BackboneSpec, InvalidImageError, PreparedImage

if TYPE_CHECKING:
    from search.engine import SearchEngine

PreparedBatch = list[tuple[int, PreparedImage]]  # (image id, prepared), batch_size at most


def prepared_batches(
    engine: SearchEngine,
    images: list[tuple[int, str]],
    *,
    backbone: BackboneSpec,
    batch_size: int,
    failed: list[tuple[int, str]],
    advance: Callable[[int], None],
) -> Iterator[PreparedBatch]:
    """`images` (image id, file name) read lazily from the media store and prepared for
    `backbone` (decoding runs two batches ahead), yielded in batches. A file that cannot be
    read or decoded goes to `failed` as (image id, reason) and is counted by `advance`; the
    caller counts the batches it stores."""

    def read_all() -> Iterator[tuple[str, bytes]]:
        for image_id, file_name in images:
            try:
                yield str(image_id), engine.media.path_for(file_name).read_bytes()
            except (OSError, MediaStoreError) as exc:
                failed.append((image_id, f"cannot read {file_name}: {exc}"))
                advance(1)

    batch: PreparedBatch = []
    for key, result in engine.models.prepare_many(
        read_all(), lookahead=2 * batch_size, backbone=backbone
    ):
        if isinstance(result, InvalidImageError):
            failed.append((int(key), str(result)))
            advance(1)
            continue
        batch.append((int(key), result))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
