"""The second process of tests/reliability/test_races.py: what another bot instance or the
command line does to the shared database and MEDIA_DIR, run as a real process.

    python -m tests.reliability.race_driver sweep DATABASE_URL MEDIA_DIR
        a starting bot instance's sweep of orphan files; prints the files it deleted (JSON)
    python -m tests.reliability.race_driver reindex DATABASE_URL MEDIA_DIR BACKBONE
        `lookalike reindex --model BACKBONE` to the end (switch-over); prints SWITCHED

The model is a cheap deterministic projection (as in crash_driver): these tests are about
what several processes do to the stored state, not about the features.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from search import EngineConfig, SearchEngine
from search.featurize.backbones import get_backbone
from search.featurize.featurizer import Featurizer
from search.reindexing import reindex


class ProjectionFeaturizer:
    """(n, 224, 224, 3) -> (n, dim): 8x8 average pooling, a fixed random projection, ReLU."""

    def __init__(self, backbone: str) -> None:
        spec = get_backbone(backbone)
        self.model_name, self.dim = spec.model_name, spec.dim
        rng = np.random.default_rng(len(backbone))
        self._weights = rng.normal(size=(8 * 8 * 3, spec.dim)).astype(np.float32)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        pooled = batch.reshape(n, 8, 28, 8, 28, 3).mean(axis=(2, 4))  # (n, 8, 8, 3)
        return np.maximum(pooled.reshape(n, -1) @ self._weights, 0.0)


def projection_provider(backbone: str) -> Featurizer:
    return ProjectionFeaturizer(backbone)


def open_engine(database_url: str, media_dir: Path) -> SearchEngine:
    config = EngineConfig(database_url=database_url, media_dir=media_dir)
    return SearchEngine.open(config, featurizer_provider=projection_provider)


def main() -> None:
    command, database_url, media_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    engine = open_engine(database_url, media_dir)
    try:
        if command == "sweep":
            print(json.dumps(engine.sweep_orphan_files()), flush=True)
        elif command == "reindex":
            summary = reindex(engine, sys.argv[4], batch_size=4)
            print("SWITCHED" if summary.switched else "NOT SWITCHED", flush=True)
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
