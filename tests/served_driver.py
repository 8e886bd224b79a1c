"""Run by tests/test_served.py in a fresh process, with the application's settings in the
environment: what the bot's and the web server's start do (the engine from Settings, the
model warmed up), then `lookalike search --json` as a command, then the served model's vectors
of the given photos. Writes what it saw as JSON to argv[1]:
{"runtime", "tensorflow", "keras", "search_exit", "vectors": (n, 512) list}."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np


def main(report: Path, query: str, photos: list[str]) -> None:
    from cli.main import main as lookalike
    from lookalike.composition import open_engine
    from lookalike.settings import Settings
    from search.featurize.preprocess import preprocess_image

    engine = open_engine(Settings())
    engine.warm_up()  # as bot/application.py's post_init and the web server's start do
    featurizer = engine.models.featurizer_for(engine.models.active.backbone)
    batch = np.stack([preprocess_image(Path(p).read_bytes()) for p in photos])
    vectors = featurizer.embed(batch)  # (n, 512)
    engine.close()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        search_exit = lookalike(["search", query, "--json"])
    result = {
        "runtime": str(getattr(featurizer, "runtime", "?")),
        "tensorflow": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"),
        "keras": sorted(m for m in sys.modules if m.split(".")[0] == "keras"),
        "search_exit": search_exit,
        "search_results": len(json.loads(printed.getvalue())["results"]),
        "vectors": vectors.tolist(),
    }
    report.write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
