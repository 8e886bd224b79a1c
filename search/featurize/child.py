"""`python -m search.featurize.child ARGS_JSON`: ModelLoader.decide in a process of its own.

A server that finds no runtime recorded for its CPU has the choice measured here, so that it
never imports TensorFlow itself and does not keep the measuring's memory (about 3 GB, more
with the ONNX export) once it serves. ARGS_JSON: {"models_dir", "weights", "seed",
"backbone", "photos" (a folder of the catalogue photos to calibrate on), "batch_size",
"calibration_count", "bench_seconds"}. Logs to stderr (inherited: the server's log); exit
code 0 once the decision is recorded beside the model.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from search.errors import ModelUnavailableError
from search.featurize.loader import ModelLoader

__all__ = ["main"]


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = json.loads(argv[0])
    photos = sorted(Path(args["photos"]).iterdir())
    loader = ModelLoader(
        models_dir=Path(args["models_dir"]),
        weights=str(args["weights"]),
        seed=int(args["seed"]),
        calibration_photos=lambda limit: [path.read_bytes() for path in photos[:limit]],
        batch_size=int(args["batch_size"]),
        calibration_count=int(args["calibration_count"]),
        bench_seconds=float(args["bench_seconds"]),
    )
    try:
        loader.decide(str(args["backbone"]))
    except ModelUnavailableError as exc:
        logging.getLogger("search.featurize.child").error("%s", exc)  # not "__main__"
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
