"""`make test`'s runner (tests/passes.py): both passes' verdicts, and nothing left running when
the process that started it dies, even by kill -9 (a process never outlives its starter)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A stand-in suite: its own pytest.ini and the --backend option (tests/conftest.py is not loaded
# for a folder outside tests/).
CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--backend", default="sqlite")
"""
PASSES_ON_SQLITE_ONLY = """
def test_backend(request):
    assert request.config.getoption("--backend") == "sqlite"
"""
# Each pass records its pid and a child's of its own (a fixture's server, say), then waits.
WAITS = """
import os, subprocess, sys, time
from pathlib import Path

def test_waits(request, tmp_path):
    backend = request.config.getoption("--backend")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pids = Path(os.environ["PASSES_PIDS"])
    (pids / f"{backend}.tmp").write_text(f"{os.getpid()} {child.pid}")
    (pids / f"{backend}.tmp").rename(pids / backend)
    time.sleep(600)
"""


def _suite(tmp_path: Path, test: str) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_stand_in.py").write_text(test)
    return suite


def _passes(suite: Path) -> list[str]:
    """The runner's command line as `make test` gives it, over the stand-in suite alone."""
    args = ["-q", "-p", "no:cacheprovider", str(suite)]
    return [sys.executable, "-m", "tests.passes", str(suite), "--", *args]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_the_run_fails_when_either_pass_fails(tmp_path: Path) -> None:
    suite = _suite(tmp_path, PASSES_ON_SQLITE_ONLY)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.passes",
            str(suite),
            "--",
            "-q",
            "-p",
            "no:cacheprovider",
            str(suite),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "SQLite pass: exit 0; PostgreSQL pass: exit 1" in run.stdout
    # The PostgreSQL pass's output is shown, after the SQLite pass's.
    assert run.stdout.index("==== the PostgreSQL pass") < run.stdout.index("1 failed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_nothing_outlives_make_killed_with_sigkill(tmp_path: Path) -> None:
    suite = _suite(tmp_path, WAITS)
    pids = tmp_path / "pids"
    pids.mkdir()
    # `make` stands for the process that starts the runner (make execs it from the recipe).
    make = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.run(sys.argv[1:])",
            *_passes(suite),
        ],
        cwd=ROOT,
        env={**os.environ, "PASSES_PIDS": str(pids)},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not all((pids / backend).exists() for backend in ("sqlite", "postgres")):
        assert make.poll() is None and time.monotonic() < deadline, "the passes did not start"
        time.sleep(0.1)
    started = [
        int(pid)
        for backend in ("sqlite", "postgres")
        for pid in (pids / backend).read_text().split()
    ]
    assert all(_alive(pid) for pid in started)

    make.send_signal(signal.SIGKILL)
    make.wait()
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in started if _alive(pid)]
    for pid in left:  # clean up after a failure
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after make was killed: {left}"
