"""What tests/test_postgres.py and tests/test_postgres_copy.py share: the tables a migrated
database has, and a scratch database on the session's embedded PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from db.embedded_pg import EmbeddedPostgres
from db.tables import Base

__all__ = ["EVERY_TABLE", "scratch_database"]

EVERY_TABLE = {table.name for table in Base.metadata.sorted_tables}


@contextmanager
def scratch_database(server: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database on `server` (its URL), dropped afterwards."""
    name = f"pg_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    yield server.url(name)
    server.drop_database(name)
