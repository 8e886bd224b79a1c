"""Database-level locks for what must not interleave across processes.

A model switch-over checks "every image has a vector of the new model" and then switches; an
add in another process must not commit between the two. On SQLite the switch takes the
database's write lock first (`BEGIN IMMEDIATE`), which every writer needs anyway. On
PostgreSQL adds hold a transaction-level advisory lock in shared mode and the switch holds it
exclusively, so they wait for each other and nothing else does.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["hold_catalogue_exclusively", "share_catalogue"]

# pg_advisory_xact_lock keys are one bigint; this one is the catalogue's ("lookalik" in ASCII).
CATALOGUE_LOCK_KEY = 0x6C6F6F6B616C696B


def hold_catalogue_exclusively(session: Session) -> None:
    """Until the session's transaction ends, no other process writes to the catalogue.
    Call it before anything else in the transaction."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CATALOGUE_LOCK_KEY})


def share_catalogue(session: Session) -> None:
    """A catalogue write: waits while a switch-over holds the catalogue exclusively."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": CATALOGUE_LOCK_KEY}
        )
