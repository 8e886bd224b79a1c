"""`python -m search.featurize.child ARGS_JSON`: ModelLoader.decide in a process of its own.

A server that finds no runtime recorded for its CPU has the choice measured here, so that it
never imports TensorFlow itself and does not keep the measuring's memory (about 3 GB, more
with the ONNX export) once it serves. ARGS_JSON: {"models_dir", "weights", "seed",
"backbone", "photos" (a folder of the catalogue photos to calibrate on), "batch_size",
"calibration_count", "bench_seconds", "runtime", "parent" (its pid: the child dies with
it)}. With runtime "auto" (the default) the runtimes are measured and the decision recorded;
with a served runtime (MODEL_RUNTIME set) its file is exported. Logs to stderr (inherited: the
server's log); exit code 0 once the decision is recorded or the file exported.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
from pathlib import Path

from search.errors import ModelUnavailableError
from search.featurize.files import backbone_spec
from search.featurize.loader import ModelLoader

__all__ = ["main"]


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process (SIGKILL) when its parent dies, even by kill -9: a
    measuring child (1.5-2.5 GB resident) is never orphaned. Asked for first, then the parent
    checked: one that died before the request leaves us adopted already. Linux only."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the parent is already gone: nobody waits for this measuring


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    if "parent" in args:
        die_with_parent(int(args["parent"]))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
    runtime = str(args.get("runtime", "auto"))
    try:
        if runtime == "auto":
            loader.decide(str(args["backbone"]))
        else:
            loader.export(backbone_spec(str(args["backbone"])), runtime)
    except ModelUnavailableError as exc:
        logging.getLogger("search.featurize.child").error("%s", exc)  # not "__main__"
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
