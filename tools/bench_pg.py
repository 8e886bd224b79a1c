"""The `pgvector` section of `lookalike bench`: the k-nearest query inside PostgreSQL against the
in-memory index, on the same synthetic catalogue.

Opt-in (`lookalike bench --pgvector [--pg-sizes 100000,1000000]`, or alone:
`python -m search.bench_pg --sizes 100000 --json OUT`), never in `--quick`: it starts a
PostgreSQL server and, at a million vectors, spends a long time building the HNSW index.

For each size N, in one process (`search.bench.run_section`):
- an embedded PostgreSQL 18 + pgvector (db/embedded_pg.py) in a scratch folder, with
  shared_buffers large enough for the index (the server's 128 MB default would make every
  query read index pages through the kernel) and one parallel maintenance worker (2 cores);
- a database at the newest migration; the HNSW index of migration 0003 is dropped, N products
  (one image each, 6 categories) are loaded with binary COPY (embeddings as one numpy record
  array per chunk: both the raw float32 bytes and the pgvector index vector, as the
  application stores them), then VACUUM ANALYZE, then the index is built again
  (`search.pgindex.ensure_hnsw_index`, maintenance_work_mem 4 GB): load and build times. A
  build that would take longer than `build_budget_s` is cancelled; the rate it reached is
  reported and the HNSW variants are skipped;
- N vectors from `search.bench_data.SyntheticCatalog`, calibrated on the real VGG16 reference
  vectors exactly as the `index` section does (same seed, so the same vectors at the same N);
- per-query latency (p50/p99, client side: SQL, transfer and re-ranking included) of
  `PgVectorIndex` exact (sequential scan), HNSW with ef_search 40, 100 and 200, HNSW 100 with a
  category filter (1 product in 6), and `VectorIndex` exact and with its faiss IVF;
  recall@8 of each against the exact numpy answer (cosine), and whether PostgreSQL's plan
  uses the HNSW index.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["copy_catalog", "section_pgvector", "table_rows"]

K = 8
CATEGORIES = 6
MODEL_NAME = "vgg16_avgpool"  # the model whose HNSW index migration 0003 creates
DEFAULT_SIZES = (100_000, 1_000_000)
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


def _build_hnsw(
    url: str,
    *,
    dim: int,
    rows: int,
    maintenance_work_mem: str,
    budget_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Build the model's HNSW index (search.pgindex.ensure_hnsw_index) while another
    connection watches pg_stat_progress_create_index; cancel it past `budget_s`, or earlier
    once the rate seen so far says it cannot finish in time. Returns seconds, size or the
    rate reached."""
    import psycopg
    import sqlalchemy as sa

    from search.pgindex import ensure_hnsw_index, hnsw_index_name, index_info

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


# ---- measuring ---------------------------------------------------------------------------------


def _timed(
    search: Callable[[npt.NDArray[np.float32]], list[int]],
    queries: npt.NDArray[np.float32],
    warm_up: npt.NDArray[np.float32],
) -> tuple[list[float], list[list[int]]]:
    """Seconds per query and the product ids found, after the `warm_up` queries (other
    queries: connections opened, code paths and the graph's upper layers in cache)."""
    for q in warm_up:
        search(q)
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        ids = search(q)
        times.append(time.perf_counter() - started)
        found.append(ids)
    return times, found


def _summary(times: list[float], found: list[list[int]], truth: list[list[int]]) -> dict[str, Any]:
    from search.bench import _recall, percentile

    return {
        "queries": len(times),
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * percentile(times, 99),
        "mean_ms": 1000 * statistics.fmean(times),
        "recall_at_8": _recall(found, truth[: len(found)]),
    }


def _server_ms(plan: str) -> float:
    """Planning + execution time of an EXPLAIN ANALYZE, in ms (every search is planned: see
    search/pgindex.py, plan_cache_mode)."""
    times = [
        float(line.split()[2])
        for line in plan.splitlines()
        if line.startswith(("Planning Time:", "Execution Time:"))
    ]
    if len(times) != 2:
        raise ValueError("no planning and execution time in the plan")
    return sum(times)


def _uses_hnsw(plan: str) -> bool:
    from search.pgindex import hnsw_index_name

    return f"Index Scan using {hnsw_index_name(MODEL_NAME)}" in plan


def _measure_size(
    server: Any,
    size: int,
    args: dict[str, Any],
    sigmas: tuple[float, float],
    reference: npt.NDArray[np.float32],
    log: Callable[[str], None],
) -> dict[str, Any]:
    import sqlalchemy as sa

    from db import migrate
    from db.engine import create_db_engine, create_session_factory
    from search.bench import _exact_top_k, proc_status_mb
    from search.bench_data import SyntheticCatalog
    from search.index import ProductFacts, VectorIndex
    from search.pgindex import PgVectorIndex, hnsw_index_name

    n_queries = int(args.get("queries", 200))
    exact_queries = int(args.get("exact_queries", 200 if size <= 100_000 else 20))
    entry: dict[str, Any] = {"size": size, "dim": 512}
    gen = SyntheticCatalog(
        reference,
        families=max(1, size // 10),
        sigma_centre=sigmas[0],
        sigma_item=sigmas[1],
        seed=size,
    )
    vectors, _ = gen.draw(size)  # (N, 512) float32, the same as the index section's at N
    queries, _ = gen.draw(n_queries)  # (Q, 512), the index section's queries at this N
    warm_up, _ = gen.draw(20)  # (20, 512) more, never timed
    category = np.arange(size) % CATEGORIES  # product i + 1 is in category c{i % 6}

    log(f"{size:,}: exact answers (numpy)")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    q_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = _exact_top_k(unit, q_unit, K, None)
    filtered_truth = _exact_top_k(unit, q_unit, K, category == 0)
    del unit

    database = f"bench_pg_{size}"
    server.drop_database(database)
    server.create_database(database)
    url = server.url(database)
    engine = create_db_engine(url)
    migrate.upgrade(engine)
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
    entry["hnsw_build"] = _build_hnsw(
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

    sessions = create_session_factory(engine)

    def pg_search(index: PgVectorIndex, **filters: Any) -> Callable[[Any], list[int]]:
        def run(q: Any) -> list[int]:
            return [hit.product_id - 1 for hit in index.search(q, k=K, **filters)]

        return run

    variants: list[tuple[str, PgVectorIndex, dict[str, Any], int]] = [
        (
            "pgvector exact (sequential scan)",
            PgVectorIndex(sessions, model_name=MODEL_NAME, dim=512, exact=True),
            {},
            exact_queries,
        ),
    ]
    if built:
        for ef in (40, 100, 200):
            hnsw = PgVectorIndex(sessions, model_name=MODEL_NAME, dim=512, ef_search=ef)
            variants.append((f"pgvector HNSW ef_search {ef}", hnsw, {}, n_queries))
        hnsw = PgVectorIndex(sessions, model_name=MODEL_NAME, dim=512, ef_search=100)
        variants.append(
            ("pgvector HNSW ef_search 100, category filter", hnsw, {"category": "c0"}, n_queries)
        )
    results: list[dict[str, Any]] = []
    for label, index, filters, count in variants:
        log(f"{size:,}: {label}, {count} queries")
        times, found = _timed(pg_search(index, **filters), queries[:count], warm_up)
        truth_here = filtered_truth if filters else truth
        summary = _summary(times, found, truth_here)
        plan = index.explain(queries[0], k=K, **filters)
        # PostgreSQL's own planning + execution time (EXPLAIN ANALYZE) on the first timed
        # queries: the rest of the client-side figure is 3 round trips (settings, query,
        # commit), SQLAlchemy and the re-ranking in Python.
        server_ms = [
            _server_ms(index.explain(q, k=K, analyze=True, **filters))
            for q in queries[: min(count, 30)]
        ]
        summary.update(
            variant=label,
            uses_hnsw=_uses_hnsw(plan),
            plan=plan.splitlines()[:24],
            exact_fallbacks=index.exact_fallbacks,
            server_p50_ms=statistics.median(server_ms),
        )
        results.append(summary)
    with sessions() as session:
        entry["pg_settings"] = {
            name: session.execute(sa.text(f"SHOW {name}")).scalar_one()
            for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather")
        }
    engine.dispose()
    server.drop_database(database)  # frees the disk (GBs at 1M) before the next size

    facts = [
        ProductFacts(product_id=i, category=f"c{category[i]}", price=10.0, active=True)
        for i in range(size)
    ]
    ids = np.arange(size, dtype=np.int64)
    for label, ann in (
        ("in-memory VectorIndex exact", None),
        ("in-memory VectorIndex IVF (faiss)", "ann"),
    ):
        log(f"{size:,}: {label}")
        before = proc_status_mb("VmRSS")
        started = time.perf_counter()
        memory = VectorIndex.build(
            facts=facts,
            image_ids=ids,
            product_ids=ids,
            vectors=vectors,
            **({} if ann else {"ann_min_rows": None}),
        )
        uses_ann = memory.wait_for_ann(timeout=1800)
        build_s = time.perf_counter() - started

        def mem_search(q: Any, index: VectorIndex = memory) -> list[int]:
            return [hit.product_id for hit in index.search(q, k=K)]

        def mem_filtered(q: Any, index: VectorIndex = memory) -> list[int]:
            return [hit.product_id for hit in index.search(q, k=K, category="c0")]

        count = n_queries if ann or size <= 100_000 else min(n_queries, 100)
        times, found = _timed(mem_search, queries[:count], warm_up)
        summary = _summary(times, found, truth)
        filtered_times, filtered_found = _timed(mem_filtered, queries[:count], warm_up)
        summary.update(
            variant=label,
            uses_ann=uses_ann,
            build_s=build_s,
            rss_growth_mb=proc_status_mb("VmRSS") - before,
            category_filter=_summary(filtered_times, filtered_found, filtered_truth),
        )
        results.append(summary)
        del memory
    entry["variants"] = results
    return entry


def section_pgvector(args: dict[str, Any]) -> dict[str, Any]:
    """The section's work, in the process `search.bench.run_section` starts."""
    from db.embedded_pg import EmbeddedPostgres
    from search.bench_data import calibrate, load_reference

    def log(message: str) -> None:
        print(f"bench pgvector: {message}", file=sys.stderr, flush=True)

    reference = load_reference(Path(args["data"]) / "vgg16_avgpool_reference.npy")
    sigma_centre, sigma_item, _ = calibrate(reference)
    result: dict[str, Any] = {"sizes": [], "k": K, "load_average_before": os.getloadavg()[0]}
    workdir = Path(args.get("workdir") or tempfile.gettempdir())
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-pg-", dir=workdir) as scratch:
        server = EmbeddedPostgres(Path(scratch) / "pgdata")
        server.start()
        try:
            with server.connect_admin() as admin:
                # Room for the HNSW index in PostgreSQL's own cache (restart to apply).
                admin.execute(
                    f"ALTER SYSTEM SET shared_buffers = '{args.get('shared_buffers', '4GB')}'"
                )
                admin.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
            server.stop()
            server.start()
            with server.connect_admin() as admin:
                found = admin.execute(
                    "SELECT version(), (SELECT default_version FROM pg_available_extensions"
                    " WHERE name = 'vector'), current_setting('shared_buffers')"
                ).fetchone()
            assert found is not None
            result["server"], result["pgvector"], result["shared_buffers"] = map(str, found)
            for size in [int(s) for s in args["sizes"]]:
                try:
                    result["sizes"].append(
                        _measure_size(
                            server, size, args, (sigma_centre, sigma_item), reference, log
                        )
                    )
                except Exception as exc:  # one size failing still reports the others
                    log(f"{size:,} failed: {exc}")
                    result["sizes"].append({"size": size, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            server.stop()
    result["load_average_after"] = os.getloadavg()[0]
    return result


# ---- the table -------------------------------------------------------------------------------


def table_rows(section: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) rows of the `pgvector` section for `search.bench.build_table`."""
    rows: list[tuple[str, str]] = []
    if "error" in section:
        return [("pgvector", f"error: {str(section['error'])[:200]}")]
    for entry in section.get("sizes", []):
        size = entry["size"]
        if "error" in entry:
            rows.append((f"{size:,} vectors", f"error: {str(entry['error'])[:200]}"))
            continue
        build = entry["hnsw_build"]
        if build["built"]:
            built = (
                f"HNSW build {build['seconds']:.0f} s ({build['tuples_per_s']:,.0f} vectors/s), "
                f"index {build['bytes'] / 2**20:,.0f} MB"
            )
        else:
            built = (
                f"HNSW build not finished: {build['reason']}; rate "
                f"{build.get('recent_tuples_per_s', 0):,.0f} vectors/s at the end"
            )
        rows.append(
            (
                f"{size:,} vectors (synthetic, calibrated): load",
                f"COPY {entry['load_s']:.1f} s, VACUUM ANALYZE {entry['vacuum_analyze_s']:.1f} s, "
                f"table {entry['table_bytes'] / 2**20:,.0f} MB; {built}",
            )
        )
        for v in entry["variants"]:
            extra = ""
            if "uses_hnsw" in v:
                extra = ", plan uses HNSW" if v["uses_hnsw"] else ", plan: no HNSW"
                if "server_p50_ms" in v:
                    extra += f", in the server p50 {v['server_p50_ms']:.2f} ms"
                if v.get("exact_fallbacks"):
                    extra += f", {v['exact_fallbacks']} exact fallbacks"
            if "category_filter" in v:
                cf = v["category_filter"]
                extra = (
                    f"; category filter p50 {cf['p50_ms']:.2f} ms, recall@8 {cf['recall_at_8']:.4f}"
                )
            rows.append(
                (
                    f"{size:,}: {v['variant']}",
                    f"p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms, recall@8 "
                    f"{v['recall_at_8']:.4f} ({v['queries']} queries){extra}",
                )
            )
    if "load_average_before" in section:
        rows.append(
            (
                "server and machine load",
                f"{section.get('server', '?').split(' on ')[0]}, pgvector {section.get('pgvector')}"
                f"; load average before {section['load_average_before']:.2f}, after "
                f"{section.get('load_average_after', 0.0):.2f}",
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m search.bench_pg --sizes 100000 [--json OUT]`: this section alone, in this
    process (its progress on stderr)."""
    from search.bench import DEFAULT_DATA, format_table

    parser = argparse.ArgumentParser(prog="python -m search.bench_pg")
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--build-budget-min", type=float, default=45.0)
    parser.add_argument("--json", metavar="OUT")
    ns = parser.parse_args(argv)
    result = section_pgvector(
        section_args(
            sizes=[int(s) for s in ns.sizes.split(",") if s],
            data=ns.data,
            workdir=ns.workdir,
            queries=ns.queries,
            build_budget_s=60 * ns.build_budget_min,
        )
    )
    rows = [
        {"section": "pgvector", "measure": m, "value": v, "target": "", "verdict": ""}
        for m, v in table_rows(result)
    ]
    print(format_table(rows))
    if ns.json:
        Path(ns.json).write_text(json.dumps({"pgvector": result}, indent=2) + "\n")
    return 1 if "error" in result else 0


def section_args(
    *,
    sizes: Sequence[int],
    data: Path,
    workdir: Path | None,
    queries: int = 200,
    build_budget_s: float = 2700.0,
) -> dict[str, Any]:
    """The JSON arguments of the section (shared by `lookalike bench` and `main`)."""
    return {
        "sizes": list(sizes),
        "data": str(data),
        "workdir": str(workdir) if workdir else None,
        "queries": queries,
        "build_budget_s": build_budget_s,
        "maintenance_work_mem": "4GB",
        "shared_buffers": "4GB",
    }


if __name__ == "__main__":
    sys.exit(main())
