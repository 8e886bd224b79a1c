"""One process of tests/reliability/test_runtime_choice_race.py: loads the model the way the
application does with MODEL_RUNTIME=auto (the tests' short measurements) once a line arrives
on stdin, and prints one JSON line: {"runtime", "tensorflow": imported?}. The loader's
progress lines (one per runtime measured) go to stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(models_dir: Path, photos_dir: Path) -> None:
    from tests.conftest import session_model_loader

    loader = session_model_loader(
        models_dir,
        sorted(photos_dir.glob("*.jpg")),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print("ready", file=sys.stderr, flush=True)
    sys.stdin.readline()  # both processes start loading at the same moment
    featurizer = loader("vgg16")
    runtime = str(getattr(featurizer, "runtime", "?"))
    print(json.dumps({"runtime": runtime, "tensorflow": "tensorflow" in sys.modules}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
