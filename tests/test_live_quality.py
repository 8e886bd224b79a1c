"""The live search's quality, measured through the same engine a customer's photo goes through.

The shop's real VGG16 ImageNet vectors (../shared/footwear/vgg16_avgpool_reference.npy, rows
named by vgg16_avgpool_reference.txt) are stored through the engine with the default settings
(POSTPROCESS=sqrt-centre, QUERY_EXPANSION=3, INFER_CATEGORY=true), each with its catalogue
photo; then every product is searched with its own vector, itself excluded from the results
(leave-one-out), by `engine.searcher.search_vector`, and scored against labels.csv.

docs/evaluation.md measures the same methods offline with `lookalike evaluate`:
sqrt+centre+qe 0.8717 (no categories on the products, so nothing to infer) and
sqrt+centre+qe+cat 0.8979 (the categories of products.csv, the labels themselves). Runs on both
database backends (on PostgreSQL the k-nearest queries run in pgvector, HNSW).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.composition import open_engine
from lookalike.settings import Settings
from search import ProductFields, SearchEngine
from search.featurize.featurizer import Featurizer
from search.fields import clean_product_fields

K = 8
# Measured floors (docs/evaluation.md); the offline figures are 0.8717 and 0.8979.
FLOOR_WITHOUT_CATEGORIES = 0.87
FLOOR_WITH_CATEGORIES = 0.89


def no_model(backbone: str) -> Featurizer:
    """The vectors are given: nothing here may run the model."""
    raise AssertionError(f"the {backbone} model was asked for; this test stores given vectors")


def read_csv(path: Path, key: str) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row[key]: row for row in csv.DictReader(handle)}


def fields_of(row: dict[str, str], *, with_category: bool) -> ProductFields:
    return clean_product_fields(
        sku=row["sku"],
        name=row["name"],
        price=row["price"],
        currency=row["currency"],
        url=row["url"],
        category=row["category"] if with_category else None,
    )


@pytest.fixture
def live_engine(settings: Settings) -> Iterator[SearchEngine]:
    """The engine as `lookalike bot` opens it, over an empty database of this test's backend."""
    opened = open_engine(settings, featurizer=no_model)
    try:
        yield opened
    finally:
        opened.close()


def leave_one_out(
    engine: SearchEngine, vectors: np.ndarray, skus: list[str], labels: dict[str, str]
) -> tuple[float, int, int]:
    """(precision@8, searches that inferred a category, of which the query's own one)."""
    hits = inferred = inferred_right = 0
    for vector, sku in zip(vectors, skus, strict=True):
        own = engine.catalog.require(sku)
        result = engine.searcher.search_vector(vector, exclude_product_ids=[own.id])
        found = [item.product.sku for item in result.items]
        assert len(found) == K and sku not in found, (sku, found)
        hits += sum(labels[other] == labels[sku] for other in found)
        if result.inferred_category is not None:
            inferred += 1
            inferred_right += result.inferred_category == labels[sku]
            assert all(item.product.category == result.inferred_category for item in result.items)
    return hits / (K * len(skus)), inferred, inferred_right


def test_live_precision_at_8_without_and_with_categories(
    live_engine: SearchEngine, footwear: Path
) -> None:
    engine = live_engine
    assert engine.config.postprocess == "sqrt-centre"
    assert engine.searcher.query_expansion == 3 and engine.searcher.infer_category
    vectors = np.load(footwear / "vgg16_avgpool_reference.npy")  # (300, 512) float32
    names = (footwear / "vgg16_avgpool_reference.txt").read_text(encoding="utf-8").split()
    assert vectors.shape == (300, 512) and len(names) == 300
    labels = {
        Path(f).stem: row["category"]
        for f, row in read_csv(footwear / "labels.csv", "file").items()
    }
    products = read_csv(footwear / "products.csv", "sku")
    skus = [Path(name).stem for name in names]

    # Stored as an import stores them: each photo checked and kept, its vector beside it, then
    # the post-processing fitted again because the catalogue has grown.
    for sku, name, vector in zip(skus, names, vectors, strict=True):
        prepared = engine.models.prepare((footwear / "catalog" / name).read_bytes())
        engine.catalog.store(fields_of(products[sku], with_category=False), prepared, vector)
    assert engine.models.refit_if_due()
    assert len(engine.catalog.products()) == 300 and engine.catalog.categories() == []

    without, inferred, _ = leave_one_out(engine, vectors, skus, labels)
    assert inferred == 0  # no product has a category: nothing to infer
    print(f"live precision@8 without categories: {without:.4f}")
    assert without >= FLOOR_WITHOUT_CATEGORIES

    for sku in skus:  # the shop's categories, given through the engine as an admin would
        _, changed = engine.catalog.update(fields_of(products[sku], with_category=True))
        assert changed
    assert sorted(engine.catalog.categories()) == sorted(set(labels.values()))

    with_categories, inferred, right = leave_one_out(engine, vectors, skus, labels)
    print(
        f"live precision@8 with categories: {with_categories:.4f}; "
        f"category inferred for {inferred} of 300 searches, {right} of them the query's own"
    )
    assert with_categories >= FLOOR_WITH_CATEGORIES
    assert right >= 0.9 * inferred > 0
