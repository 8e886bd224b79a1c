"""Two processes start at once on a CPU with no recorded runtime (the bot and the web server
after a move to a new machine): one has the runtimes measured (in a child process), the other
waits for its record; both serve the same runtime without importing TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_one_process_measures_the_other_reuses_its_choice(
    extractor: object, models_dir: Path, footwear: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for path in models_dir.glob("vgg16_avgpool-random-seed*"):
        if not path.name.endswith((".runtime.json", ".lock")):
            shutil.copy2(path, models / path.name)
    command = [sys.executable, "-m", "tests.reliability.choice_driver", str(models)]
    processes = [
        subprocess.Popen(
            [*command, str(footwear / "catalog")],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:  # each has imported what it needs and waits for its go
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.strip() == "ready", line
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    outputs = [process.communicate(timeout=600) for process in processes]
    assert all(p.returncode == 0 for p in processes), [err[-2000:] for _, err in outputs]
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    measured = [err.count("measuring float32 Keras") for _, err in outputs]
    assert sorted(measured) == [0, 1], measured
    assert answers[0]["runtime"] == answers[1]["runtime"]
    # The measuring happened in a child of one of them: neither imported TensorFlow.
    assert [a["tensorflow"] for a in answers] == [False, False]
    assert (models / "vgg16_avgpool-random-seed1234.runtime.json").is_file()
