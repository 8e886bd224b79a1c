"""`lookalike db copy`: the whole catalogue from one database into another (typically the SQLite
file into PostgreSQL), every table, ids preserved, in one transaction on the target.

The image files are not copied: both databases name them relative to MEDIA_DIR, so the new
database uses the same media folder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, Integer, Table, func, select, text
from sqlalchemy.engine import make_url

from db import migrate
from db.tables import Base

BATCH_ROWS = 500
# Rows the migrations themselves insert (0003 registers the VGG16 model): they do not make a
# target "non-empty", and the source's rows replace them.
SEEDED_BY_MIGRATIONS = frozenset({"search_models"})


class CopyError(Exception):
    """The copy was refused or cannot start; the message is one line for the user."""


def tables_in_copy_order() -> list[Table]:
    """Every table of the models, parents before children (products before product_images
    before embeddings, search_log before feedback and result_opens)."""
    return list(Base.metadata.sorted_tables)


def same_database(source: Engine, target: Engine) -> bool:
    def key(engine: Engine) -> str:
        url = make_url(engine.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            url = url.set(database=str(Path(url.database or "").resolve()))
        return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)

    return key(source) == key(target)


def copy_database(
    source_engine: Engine,
    target_engine: Engine,
    *,
    replace: bool = False,
    progress: bool = True,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, int]:
    """Copy every row of every table from source to target; returns the rows per table.

    Both databases are brought up to the newest migration first. A target that already holds
    data is refused (CopyError) unless `replace`, which empties it first, in the same
    transaction as the copy: the target ends with the whole copy or unchanged. PostgreSQL
    sequences are moved past the copied ids, so the next insert does not collide.
    """
    if same_database(source_engine, target_engine):
        raise CopyError("the target is the source database itself")
    migrate.ensure_up_to_date(source_engine)
    migrate.ensure_up_to_date(target_engine)
    tables = tables_in_copy_order()
    counts: dict[str, int] = {}
    with source_engine.connect() as source, target_engine.begin() as target:
        _read_one_snapshot(source)
        present = {
            table.name: rows
            for table in tables
            if table.name not in SEEDED_BY_MIGRATIONS and (rows := _count(target, table))
        }
        if present and not replace:
            held = ", ".join(f"{rows} {name}" for name, rows in present.items())
            raise CopyError(
                f"the target already holds data ({held}); use --replace to overwrite it"
            )
        totals = {table.name: _count(source, table) for table in tables}
        _empty(target, tables)
        from tqdm import tqdm

        bar = tqdm(
            total=sum(totals.values()),
            unit="row",
            desc="copying",
            file=sys.stderr,
            disable=None if progress else True,  # None: shown on a terminal only
        )
        try:
            for table in tables:
                counts[table.name] = 0
                for batch in _batches(source, table, batch_rows):
                    target.execute(table.insert(), batch)
                    counts[table.name] += len(batch)
                    bar.update(len(batch))
        finally:
            bar.close()
        if target.dialect.name == "postgresql":
            _reset_sequences(target, tables)
    return counts


def _read_one_snapshot(source: Connection) -> None:
    """Read every table as of one moment, even if the bot writes meanwhile."""
    if source.dialect.name == "postgresql":
        # Before the transaction begins; the pool resets both when the connection returns.
        source.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    elif source.dialect.name == "sqlite":
        # pysqlite opens no transaction for SELECTs: each would see its own moment. An explicit
        # BEGIN holds one read snapshot (WAL) until the connection rolls back at the end.
        source.exec_driver_sql("BEGIN")


def _count(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _empty(target: Connection, tables: Sequence[Table]) -> None:
    if target.dialect.name == "postgresql":
        names = ", ".join(target.dialect.identifier_preparer.quote(t.name) for t in tables)
        target.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        return
    for table in reversed(tables):
        target.execute(table.delete())


def _batches(source: Connection, table: Table, size: int) -> Iterator[list[dict[str, Any]]]:
    aware = [c.name for c in table.columns if isinstance(c.type, DateTime) and c.type.timezone]
    query = select(table).order_by(*table.primary_key.columns)
    result = source.execution_options(yield_per=size).execute(query)
    for rows in result.partitions(size):
        batch = [dict(row._mapping) for row in rows]
        for row in batch:
            for name in aware:
                row[name] = _as_utc(row[name])
        yield batch


def _as_utc(value: datetime | None) -> datetime | None:
    """SQLite keeps the application's UTC times without their offset; PostgreSQL would read a
    naive time in the session's time zone. Say UTC explicitly, both ways."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _reset_sequences(target: Connection, tables: Sequence[Table]) -> None:
    for table in tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        column = keys[0]
        sequence = target.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": table.name, "column": column.name},
        ).scalar_one()
        if sequence is None:
            continue  # not generated by the database (admin_drafts.user_id is Telegram's id)
        last = target.execute(select(func.max(column))).scalar_one()
        # setval(seq, n, false): the next id handed out is n itself.
        target.execute(
            text("SELECT setval(CAST(:sequence AS regclass), :next, false)"),
            {"sequence": sequence, "next": int(last or 0) + 1},
        )
