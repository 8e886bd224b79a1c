"""The catalogue and search engine on real photos, a real SQLite file and the real VGG16."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.neighbors import NearestNeighbors
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.media import ORPHAN_GRACE_SECONDS, MediaStore, MediaStoreError
from db.tables import Embedding, Product, ProductImage, SearchLog
from lookalike.settings import Settings
from search import Requester, SearchEngine, SearchQuery, retire_photos
from search.featurize.featurizer import Featurizer
from search.featurize.preprocess import InvalidImageError
from search.fields import clean_product_fields
from search.importer import import_directory
from search.postprocess import PostProcessor
from tests import images
from tests.conftest import open_test_engine


def fields(sku: str, name: str = "Test shoe", price: str | None = "49.90", **extra: str):  # type: ignore[no-untyped-def]
    return clean_product_fields(sku=sku, name=name, price=price, currency="EUR", **extra)


def reencode(data: bytes, quality: int = 90) -> bytes:
    """The same picture as other bytes (what a shop's second upload of a photo looks like)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def media_files(settings: Settings) -> set[str]:
    root = settings.media_dir
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_import_gives_300_products_and_each_photo_finds_itself_first(
    catalog_engine: SearchEngine, catalog_photos: list[Path]
) -> None:
    assert len(catalog_photos) == 300
    with catalog_engine.sessions() as session:
        assert repo.count_products(session) == 300
    assert len(catalog_engine.models.index) == 300
    for photo in catalog_photos[::12]:  # 25 of them
        result = catalog_engine.searcher.search_image(photo.read_bytes())
        assert len(result.items) == 8
        first = result.items[0]
        assert first.product.sku == photo.stem
        assert first.distance < 1e-6
        assert first.similarity > 99.99
        # In the order of the number shown: shape and colour blended (COLOUR_WEIGHT).
        shown = [item.similarity for item in result.items]
        assert shown == sorted(shown, reverse=True)
        assert len({item.product.id for item in result.items}) == 8


def test_import_again_changes_nothing(
    catalog_engine: SearchEngine, footwear: Path, catalog_settings: Settings
) -> None:
    files_before = media_files(catalog_settings)
    summary = import_directory(catalog_engine, footwear / "catalog")
    assert summary.added == [] and summary.skipped == [] and summary.featurised == 0
    assert len(summary.unchanged) == 300
    assert media_files(catalog_settings) == files_before
    with catalog_engine.sessions() as session:
        assert repo.count_products(session) == 300
        assert session.scalar(select(func.count(Embedding.id))) == 300


def test_ranking_on_real_vgg16_features_matches_scikit_learn(
    catalog_engine: SearchEngine, extractor: Featurizer, footwear: Path
) -> None:
    """The real ImageNet vectors, stored as BLOBs and loaded into the index, rank exactly
    as the prototype's NearestNeighbors(metric="cosine") does."""
    reference = np.load(footwear / "vgg16_avgpool_reference.npy")  # (300, 512) float32
    names = (footwear / "vgg16_avgpool_reference.txt").read_text().split()
    assert reference.shape == (300, 512) and len(names) == 300
    with catalog_engine.sessions() as session:
        rows = session.execute(select(Product.sku, ProductImage.id).join(ProductImage))
        image_of_sku = {sku: image_id for sku, image_id in rows}
        for name, vector in zip(names, reference, strict=True):
            session.execute(
                update(Embedding)
                .where(Embedding.image_id == image_of_sku[Path(name).stem])
                .values(vector=repo.vector_to_blob(vector))
            )
        session.commit()
    # Plain cosine: no post-processing, no query expansion (the prototype's method). Opening
    # an engine with another POSTPROCESS fits it again on the stored vectors.
    plain = SearchEngine.open(
        replace(catalog_engine.config, postprocess="none", query_expansion=0),
        featurizer_provider=lambda _backbone: extractor,
    )

    neighbours = NearestNeighbors(n_neighbors=8, metric="cosine").fit(reference)
    distances, indices = neighbours.kneighbors(reference)
    for row, name in enumerate(names):
        result = plain.searcher.search_vector(reference[row], SearchQuery(k=8))
        got = [item.product.sku for item in result.items]
        want = [Path(names[i]).stem for i in indices[row]]
        got_distances = np.array([item.distance for item in result.items])
        np.testing.assert_allclose(got_distances, distances[row], atol=1e-5)
        if got != want:  # only exact ties may swap places
            for g, w, d in zip(got, want, distances[row], strict=True):
                assert g == w or np.isclose(d, distances[row], atol=1e-6).sum() > 1, (name, got)
        assert got[0] == Path(name).stem

    # The live default: sqrt + centring fitted on the catalogue. The same ranking as
    # scikit-learn on the post-processed vectors, and the precision@8 `lookalike evaluate`
    # reports for sqrt+centre (docs/evaluation.md: 0.8533).
    plain.close()
    centred = SearchEngine.open(
        replace(catalog_engine.config, postprocess="sqrt-centre", query_expansion=0),
        featurizer_provider=lambda _backbone: extractor,
    )
    post = PostProcessor.fit(reference, power=0.5, centre=True)
    transformed = post.transform(reference)  # (300, 512)
    neighbours = NearestNeighbors(n_neighbors=9, metric="cosine").fit(transformed)
    distances, indices = neighbours.kneighbors(transformed)
    labels = {
        Path(row["file"]).stem: row["category"]
        for row in csv.DictReader((footwear / "labels.csv").open())
    }
    hits = 0
    for row, name in enumerate(names):
        own = centred.catalog.require(Path(name).stem)
        result = centred.searcher.search_vector(
            reference[row], SearchQuery(k=8), exclude_product_ids=[own.id]
        )
        got_distances = np.array([item.distance for item in result.items])
        np.testing.assert_allclose(got_distances, distances[row][1:], atol=1e-4)
        hits += sum(labels[item.product.sku] == labels[own.sku] for item in result.items)
    assert hits / (8 * len(names)) == pytest.approx(0.8533, abs=5e-4)
    centred.close()


def test_add_remove_restore_stock(
    catalog_engine: SearchEngine,
    catalog_settings: Settings,
    catalog_photos: list[Path],
    extractor: Featurizer,
) -> None:
    photo = reencode(catalog_photos[5].read_bytes(), quality=70)
    outcome = catalog_engine.catalog.add(fields("NEW-1", name="Red pump", category="heel"), photo)
    assert outcome.created_product and outcome.created_image
    assert outcome.product.price == Decimal("49.90")
    # It looks like the product whose photo it re-encodes: the admin is warned.
    assert [n.product.sku for n in outcome.near_duplicates][:1] == [catalog_photos[5].stem]

    def top_skus() -> list[str]:
        return [item.product.sku for item in catalog_engine.searcher.search_image(photo).items]

    assert top_skus()[0] == "NEW-1"
    catalog_engine.catalog.remove("NEW-1")
    assert "NEW-1" not in top_skus()
    assert catalog_engine.catalog.get("NEW-1") is not None  # kept in the database
    catalog_engine.catalog.restore("NEW-1")
    assert top_skus()[0] == "NEW-1"
    catalog_engine.catalog.set_stock("NEW-1", in_stock=False)
    assert "NEW-1" not in top_skus()
    hidden = catalog_engine.searcher.search_image(photo, SearchQuery(include_inactive=True))
    assert hidden.items[0].product.sku == "NEW-1"
    catalog_engine.catalog.set_stock("NEW-1", in_stock=True)
    catalog_engine.catalog.remove(catalog_photos[5].stem)

    # A new engine on the same files (what a restart sees) agrees.
    again = open_test_engine(catalog_settings, extractor)
    skus = [item.product.sku for item in again.searcher.search_image(photo).items]
    assert skus[0] == "NEW-1"
    assert catalog_photos[5].stem not in skus


def test_second_image_for_a_product_and_one_hit_per_product(
    catalog_engine: SearchEngine, catalog_photos: list[Path]
) -> None:
    sku = catalog_photos[0].stem
    second = reencode(catalog_photos[1].read_bytes(), quality=60)
    outcome = catalog_engine.catalog.add(fields(sku), second)
    assert not outcome.created_product and outcome.created_image
    assert len(outcome.product.images) == 2
    again = catalog_engine.catalog.add(fields(sku), second)
    assert not again.created_image  # the same bytes twice are one image
    result = catalog_engine.searcher.search_image(second)
    skus = [item.product.sku for item in result.items]
    assert skus[0] == sku and len(set(skus)) == len(skus)
    assert result.items[0].image.id == outcome.image.id  # the image that matched best


def test_one_photo_in_two_products_is_one_file_and_finds_both_once(
    catalog_engine: SearchEngine, catalog_settings: Settings, catalog_photos: list[Path]
) -> None:
    """A set and its base product may show the same photo (Google's feeds allow it): each gets
    its own row, the file is stored once, the vector computed once is the same, and a search
    shows both products, each once. The admin is told which product has it already."""
    base, other = catalog_photos[1].stem, catalog_photos[0].stem
    photo = catalog_photos[1].read_bytes()
    files_before = media_files(catalog_settings)
    outcome = catalog_engine.catalog.add(fields(other), photo)  # exact bytes of `base`
    assert outcome.created_image and not outcome.created_product
    assert base in [item.product.sku for item in outcome.near_duplicates]
    assert media_files(catalog_settings) == files_before  # the file is shared
    again = catalog_engine.catalog.add(fields(other), photo)
    assert not again.created_image  # in one product, the same bytes twice are one image
    skus = [item.product.sku for item in catalog_engine.searcher.search_image(photo).items]
    assert {base, other} <= set(skus[:2]) and len(set(skus)) == len(skus)
    # Retiring it from one product keeps the file the other one still shows.
    catalog_engine.catalog.add(fields(other), reencode(photo, quality=50))
    retire_photos(catalog_engine, other, [outcome.image.content_hash])
    swept = catalog_engine.catalog.sweep_orphan_files(grace_seconds=0)
    assert outcome.image.file_name not in swept
    assert catalog_engine.media.read(outcome.image.file_name) == photo


def test_filters_category_and_max_price(engine: SearchEngine, catalog_photos: list[Path]) -> None:
    for i, photo in enumerate(catalog_photos[:6]):
        category = "heel" if i % 2 else "sneaker"
        engine.catalog.add(
            fields(f"P{i}", price=f"{10 * (i + 1)}.00", category=category), photo.read_bytes()
        )
    query = catalog_photos[0].read_bytes()
    assert len(engine.searcher.search_image(query).items) == 6  # fewer than 8 products: all of them
    heels = engine.searcher.search_image(query, SearchQuery(category="heel"))
    assert {i.product.category for i in heels.items} == {"heel"} and len(heels.items) == 3
    cheap = engine.searcher.search_image(query, SearchQuery(max_price=Decimal("30")))
    assert {i.product.sku for i in cheap.items} == {"P0", "P1", "P2"}
    assert engine.searcher.search_image(query, SearchQuery(category="boot")).items == []


def test_products_like_this_one_use_stored_vectors(
    catalog_engine: SearchEngine, catalog_photos: list[Path]
) -> None:
    product = catalog_engine.catalog.require(catalog_photos[3].stem)
    direct = catalog_engine.searcher.search_image(catalog_photos[3].read_bytes(), SearchQuery(k=9))
    _, similar = catalog_engine.searcher.similar_to_product(product.id)
    assert product.sku not in [i.product.sku for i in similar.items]
    assert [i.product.sku for i in similar.items] == [i.product.sku for i in direct.items[1:]]


def test_logged_search_can_be_shown_again(
    catalog_engine: SearchEngine, catalog_photos: list[Path]
) -> None:
    result = catalog_engine.searcher.search_image(
        catalog_photos[7].read_bytes(), who=Requester(user_ref="u1", source="cli")
    )
    assert result.search_id is not None
    shown = catalog_engine.searcher.get_search(result.search_id)
    assert shown is not None
    assert [i.product.sku for i in shown.items] == [i.product.sku for i in result.items]
    catalog_engine.catalog.remove(result.items[0].product.sku)
    shown = catalog_engine.searcher.get_search(result.search_id)
    assert shown is not None and len(shown.items) == 7  # removed products are not shown
    assert catalog_engine.searcher.get_search(10**9) is None
    with catalog_engine.sessions() as session:
        row = session.get(SearchLog, result.search_id)
        assert row is not None and row.user_ref == "u1" and len(row.results) == 8


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"just some text, not a photo\n", "image"),
        (b"", "empty"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "image"),
    ],
)
def test_bad_files_change_nothing(
    catalog_engine: SearchEngine, catalog_settings: Settings, payload: bytes, message: str
) -> None:
    files_before = media_files(catalog_settings)
    with pytest.raises(InvalidImageError, match=f"(?i){message}"):
        catalog_engine.catalog.add(fields("BAD-1"), payload)
    with pytest.raises(InvalidImageError):
        catalog_engine.searcher.search_image(payload)
    assert catalog_engine.catalog.get("BAD-1") is None
    assert media_files(catalog_settings) == files_before
    assert len(catalog_engine.models.index) == 300


class FailingCommitSession(Session):
    """A session whose commit fails like a full disk or a lost database would."""

    def commit(self) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))


class FullDiskMediaStore(MediaStore):
    def save(self, data: bytes, *, content_hash: str, image_format: str):  # type: ignore[no-untyped-def]
        raise MediaStoreError("the disk is full: the image could not be saved")


def engine_with(
    engine: SearchEngine,
    extractor: Featurizer,
    *,
    session_class: type[Session] = Session,
    media: MediaStore | None = None,
) -> SearchEngine:
    """Another engine over the same database and files, with one part that fails."""
    database = engine.sessions.kw["bind"]
    faulty = SearchEngine(
        engine.config,
        sessions=sessionmaker(bind=database, class_=session_class),
        featurizer_provider=lambda _backbone: extractor,
        media=media,
    )
    faulty.models.reload()
    return faulty


def test_failed_commit_leaves_no_file_no_row_no_vector(
    engine: SearchEngine, extractor: Featurizer, settings: Settings, catalog_photos: list[Path]
) -> None:
    faulty = engine_with(engine, extractor, session_class=FailingCommitSession)
    with pytest.raises(OperationalError):
        faulty.catalog.add(fields("X-1"), catalog_photos[0].read_bytes())
    assert media_files(settings) - {".tmp"} == set() or all(
        f.startswith(".tmp/") for f in media_files(settings)
    )
    assert len(faulty.models.index) == 0
    with engine.sessions() as session:
        assert session.scalar(select(func.count(Product.id))) == 0


def test_full_disk_while_saving_the_image_changes_nothing(
    engine: SearchEngine, extractor: Featurizer, catalog_photos: list[Path]
) -> None:
    faulty = engine_with(engine, extractor, media=FullDiskMediaStore(engine.media.root))
    with pytest.raises(MediaStoreError, match="disk is full"):
        faulty.catalog.add(fields("X-2"), catalog_photos[0].read_bytes())
    assert len(faulty.models.index) == 0 and engine.catalog.get("X-2") is None


def test_orphan_files_from_a_crash_are_swept(
    engine: SearchEngine, settings: Settings, catalog_photos: list[Path]
) -> None:
    kept = engine.catalog.add(fields("K-1"), catalog_photos[0].read_bytes())
    # What a crash between writing the file and committing its row leaves behind:
    engine.media.save(b"orphan bytes", content_hash="ab" + "0" * 62, image_format="JPEG")
    (settings.media_dir / ".tmp").mkdir(exist_ok=True)
    (settings.media_dir / ".tmp" / "x.part").write_bytes(b"half")
    # Another process's add in flight looks just like that: fresh files are left alone...
    assert engine.sweep_orphan_files() == []
    assert len(media_files(settings)) == 3
    # ...and swept once older than any add can take.
    removed = engine.catalog.sweep_orphan_files(now=time.time() + ORPHAN_GRACE_SECONDS + 1)
    assert sorted(removed) == [".tmp/x.part", "ab/ab" + "0" * 62 + ".jpg"]
    assert media_files(settings) == {kept.image.file_name}


def test_csv_import_validates_rows_and_updates(
    engine: SearchEngine, tmp_path: Path, catalog_photos: list[Path]
) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    for photo in catalog_photos[:3]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "notes.jpg").write_text("not an image")
    (folder / "dot.png").write_bytes(images.encode(images.solid("RGB", (1, 1), "red"), "PNG"))
    rows = [
        [
            "A1",
            "Red pump",
            "59.90",
            "EUR",
            "https://shop.example/a1",
            "heel",
            catalog_photos[0].name,
        ],
        ["A2", "Rain boot", "€24,50", "", "", "Rain Boot", catalog_photos[1].name],
        ["A3", "Bad price", "cheap", "EUR", "", "", catalog_photos[2].name],
        ["A4", "No photo", "10", "EUR", "", "", "missing.jpg"],
        ["A5", "Escape", "10", "EUR", "", "", "../etc/passwd"],
        ["A6", "Not an image", "10", "EUR", "", "", "notes.jpg"],
        ["A7", "A dot", "10", "EUR", "", "", "dot.png"],
    ]

    def write_csv(data: list[list[str]]) -> Path:
        path = tmp_path / "products.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sku", "name", "price", "currency", "url", "category", "image"])
            writer.writerows(data)
        return path

    summary = import_directory(engine, folder, csv_path=write_csv(rows))
    assert summary.added == ["A1", "A2"]
    reasons = dict(summary.skipped)
    assert "price" in reasons["products.csv line 4"]
    assert "no image file" in reasons["products.csv line 5"]
    assert "no image file" in reasons["products.csv line 6"]
    assert "image" in reasons["products.csv line 7"].lower()
    assert "1x1 pixels: a product photo needs at least 64" in reasons["products.csv line 8"]
    a2 = engine.catalog.require("A2")
    assert a2.price == Decimal("24.50") and a2.category == "rain_boot" and a2.currency == "EUR"

    rows[0][1] = "Red pump, new season"
    summary = import_directory(engine, folder, csv_path=write_csv(rows))
    assert summary.updated == ["A1"] and summary.unchanged == ["A2"] and summary.added == []
    assert engine.catalog.require("A1").name == "Red pump, new season"
