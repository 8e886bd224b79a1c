"""The HNSW index of each model on PostgreSQL: its name, its DDL (`ensure_hnsw_index`), its state
(`index_info`), the per-transaction settings a search walks it with, and EXPLAIN, to check that a
query uses it. The query itself is `search.index.postgres.PgVectorIndex`'s.

On PostgreSQL `embeddings.index_vector` is a pgvector `vector` without a fixed dimension (one
column for every model); each model gets a partial HNSW index over the vector cast to its own
dimension, e.g. (migration 0003)

    CREATE INDEX ix_embeddings_hnsw_vgg16_avgpool ON embeddings USING hnsw
        ((index_vector::vector(512)) vector_cosine_ops) WHERE model_name = 'vgg16_avgpool'

Settings for the transaction only (SET LOCAL, one round trip; `configure_search`):

- plan_cache_mode = force_custom_plan: psycopg prepares a statement run 5 times, and a generic
  plan (LIMIT and filter values unknown) could give up the index; a custom plan costs ~0.3 ms;
- hnsw.ef_search: candidates kept while walking the graph (recall against speed);
- hnsw.iterative_scan = relaxed_order: when the filters reject most of the rows the graph
  yields, the scan goes on (up to hnsw.max_scan_tuples) instead of stopping after ef_search
  rows, so a narrow filter still fills the LIMIT. The rows then come in nearly, not strictly,
  ascending order: the caller re-sorts them;
- `exact=True`: enable_indexscan = off, an exact sequential scan.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from db.tables import Embedding

__all__ = [
    "HNSW_MAX_DIM",
    "check_model_name",
    "configure_search",
    "ensure_hnsw_index",
    "explain_plan",
    "hnsw_index_name",
    "index_info",
]

log = logging.getLogger(__name__)

HNSW_MAX_DIM = 2000  # pgvector's limit for an HNSW index over `vector`
_MAX_IDENTIFIER = 63  # PostgreSQL truncates longer identifiers
_MODEL_NAME = re.compile(r"[A-Za-z0-9_]+")  # a model name that is safe as a literal and a name
_VECTOR_LITERAL = re.compile(r"'\[[^']*\]'::vector")


def hnsw_index_name(model_name: str) -> str:
    """`ix_embeddings_hnsw_<model_name>`; a name too long for PostgreSQL is shortened and
    given a hash suffix, so two long model names never share an index."""
    check_model_name(model_name)
    name = f"ix_embeddings_hnsw_{model_name}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_IDENTIFIER - 9]}_{digest}"


def check_model_name(model_name: str) -> None:
    """ValueError unless the model name is letters, digits and _ only."""
    # The name goes into DDL and (as a literal) into the search query: letters, digits, _ only.
    if not _MODEL_NAME.fullmatch(model_name):
        raise ValueError(f"model name must be letters, digits and _ only, got {model_name!r}")


def _connection(connection_or_session: Connection | Session) -> Connection:
    if isinstance(connection_or_session, Session):
        return connection_or_session.connection()
    return connection_or_session


def ensure_hnsw_index(
    connection_or_session: Connection | Session,
    *,
    model_name: str,
    dim: int,
    maintenance_work_mem: str | None = None,
) -> bool:
    """Create the model's partial HNSW cosine index if it is missing; True if created.

    The same form as migration 0003's index for vgg16_avgpool, for a backbone that becomes
    active later. Runs in the caller's transaction (the caller commits); the build locks
    `embeddings` against writes while it runs (seconds at 10k vectors, minutes at 1M).
    `maintenance_work_mem` (e.g. "2GB"): memory for this build only; a graph that does not
    fit is built much more slowly. False, with a warning, when `dim` exceeds what pgvector's
    HNSW supports (2000): that model's searches then scan exactly.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    name = hnsw_index_name(model_name)
    connection = _connection(connection_or_session)
    if connection.dialect.name != "postgresql":
        raise ValueError(f"HNSW indexes need PostgreSQL, not {connection.dialect.name}")
    if _index_exists(connection, name):
        return False
    if dim > HNSW_MAX_DIM:
        log.warning(
            "no HNSW index for %s: %d dimensions, pgvector's HNSW takes at most %d; "
            "its searches scan exactly",
            model_name,
            dim,
            HNSW_MAX_DIM,
        )
        return False
    if maintenance_work_mem is not None:
        connection.execute(
            sa.select(sa.func.set_config("maintenance_work_mem", maintenance_work_mem, True))
        )
    # DDL takes no bind parameters: the name and the model are checked above (letters, digits
    # and _ only), the dim is an int.
    connection.execute(
        sa.text(
            f"CREATE INDEX IF NOT EXISTS {name} ON embeddings USING hnsw "
            f"((index_vector::vector({int(dim)})) vector_cosine_ops) "
            f"WHERE model_name = '{model_name}'"
        )
    )
    log.info("HNSW index %s created (%d dimensions)", name, dim)
    return True


def _index_exists(connection: Connection, name: str) -> bool:
    found = connection.execute(sa.select(sa.func.to_regclass(name).is_not(None))).scalar_one()
    return bool(found)


def index_info(connection_or_session: Connection | Session, *, model_name: str) -> dict[str, Any]:
    """For logs: {"index": name, "present": bool, "valid": bool, "bytes": index size,
    "rows": the model's embeddings with an index vector}."""
    connection = _connection(connection_or_session)
    name = hnsw_index_name(model_name)
    rows = connection.execute(
        sa.select(sa.func.count())
        .select_from(Embedding)
        .where(Embedding.model_name == model_name, Embedding.index_vector.is_not(None))
    ).scalar_one()
    info: dict[str, Any] = {"index": name, "present": False, "valid": False, "bytes": 0}
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            sa.text(
                "SELECT i.indisvalid, pg_relation_size(i.indexrelid) FROM pg_index i "
                "WHERE i.indexrelid = to_regclass(:name)"
            ),
            {"name": name},
        ).first()
        if found is not None:
            info.update(present=True, valid=bool(found[0]), bytes=int(found[1]))
    info["rows"] = int(rows)
    return info


def configure_search(session: Session, *, exact: bool, ef_search: int) -> None:
    """Settings for this transaction only (set_config(..., true) = SET LOCAL), in one
    round trip."""
    # Every execution planned with its values: psycopg prepares a statement run 5 times,
    # and PostgreSQL's generic plan (LIMIT and filters unknown) may give up the index.
    settings = [("plan_cache_mode", "force_custom_plan")]
    if exact:
        settings.append(("enable_indexscan", "off"))
    else:
        settings += [
            ("hnsw.ef_search", str(ef_search)),
            ("hnsw.iterative_scan", "relaxed_order"),
        ]
    session.execute(sa.select(*(sa.func.set_config(name, value, True) for name, value in settings)))


def explain_plan(connection: Connection, statement: sa.ClauseElement, *, analyze: bool) -> str:
    """PostgreSQL's plan for `statement` (EXPLAIN [ANALYZE]) with its values inlined, the query
    vector shortened to '[...]'."""
    # Values inlined: the plan is the custom plan a search gets for the same values.
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    cursor = connection.exec_driver_sql(prefix + str(compiled))
    plan = "\n".join(str(row[0]) for row in cursor)
    return _VECTOR_LITERAL.sub("'[...]'::vector", plan)  # not 512 numbers per line
