"""The web tests' fixtures: the shop's catalogue imported with its products.csv (prices and
categories), served by a real uvicorn over a real engine on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.settings import Settings
from search.featurize.featurizer import Featurizer
from search.importer import import_directory
from tests.conftest import make_settings, postgres_databases
from tests.web.server import LiveServer, live_server, open_test_engine
from web.config import WebConfig

QUERY = "search_image_01.jpg"


@pytest.fixture(scope="session")
def web_catalog(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    extractor: Featurizer,
    footwear: Path,
) -> Path:
    """A folder with lookalike.db (or, on PostgreSQL, a template database) and media/: the
    300 products of products.csv."""
    root = tmp_path_factory.mktemp("web-catalog")
    postgres = postgres_databases()
    if postgres is not None:
        postgres.url_for(root, keep=True)  # lives for the session, not the first test
    engine = open_test_engine(make_settings(root, models_dir), extractor)
    try:
        summary = import_directory(engine, footwear / "catalog", csv_path=footwear / "products.csv")
    finally:
        engine.close()
    assert len(summary.added) == 300, summary.skipped
    if postgres is not None:
        postgres.freeze_as_template(root)
    return root


def copy_catalog(
    web_catalog: Path, target: Path, models_dir: Path, *, keep: bool = False
) -> Settings:
    """A private copy of the web catalogue (its media folder, and its database: the SQLite
    file, or a PostgreSQL database made from the template). `keep`: for a session fixture."""
    shutil.copytree(web_catalog, target)
    postgres = postgres_databases()
    if postgres is not None:
        postgres.url_for(target, copy_of=web_catalog, keep=keep)
    return make_settings(target, models_dir)


@pytest.fixture(scope="session")
def query_photo(footwear: Path) -> bytes:
    return (footwear / "queries" / QUERY).read_bytes()


@pytest.fixture(scope="session")
def server(
    web_catalog: Path,
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    extractor: Featurizer,
) -> Iterator[LiveServer]:
    """One server for the tests that only read (and search: the limit is high here)."""
    target = tmp_path_factory.mktemp("web") / "db"
    settings = copy_catalog(web_catalog, target, models_dir, keep=True)
    config = WebConfig(searches_per_minute=10_000, url_fetch_allow_private=True)
    with live_server(settings, extractor, config) as running:
        yield running


@pytest.fixture
def fresh_server(
    web_catalog: Path, tmp_path: Path, models_dir: Path, extractor: Featurizer
) -> Iterator[LiveServer]:
    """A server over a private copy of the catalogue, with low limits (3 searches and 5
    writes a minute) and image URLs to private addresses refused, as in production."""
    settings = copy_catalog(web_catalog, tmp_path / "db", models_dir)
    config = WebConfig(searches_per_minute=3, writes_per_minute=5)
    with live_server(settings, extractor, config) as running:
        yield running
