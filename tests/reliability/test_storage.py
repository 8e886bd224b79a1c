"""Storage promises: consistent live backups, generated file names, rotation-proof search."""

from __future__ import annotations

import io
import sqlite3
import threading
from pathlib import Path

import pytest
from PIL import Image

from db.backup import backup_sqlite
from db.media import MediaStore
from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from search.fields import clean_product_fields
from tests.conftest import open_test_engine


@pytest.mark.sqlite_only(
    reason="SQLite's online backup API (`db backup`); pg_dump's job on PostgreSQL"
)
def test_backup_of_a_live_database_while_it_is_written(
    catalog_engine: SearchEngine,
    catalog_settings: Settings,
    tmp_path: Path,
    extractor: Featurizer,
) -> None:
    stop = threading.Event()
    writes = 0

    def keep_writing() -> None:
        nonlocal writes
        while not stop.is_set():
            catalog_engine.history.audit(user_id=1, action="test", outcome="ok", target=str(writes))
            writes += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        source = catalog_settings.sqlite_path
        assert source is not None
        backup = tmp_path / "backup.db"
        pages = backup_sqlite(source, backup)
    finally:
        stop.set()
        writer.join()
    assert pages > 0 and writes > 0
    with sqlite3.connect(backup) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT count(*) FROM products").fetchone()[0] == 300
    # Restore: a engine on the copy (and the same media) answers like the original.
    restored_root = tmp_path / "restored"
    restored_root.mkdir()
    (restored_root / "lookalike.db").write_bytes(backup.read_bytes())
    restored = open_test_engine(
        catalog_settings.model_copy(
            update={"database_url": f"sqlite:///{restored_root / 'lookalike.db'}"}
        ),
        extractor,
    )
    probe = next(catalog_settings.media_dir.rglob("*.jpg")).read_bytes()
    assert [i.product.sku for i in restored.searcher.search_image(probe).items] == [
        i.product.sku for i in catalog_engine.searcher.search_image(probe).items
    ]


def test_stored_file_names_are_generated_never_from_input(
    engine: SearchEngine, catalog_photos: list[Path]
) -> None:
    fields = clean_product_fields(sku="N-1", name="../../etc/passwd", price="1", currency="EUR")
    outcome = engine.catalog.add(fields, catalog_photos[0].read_bytes())
    name = outcome.image.file_name
    assert name == f"{outcome.image.content_hash[:2]}/{outcome.image.content_hash}.jpg"
    with pytest.raises(ValueError):
        engine.media.path_for("../../etc/passwd")
    with pytest.raises(ValueError):
        MediaStore(Path("/tmp")).path_for("ab/../../x.jpg")


def test_exif_rotated_photo_gives_the_same_top_8_as_upright(
    catalog_engine: SearchEngine, catalog_photos: list[Path]
) -> None:
    upright = Image.open(catalog_photos[11]).convert("RGB")
    upright_png = io.BytesIO()
    upright.save(upright_png, "PNG")
    # What a phone writes: the pixels stored sideways, EXIF orientation 6 says "turn right".
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated_png = io.BytesIO()
    sideways.save(rotated_png, "PNG", exif=exif)
    first = catalog_engine.searcher.search_image(upright_png.getvalue())
    second = catalog_engine.searcher.search_image(rotated_png.getvalue())
    assert [i.product.sku for i in first.items] == [i.product.sku for i in second.items]
    assert first.items[0].product.sku == catalog_photos[11].stem
