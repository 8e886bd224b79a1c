"""The embedded PostgreSQL server's process, by pid: is it alive, what its data folder's
postmaster.pid says, how to shut it down, and the watchdog that stops a server whose owner died
without cleaning up (kill -9 of pytest). The server's setup and start are db.embedded_pg's.

Only the standard library is imported: this file also runs as a script, the watchdog.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EmbeddedPostgresError",
    "Postmaster",
    "process_alive",
    "read_postmaster",
    "shut_down",
    "spawn_watchdog",
]


class EmbeddedPostgresError(RuntimeError):
    """The server could not be set up, started or reached; the message is one line."""


# ---- processes -------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie (a container's init may never reap a dead
    postmaster, and the watchdog's owner stays a zombie until its parent waits for it)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) S ...": the state follows the last ')' (comm may contain spaces and ')').
    state = stat_line.rsplit(")", 1)[-1].split()[0]
    return state not in {"Z", "X"}


def _is_postgres(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm == "postgres" and process_alive(pid)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return not process_alive(pid)


def shut_down(pid: int, timeout: float) -> None:
    """What `pg_ctl stop -m fast` does (SIGINT: roll back open transactions, checkpoint, exit),
    sent by pid, then harder if it hangs: SIGQUIT (immediate shutdown), SIGKILL. By pid because
    it always works for us (our own process, or we are root), even when the server's user can
    no longer reach the data folder (pytest makes its temp root 0700 at every session start)."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, wait):
            return
    raise EmbeddedPostgresError(f"PostgreSQL (pid {pid}) did not stop")


@dataclass(frozen=True)
class Postmaster:
    """The running server, as its data folder's postmaster.pid describes it."""

    pid: int
    port: int
    status: str  # "starting", "ready", "stopping", ...


def read_postmaster(data_dir: Path) -> Postmaster | None:
    """The live server of `data_dir`, or None (no postmaster.pid, or a stale one)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    if len(lines) < 4:
        return None  # being written right now
    try:
        pid, port = int(lines[0]), int(lines[3])
    except ValueError:
        return None
    if not _is_postgres(pid):
        return None
    return Postmaster(pid=pid, port=port, status=lines[7].strip() if len(lines) > 7 else "")


# ---- the watchdog ------------------------------------------------------------------------------


def spawn_watchdog(postmaster_pid: int) -> subprocess.Popen[bytes]:
    """A small process that stops the server if this process dies without doing it (kill -9,
    os._exit); it leaves by itself once the server is gone."""
    # -I: not the script's folder on sys.path, where db/copy.py would shadow the standard
    # library's copy module; -S: no site-packages, only the standard library is needed.
    script = str(Path(__file__).resolve())
    return subprocess.Popen(
        [sys.executable, "-I", "-S", script, str(os.getpid()), str(postmaster_pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal must not kill it before the owner
    )


def _watch(owner_pid: int, postmaster_pid: int) -> None:
    while _is_postgres(postmaster_pid):
        if not process_alive(owner_pid):
            with contextlib.suppress(EmbeddedPostgresError):
                shut_down(postmaster_pid, timeout=30.0)
            return
        time.sleep(1.0)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), int(sys.argv[2]))
