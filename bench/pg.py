"""The `pgvector` section of `lookalike bench`: the k-nearest query inside PostgreSQL against the
in-memory index, on the same synthetic catalogue.

Opt-in (`lookalike bench --pgvector [--pg-sizes 100000,1000000]`, or alone:
`python -m bench.pg --sizes 100000 --json OUT`), never in `--quick`: it starts a
PostgreSQL server and, at a million vectors, spends a long time building the HNSW index.

For each size N, in one process (`bench.common.run_section`):
- an embedded PostgreSQL 18 + pgvector (db/embedded_pg.py) in a scratch folder, with
  shared_buffers large enough for the index (the server's 128 MB default would make every
  query read index pages through the kernel) and one parallel maintenance worker (2 cores);
- a database at the newest migration; the HNSW index of migration 0003 is dropped, N products
  (one image each, 6 categories) are loaded with binary COPY (bench.pg_load), then
  VACUUM ANALYZE, then the index is built again (`bench.pg_load.build_hnsw`,
  maintenance_work_mem 4 GB): load and build times. A build that would take longer than
  `build_budget_s` is cancelled; the rate it reached is reported and the HNSW variants are
  skipped;
- N vectors from `bench.data.SyntheticCatalog`, calibrated on the real VGG16 reference
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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import (
    DEFAULT_DATA,
    exact_top_k,
    format_table,
    percentile,
    proc_status_mb,
    recall,
    row,
)
from bench.data import calibrate, load_reference
from bench.index import CATEGORIES, K, build_vector_index, synthetic_catalogue
from bench.pg_load import MODEL_NAME, load_database

__all__ = ["DEFAULT_SIZES", "section_args", "section_pgvector", "table_rows"]

DEFAULT_SIZES = (100_000, 1_000_000)


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
    return {
        "queries": len(times),
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * percentile(times, 99),
        "mean_ms": 1000 * statistics.fmean(times),
        "recall_at_8": recall(found, truth[: len(found)]),
    }


def _server_ms(plan: str) -> float:
    """Planning + execution time of an EXPLAIN ANALYZE, in ms (every search is planned: see
    search/index/postgres.py, plan_cache_mode)."""
    times = [
        float(line.split()[2])
        for line in plan.splitlines()
        if line.startswith(("Planning Time:", "Execution Time:"))
    ]
    if len(times) != 2:
        raise ValueError("no planning and execution time in the plan")
    return sum(times)


def _uses_hnsw(plan: str) -> bool:
    from search.index import hnsw_index_name

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

    from db import create_db_engine, create_session_factory
    from search.index import NO_FILTER, PgVectorIndex, SearchFilter

    n_queries = int(args.get("queries", 200))
    exact_queries = int(args.get("exact_queries", 200 if size <= 100_000 else 20))
    entry: dict[str, Any] = {"size": size, "dim": 512}
    gen = synthetic_catalogue(reference, size, sigmas)
    vectors, _ = gen.draw(size)  # (N, 512) float32, the same as the index section's at N
    queries, _ = gen.draw(n_queries)  # (Q, 512), the index section's queries at this N
    warm_up, _ = gen.draw(20)  # (20, 512) more, never timed
    category = np.arange(size) % CATEGORIES  # product i + 1 is in category c{i % 6}

    log(f"{size:,}: exact answers (numpy)")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    q_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = exact_top_k(unit, q_unit, K, None)
    filtered_truth = exact_top_k(unit, q_unit, K, category == 0)
    del unit

    database = f"bench_pg_{size}"
    url = load_database(server, database, vectors, args, entry, log)
    built = bool(entry["hnsw_build"]["built"])
    engine = create_db_engine(url)

    sessions = create_session_factory(engine)

    def pg_search(index: PgVectorIndex, query_filter: SearchFilter) -> Callable[[Any], list[int]]:
        def run(q: Any) -> list[int]:
            return [hit.product_id - 1 for hit in index.search(q, k=K, query_filter=query_filter)]

        return run

    variants: list[tuple[str, PgVectorIndex, SearchFilter, int]] = [
        (
            "pgvector exact (sequential scan)",
            PgVectorIndex(sessions, model_name=MODEL_NAME, dim=512, exact=True),
            NO_FILTER,
            exact_queries,
        ),
    ]
    if built:
        for ef in (40, 100, 200):
            hnsw = PgVectorIndex(sessions, model_name=MODEL_NAME, dim=512, ef_search=ef)
            variants.append((f"pgvector HNSW ef_search {ef}", hnsw, NO_FILTER, n_queries))
        hnsw = PgVectorIndex(sessions, model_name=MODEL_NAME, dim=512, ef_search=100)
        variants.append(
            (
                "pgvector HNSW ef_search 100, category filter",
                hnsw,
                SearchFilter(category="c0"),
                n_queries,
            )
        )
    results: list[dict[str, Any]] = []
    for label, index, filters, count in variants:
        log(f"{size:,}: {label}, {count} queries")
        times, found = _timed(pg_search(index, filters), queries[:count], warm_up)
        truth_here = filtered_truth if filters != NO_FILTER else truth
        summary = _summary(times, found, truth_here)
        plan = index.explain(queries[0], k=K, query_filter=filters)
        # PostgreSQL's own planning + execution time (EXPLAIN ANALYZE) on the first timed
        # queries: the rest of the client-side figure is 3 round trips (settings, query,
        # commit), SQLAlchemy and the re-ranking in Python.
        server_ms = [
            _server_ms(index.explain(q, k=K, analyze=True, query_filter=filters))
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

    results += _measure_in_memory(vectors, queries, warm_up, (truth, filtered_truth), log)
    entry["variants"] = results
    return entry


def _measure_in_memory(
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    warm_up: npt.NDArray[np.float32],
    truths: tuple[list[list[int]], list[list[int]]],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """`VectorIndex` exact and with its faiss IVF on the same vectors and queries; `truths`:
    the exact answers without and with the category filter."""
    from search.index import SearchFilter, VectorIndex

    size, results = vectors.shape[0], []
    for label, ann in (
        ("in-memory VectorIndex exact", False),
        ("in-memory VectorIndex IVF (faiss)", True),
    ):
        log(f"{size:,}: {label}")
        before = proc_status_mb("VmRSS")
        memory, uses_ann, build_s, ann_s = build_vector_index(vectors, ann=ann)

        def mem_search(q: Any, index: VectorIndex = memory) -> list[int]:
            return [hit.product_id for hit in index.search(q, k=K)]

        def mem_filtered(q: Any, index: VectorIndex = memory) -> list[int]:
            return [
                hit.product_id
                for hit in index.search(q, k=K, query_filter=SearchFilter(category="c0"))
            ]

        count = len(queries) if ann or size <= 100_000 else min(len(queries), 100)
        times, found = _timed(mem_search, queries[:count], warm_up)
        summary = _summary(times, found, truths[0])
        filtered_times, filtered_found = _timed(mem_filtered, queries[:count], warm_up)
        summary.update(
            variant=label,
            uses_ann=uses_ann,
            build_s=build_s + ann_s,
            rss_growth_mb=proc_status_mb("VmRSS") - before,
            category_filter=_summary(filtered_times, filtered_found, truths[1]),
        )
        results.append(summary)
        del memory
    return results


def section_pgvector(args: dict[str, Any]) -> dict[str, Any]:
    """The section's work, in the process `bench.common.run_section` starts."""
    from db import EmbeddedPostgres

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
    """(measure, value) rows of the `pgvector` section for `bench.run.build_table`."""
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
    """`python -m bench.pg --sizes 100000 [--json OUT]`: this section alone, in this
    process (its progress on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m bench.pg")
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
    print(format_table([row("pgvector", m, v) for m, v in table_rows(result)]))
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
