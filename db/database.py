"""Engine and session factory, and what differs between the two databases.

SQLite gets WAL, a busy timeout and foreign keys on every connection. PostgreSQL gets a pool
that checks each connection before use, and a connect timeout. SQLite gives stored times back
naive (as_utc makes them aware again).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15_000
# The bot runs database work in asyncio's worker threads (a handful busy at once) and several
# bot instances may share one server: 5 kept + 10 burst connections per process stays well
# under PostgreSQL's default max_connections (100) for a few instances.
PG_POOL_SIZE = 5
PG_MAX_OVERFLOW = 10
PG_CONNECT_TIMEOUT_S = 10


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers (searches) run while a writer (an admin's /add) commits.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable across application crashes in WAL mode (only an OS crash can lose
        # the last transaction), and much faster than FULL.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_db_engine(database_url: str) -> Engine:
    """An engine for `database_url`; creates the parent folder of a SQLite file."""
    url = make_url(database_url)
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        options.update(
            # A server restart or an idle timeout on the way kills pooled connections; check
            # each one as it leaves the pool instead of failing the customer's search.
            pool_pre_ping=True,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_MAX_OVERFLOW,
            # Firewalls drop idle TCP connections after an hour or so; renew them before that.
            pool_recycle=1800,
        )
        # An unreachable host fails in seconds, not after the TCP timeout (minutes); values
        # given in the URL (?connect_timeout=...) win.
        defaults = {"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "lookalike"}
        connect_args.update({k: v for k, v in defaults.items() if k not in url.query})
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # The bot uses the engine from worker threads; each gets its own pooled connection.
        connect_args["check_same_thread"] = False
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
    engine = create_engine(database_url, connect_args=connect_args, **options)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives naive ones back)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: repository functions return plain records built inside the session.
    return sessionmaker(bind=engine, expire_on_commit=False)
