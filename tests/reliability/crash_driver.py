"""A process that changes the catalogue without pause until it is killed (kill -9) by
tests/reliability/test_crash.py. It prints a line only once a change has returned, so the
test knows what was promised ("added") before the kill.

It runs the real SearchEngine, database and media store; only the model is swapped for a
cheap deterministic projection, because this test isolates the storage's atomicity and
TensorFlow's start-up would make dozens of kills take many minutes.

    python -m tests.reliability.crash_driver ROOT RUN [DATABASE_URL]

The database is DATABASE_URL when given (the test passes its backend's), else the SQLite file
ROOT/lookalike.db; never the environment's DATABASE_URL, which could be a developer's own.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from search import EngineConfig, SearchEngine
from search.fields import clean_product_fields

DIM = 512


class ProjectionFeaturizer:
    """(n, 224, 224, 3) -> (n, 512): 8x8 average pooling, a fixed random projection, ReLU."""

    model_name = "vgg16_avgpool"
    dim = DIM

    def __init__(self) -> None:
        self._weights = np.random.default_rng(7).normal(size=(8 * 8 * 3, DIM)).astype(np.float32)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        pooled = batch.reshape(batch.shape[0], 8, 28, 8, 28, 3).mean(axis=(2, 4))  # (n, 8, 8, 3)
        return np.maximum(pooled.reshape(batch.shape[0], -1) @ self._weights, 0.0)


def product_photo(seed: int) -> bytes:
    """A distinct small JPEG per seed: random blocks of colour."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize((120, 180), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def open_engine(root: Path, database_url: str | None = None) -> SearchEngine:
    config = EngineConfig(
        database_url=database_url or f"sqlite:///{root / 'lookalike.db'}",
        media_dir=root / "media",
    )
    return SearchEngine.open(config, featurizer_provider=lambda _backbone: ProjectionFeaturizer())


def main() -> None:
    root, run = Path(sys.argv[1]), int(sys.argv[2])
    engine = open_engine(root, sys.argv[3] if len(sys.argv) > 3 else None)
    print("READY", flush=True)
    step = 0
    while True:
        step += 1
        sku = f"C{run}-{step}"
        fields = clean_product_fields(sku=sku, name=f"Crash {sku}", price="10.00", currency="EUR")
        engine.catalog.add(fields, product_photo(run * 100_000 + step))
        print("ADDED", sku, flush=True)
        if step % 3 == 0:
            victim = f"C{run}-{step - 1}"
            engine.catalog.remove(victim)
            print("REMOVED", victim, flush=True)


if __name__ == "__main__":
    main()
