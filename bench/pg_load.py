"""Loading a synthetic catalogue into PostgreSQL fast, and building its HNSW index under watch,
for the `pgvector` section of `lookalike bench` (bench.pg).

- `copy_catalog`: N products, images and embeddings by COPY (embeddings in binary: one packed
  numpy record array per chunk, both the raw float32 bytes and the pgvector index vector, as
  the application stores them);
- `build_hnsw`: `search.index.hnsw.ensure_hnsw_index` in one connection while another watches
  pg_stat_progress_create_index, cancelling a build that cannot finish within its budget;
- `load_database`: both, on a fresh database at the newest migration, then VACUUM ANALYZE and
  everything read into shared_buffers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.index import CATEGORIES

__all__ = ["MODEL_NAME", "build_hnsw", "copy_catalog", "load_database"]

MODEL_NAME = "vgg16_avgpool"  # the model whose HNSW index migration 0003 creates
_COPY_CHUNK = 16_384  # rows per COPY write (~70 MB of embeddings at 512 dimensions)
_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 in Unix microseconds (binary timestamps)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


# ---- loading ---------------------------------------------------------------------------------


def _embedding_records(
    vectors: npt.NDArray[np.float32], first_id: int, model_name: str, created_us: int
) -> bytes:
    """Binary COPY rows for embeddings (id, image_id, model_name, dim, vector, index_vector,
    created_at) from (c, dim) vectors: one packed numpy record per row, built in one go.

    Every field is fixed-size here, so a row is a big-endian record: int16 field count, then
    per field int32 length + value. `vector` is the raw little-endian float32 bytes (what the
    application stores), `index_vector` pgvector's binary form (uint16 dim, uint16 0, dim
    big-endian float32).
    """
    c, dim = vectors.shape
    name = model_name.encode()
    record = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i4"),
            ("image_len", ">i4"),
            ("image", ">i4"),
            ("model_len", ">i4"),
            ("model", f"S{len(name)}"),
            ("dim_len", ">i4"),
            ("dim", ">i4"),
            ("raw_len", ">i4"),
            ("raw", "<f4", (dim,)),
            ("vec_len", ">i4"),
            ("vec_dim", ">u2"),
            ("vec_unused", ">u2"),
            ("vec", ">f4", (dim,)),
            ("created_len", ">i4"),
            ("created", ">i8"),
        ]
    )
    rows = np.empty(c, dtype=record)
    ids = np.arange(first_id, first_id + c, dtype=np.int64)
    rows["fields"] = 7
    rows["id_len"], rows["id"] = 4, ids
    rows["image_len"], rows["image"] = 4, ids  # image i is embedding i
    rows["model_len"], rows["model"] = len(name), name
    rows["dim_len"], rows["dim"] = 4, dim
    rows["raw_len"], rows["raw"] = 4 * dim, vectors
    rows["vec_len"], rows["vec_dim"], rows["vec_unused"] = 4 + 4 * dim, dim, 0
    rows["vec"] = vectors
    rows["created_len"], rows["created"] = 8, created_us
    return rows.tobytes()


def _text_rows(lines: Iterator[str]) -> Iterator[bytes]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= _COPY_CHUNK:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


def copy_catalog(
    connection: Any, vectors: npt.NDArray[np.float32], *, model_name: str = MODEL_NAME
) -> None:
    """Products 1..N (category c{i % 6}, price 10, active), image i of product i, embedding i
    of image i with vectors[i - 1], by COPY on a psycopg connection (the caller commits)."""
    n = vectors.shape[0]
    stamp = "2026-01-01 00:00:00+00"
    products = (
        f"{i}\tsku{i}\tproduct {i}\t10.00\tEUR\t\\N\tc{(i - 1) % CATEGORIES}\tt\tf"
        f"\t{stamp}\t{stamp}\n"
        for i in range(1, n + 1)
    )
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY products (id, sku, name, price, currency, url, category, in_stock, removed,"
            " created_at, updated_at) FROM STDIN"
        ) as copy:
            for block in _text_rows(products):
                copy.write(block)
        images = (
            f"{i}\t{i}\t{i:08d}.jpg\t{i:064x}\t224\t224\t1000\t\\N\t{stamp}\n"
            for i in range(1, n + 1)
        )
        with cursor.copy(
            "COPY product_images (id, product_id, file_name, content_hash, width, height,"
            " byte_size, telegram_file_id, created_at) FROM STDIN"
        ) as copy:
            for block in _text_rows(images):
                copy.write(block)
        created_us = int(time.time() * 1_000_000) - _PG_EPOCH_US
        with cursor.copy(
            "COPY embeddings (id, image_id, model_name, dim, vector, index_vector, created_at)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.write(_COPY_HEADER)
            for start in range(0, n, _COPY_CHUNK):
                part = np.ascontiguousarray(vectors[start : start + _COPY_CHUNK])
                copy.write(_embedding_records(part, start + 1, model_name, created_us))
            copy.write(_COPY_TRAILER)
        for table in ("products", "product_images", "embeddings"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})")


# ---- the HNSW build, watched -------------------------------------------------------------------


def build_hnsw(
    url: str,
    *,
    dim: int,
    rows: int,
    maintenance_work_mem: str,
    budget_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Build the model's HNSW index (search.index.hnsw.ensure_hnsw_index) while another
    connection watches pg_stat_progress_create_index; cancel it past `budget_s`, or earlier
    once the rate seen so far says it cannot finish in time. Returns seconds, size or the
    rate reached."""
    import psycopg
    import sqlalchemy as sa

    from search.index import ensure_hnsw_index, hnsw_index_name, index_info

    engine = sa.create_engine(url)
    outcome: dict[str, Any] = {}
    backend: list[int] = []

    def build() -> None:
        try:
            with engine.begin() as connection:
                backend.append(
                    int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
                )
                connection.exec_driver_sql("SET max_parallel_maintenance_workers = 1")
                ensure_hnsw_index(
                    connection,
                    model_name=MODEL_NAME,
                    dim=dim,
                    maintenance_work_mem=maintenance_work_mem,
                )
        except Exception as exc:  # the cancel arrives here as QueryCanceled
            outcome["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

    started = time.perf_counter()
    worker = threading.Thread(target=build, name="hnsw-build")
    worker.start()
    samples: list[tuple[float, int, int]] = []  # (seconds, tuples done, tuples total)
    cancelled = None
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as watch:
        while worker.is_alive():
            worker.join(timeout=15.0)
            elapsed = time.perf_counter() - started
            row = watch.execute(
                "SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index"
            ).fetchone()
            if row is not None:
                # pgvector reports tuples done but not the total (0): the table's rows.
                samples.append((elapsed, int(row[1] or 0), int(row[2] or 0) or rows))
                done, total = samples[-1][1], samples[-1][2]
                if len(samples) % 8 == 0:
                    log(f"HNSW build: {row[0]}, {done:,} of {total:,} tuples, {elapsed:.0f} s")
                projected = _projected_total(samples)
                if cancelled is None and (
                    elapsed > budget_s
                    or (elapsed > min(600.0, budget_s / 3) and projected > 1.5 * budget_s)
                ):
                    cancelled = (
                        f"cancelled after {elapsed:.0f} s ({done:,} of {total:,} tuples; "
                        f"projected {projected / 60:.0f} min > budget {budget_s / 60:.0f} min)"
                    )
                    log(f"HNSW build {cancelled}")
                    if backend:
                        watch.execute("SELECT pg_cancel_backend(%s)", (backend[0],))
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {"seconds": seconds, "maintenance_work_mem": maintenance_work_mem}
    if samples:
        result["progress"] = [list(s) for s in samples[:: max(1, len(samples) // 40)]]
        done = samples[-1][1]
        result["tuples_per_s"] = done / samples[-1][0] if samples[-1][0] else 0.0
        result["recent_tuples_per_s"] = _recent_rate(samples)
    if cancelled is not None or "error" in outcome:
        result["built"] = False
        result["reason"] = cancelled or outcome.get("error")
    else:
        result["built"] = True
        with engine.connect() as connection:
            info = index_info(connection, model_name=MODEL_NAME)
        result["bytes"] = info["bytes"]
        result["index"] = hnsw_index_name(MODEL_NAME)
        result["tuples_per_s"] = info["rows"] / seconds
    engine.dispose()
    return result


def _recent_rate(samples: Sequence[tuple[float, int, int]]) -> float:
    """Tuples per second over the last quarter of the samples (insertion slows as the graph
    grows: the recent rate is the honest one for projecting)."""
    if len(samples) < 2:
        return 0.0
    first = samples[max(0, len(samples) - 1 - max(1, len(samples) // 4))]
    last = samples[-1]
    span = last[0] - first[0]
    return (last[1] - first[1]) / span if span > 0 else 0.0


def _projected_total(samples: Sequence[tuple[float, int, int]]) -> float:
    """Seconds the whole build would take at the recent rate; 0 while unknown."""
    rate = _recent_rate(samples)
    elapsed, done, total = samples[-1]
    if rate <= 0 or total <= 0:
        return 0.0
    return elapsed + (total - done) / rate


def load_database(
    server: Any,
    database: str,
    vectors: npt.NDArray[np.float32],
    args: dict[str, Any],
    entry: dict[str, Any],
    log: Callable[[str], None],
) -> str:
    """A fresh `database` on the embedded server at the newest migration, holding the (N, dim)
    vectors (COPY), vacuumed, with its HNSW index built (within args' budget) and everything
    read into shared_buffers. Timings and sizes go into `entry`; returns the database URL."""
    import sqlalchemy as sa

    from db import create_db_engine, upgrade
    from search.index import hnsw_index_name

    size = vectors.shape[0]
    server.drop_database(database)
    server.create_database(database)
    url: str = server.url(database)
    engine = create_db_engine(url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP INDEX {hnsw_index_name(MODEL_NAME)}")

        log(f"{size:,}: loading with COPY")
        started = time.perf_counter()
        raw = engine.raw_connection()
        try:
            copy_catalog(raw.driver_connection, vectors)
            raw.commit()
        finally:
            raw.close()
        entry["load_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
            sizes = connection.exec_driver_sql(
                "SELECT pg_total_relation_size('embeddings'), pg_relation_size('embeddings')"
            ).one()
        entry["vacuum_analyze_s"] = time.perf_counter() - started
        entry["table_bytes"] = int(sizes[0])
        entry["heap_bytes"] = int(sizes[1])

        log(f"{size:,}: building the HNSW index")
        entry["hnsw_build"] = build_hnsw(
            url,
            dim=512,
            rows=size,
            maintenance_work_mem=str(args.get("maintenance_work_mem", "4GB")),
            budget_s=float(args.get("build_budget_s", 2700)),
            log=log,
        )
        built = bool(entry["hnsw_build"]["built"])
        # Steady state, as on a server that has been answering for a while: the index (and the
        # small tables) read into shared_buffers. Without it the first few hundred queries after
        # the build read index pages from the kernel's cache (1M: p50 ~100 ms, p99 ~1 s).
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            relations = ["embeddings", "product_images", "products"]
            for relation in relations + ([hnsw_index_name(MODEL_NAME)] if built else []):
                connection.execute(sa.select(sa.func.pg_prewarm(relation)))
        entry["prewarm_s"] = time.perf_counter() - started
    finally:
        engine.dispose()
    return url
