"""`python -m tests.passes [--one-by-one] PG_TESTS -- PYTEST_ARGS`: `make test`'s two passes.

The SQLite pass (the whole suite) in the foreground; the PostgreSQL pass (`PG_TESTS`, the tests
that touch the database) alongside it, its output kept in a temporary file and shown after the
SQLite pass's (`--one-by-one`: after it, as `make test-fast` runs them). Exit status 0 only if
both passed; both passes' statuses are printed.

Why a program and not the recipe's shell: a process never outlives the process that started
it. Each pass runs in a process group of its own, so stopping it stops everything it started
(the servers and bots of its fixtures too), and this process stops both groups when it is
asked to (Ctrl-C, SIGTERM, SIGHUP: each pass gets SIGINT, tears its fixtures down and reports
what it ran; a pass still there STOP_GRACE_S later is killed), and when `make` itself dies,
even by kill -9 (Linux: PR_SET_PDEATHSIG). The recipe's shell did none of that:
with make killed -9, both passes ran on to their end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from subprocess import Popen
from types import FrameType
from typing import IO

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# How long a pass may take to stop after SIGINT/SIGTERM (pytest tears its fixtures down)
# before its whole group is killed.
STOP_GRACE_S = 20


def _die_with_parent() -> None:
    """SIGTERM to this process when the process that started it (make) dies: the handler below
    then stops both passes. Linux only; elsewhere make's death leaves the passes running."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request: nobody waits for the tests
        raise SystemExit(1)


def _pytest(backend: str, args: Sequence[str], log: IO[bytes] | None = None) -> Popen[bytes]:
    """One pass, in a process group of its own; its output to `log` (stdout and stderr) if given."""
    command = [sys.executable, "-m", "pytest", f"--backend={backend}", *args]
    if log is None:
        return Popen(command, start_new_session=True)
    return Popen(command, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def _signal_groups(passes: Sequence[Popen[bytes]], signum: int) -> None:
    """`signum` to each pass's whole process group (a group already gone is skipped)."""
    for process in passes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


def main(argv: Sequence[str]) -> int:
    one_by_one = "--one-by-one" in argv
    argv = [a for a in argv if a != "--one-by-one"]
    split = argv.index("--") if "--" in argv else len(argv)
    pg_tests, pytest_args = list(argv[:split]), list(argv[split + 1 :])
    _die_with_parent()
    passes: list[Popen[bytes]] = []
    stopped_by: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        # Passed on to the passes, whose ends the waits below then see; any group still there
        # STOP_GRACE_S later is killed (SIGALRM). No waiting here: a handler runs inside a wait.
        stopped_by.append(signum)
        _signal_groups(passes, signal.SIGINT)  # pytest tears its fixtures down on SIGINT
        signal.alarm(STOP_GRACE_S)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    signal.signal(signal.SIGALRM, lambda _signum, _frame: _signal_groups(passes, signal.SIGKILL))

    def run(backend: str, args: Sequence[str], log: IO[bytes] | None = None) -> Popen[bytes] | None:
        """Start a pass, unless stopping; one started while a stop came is stopped too."""
        if stopped_by:
            return None
        process = _pytest(backend, args, log)
        passes.append(process)
        if stopped_by:
            _signal_groups([process], signal.SIGINT)
        return process

    def status(process: Popen[bytes] | None) -> int:
        return process.wait() if process else 128 + stopped_by[0]

    with tempfile.TemporaryFile(prefix="lookalike-pg-pass-") as pg_log:
        if one_by_one:
            sqlite_status = status(run("sqlite", pytest_args))
            pg_status = status(run("postgres", [*pg_tests, *pytest_args]))
        else:
            print("PostgreSQL pass alongside; its output after the SQLite pass's", flush=True)
            postgres = run("postgres", [*pg_tests, *pytest_args], pg_log)
            sqlite_status = status(run("sqlite", pytest_args))
            pg_status = status(postgres)
            command = " ".join(["pytest --backend=postgres", *pg_tests, *pytest_args])
            print(f"==== the PostgreSQL pass: {command}", flush=True)
            pg_log.seek(0)
            sys.stdout.buffer.write(pg_log.read())
            sys.stdout.flush()
        _signal_groups(passes, signal.SIGKILL)  # anything a pass's fixtures left running
    print(f"SQLite pass: exit {sqlite_status}; PostgreSQL pass: exit {pg_status}", flush=True)
    if stopped_by:
        return 128 + stopped_by[0]
    return 0 if sqlite_status == 0 and pg_status == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
