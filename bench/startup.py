"""The `startup` section of `lookalike bench`: the bot's start without Telegram, as
bot/application.py's post_init does it (the engine from Settings, the model from MODELS_DIR and one
warm-up inference, the orphan-file sweep, the batching worker started): seconds to ready and
resident memory, then after a burst of 8 customers. With MODEL_RUNTIME=auto and the runtime record
present, the model is served from its exported file: whether TensorFlow was imported is recorded
too."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Row, proc_status_mb, row

__all__ = ["section_startup", "startup_rows"]


def section_startup(args: dict[str, Any]) -> dict[str, Any]:
    """`args["t0"]`: the parent's clock when it started this process (Python's own start and
    the imports count)."""
    t0 = float(args["t0"])
    imported = time.time()
    import lookalike.composition  # noqa: F401  (the composition root and the engine: imports count)
    from bench.common import open_scratch_engine
    from bench.pipeline import BENCH
    from search import SearchQuery

    root = Path(args["catalogue"])
    modules_s = time.time() - imported

    async def start() -> dict[str, Any]:
        opened = time.time()
        # The database, its migrations and the index (lookalike.composition.open_engine).
        engine = open_scratch_engine(root, args)
        open_s = time.time() - opened
        warm = time.time()
        await engine.run(engine.warm_up)  # the model from MODELS_DIR, one inference
        warm_s = time.time() - warm
        await engine.run(engine.sweep_orphan_files)
        await engine.start()
        ready = time.time()
        rss_ready = proc_status_mb("VmRSS")
        tensorflow_at_ready = "tensorflow" in sys.modules
        # Then a burst of 8 customers, to see the memory of a working bot.
        data = next((root / "media").rglob("*.jpg")).read_bytes()
        await asyncio.gather(*(engine.search_photo(data, SearchQuery(), BENCH) for _ in range(8)))
        await engine.stop()
        featurizer = engine.models.featurizer_for(engine.models.active.backbone)
        result = {
            "ready_s": ready - t0,
            "python_and_imports_s": imported - t0 + modules_s,
            "open_engine_s": open_s,
            "model_load_and_warm_up_s": warm_s,
            "products": engine.models.index.product_count(),
            "runtime": str(getattr(featurizer, "runtime", "?")),
            "rss_ready_mb": rss_ready,
            "rss_after_searches_mb": proc_status_mb("VmRSS"),
            "peak_rss_mb": proc_status_mb("VmHWM"),
            "tensorflow_imported": tensorflow_at_ready,
            "tensorflow_after_searches": "tensorflow" in sys.modules,
        }
        engine.close()
        return result

    return asyncio.run(start())


def startup_rows(start: dict[str, Any]) -> list[Row]:
    if "error" in start:
        return [row("bot", "startup", f"error: {start['error'][:200]}")]
    if not start:
        return []
    return [
        row(
            "bot",
            f"start to ready, model cached ({start['products']} products, {start['runtime']})",
            f"{start['ready_s']:.1f} s (imports {start['python_and_imports_s']:.1f} s, "
            f"database + index {start['open_engine_s']:.1f} s, model + warm-up "
            f"{start['model_load_and_warm_up_s']:.1f} s)",
        ),
        row(
            "bot",
            f"resident memory ({start['runtime']})",
            f"{start['rss_ready_mb']:.0f} MB ready, {start['rss_after_searches_mb']:.0f} MB "
            f"after 8 searches (peak {start['peak_rss_mb']:.0f} MB)",
        ),
        row(
            "bot",
            f"TensorFlow imported ({start['runtime']})",
            ("yes" if start.get("tensorflow_imported") else "no")
            + " at ready, "
            + ("yes" if start.get("tensorflow_after_searches") else "no")
            + " after 8 searches",
        ),
    ]
