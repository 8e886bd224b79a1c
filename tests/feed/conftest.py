"""Fixtures of the feed tests: the shop's server with the demo photos, settings that let the
photo fetcher reach 127.0.0.1 (URL_FETCH_ALLOW_PRIVATE, the fetcher's own option), a real
engine, and a helper that runs one sync the way the doors do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.fake_shop import ShopItem, ShopServer, demo_items, feed_bytes
from feed import sync_options
from feed.sync import SyncSummary, sync_feed
from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from tests.conftest import make_settings, open_test_engine


@pytest.fixture
def shop(footwear: Path) -> Iterator[ShopServer]:
    server = ShopServer()
    server.serve_photos(
        footwear / "catalog", (p.name for p in (footwear / "catalog").glob("*.jpg"))
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo(footwear: Path) -> list[ShopItem]:
    """The 300 demo products as feed rows."""
    return demo_items(footwear / "products.csv")


def feed_settings(root: Path, models_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "url_fetch_allow_private": True,
        "feed_image_timeout_seconds": 3.0,
        "feed_image_retries": 1,
        "inference_batch_size": 16,
    }
    values.update(overrides)
    return make_settings(root, models_dir, **values)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return feed_settings(tmp_path, models_dir)


@pytest.fixture
def engine(settings: Settings, extractor: Featurizer) -> Iterator[SearchEngine]:
    engine = open_test_engine(settings, extractor)
    try:
        yield engine
    finally:
        engine.close()


@dataclass
class Syncer:
    """Publishes a feed on the shop and syncs the engine with it."""

    engine: SearchEngine
    settings: Settings
    shop: ShopServer
    kind: str = "rss"
    count: int = 0

    async def __call__(
        self, items: list[ShopItem], *, dry_run: bool = False, force: bool = False
    ) -> SyncSummary:
        self.count += 1
        url = self.shop.publish(
            f"/feed-{self.count}.{self.kind}", feed_bytes(self.kind, items, self.shop.base)
        )
        options = sync_options(self.settings, url, dry_run=dry_run, force=force)
        return await sync_feed(self.engine, options)


@pytest.fixture
def sync(engine: SearchEngine, settings: Settings, shop: ShopServer) -> Syncer:
    return Syncer(engine, settings, shop)
