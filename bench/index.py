"""The `index` section of `lookalike bench`: the in-memory index against the seed's search.

`VectorIndex` (exact below the ANN threshold, faiss IVF + exact re-ranking above) against the
seed's NearestNeighbors re-fitted on every search, at the 300 real reference vectors and at
10k/100k/1M synthetic ones calibrated on them (bench.data): latency, recall@8 against
exact cosine (also with a category filter), memory.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Row, exact_top_k, percentile, proc_status_mb, recall, row
from bench.data import SyntheticCatalog, calibrate, describe, load_reference
from search.index import ProductFacts, SearchFilter, VectorIndex

__all__ = [
    "CATEGORIES",
    "K",
    "build_vector_index",
    "index_rows",
    "section_index",
    "synthetic_catalogue",
]

K = 8
CATEGORIES = 6  # product i is in category c{i % 6}: a category filter keeps 1 in 6


def synthetic_catalogue(
    reference: np.ndarray, size: int, sigmas: tuple[float, float]
) -> SyntheticCatalog:
    """Families of 10 around the reference vectors; the same seed at the same size, so every
    section draws the same (size, 512) catalogue and the same queries."""
    return SyntheticCatalog(
        reference,
        families=max(1, size // 10),
        sigma_centre=sigmas[0],
        sigma_item=sigmas[1],
        seed=size,
    )


def build_vector_index(vectors: np.ndarray, *, ann: bool) -> tuple[VectorIndex, bool, float, float]:
    """(index, whether its faiss IVF serves queries, seconds to build, seconds to train the
    IVF) for (n, dim) vectors, product i with image i in category c{i % 6}; `ann=False`:
    always exact."""
    size = vectors.shape[0]
    facts = [
        ProductFacts(product_id=i, category=f"c{i % CATEGORIES}", price=10.0, active=True)
        for i in range(size)
    ]
    ids = np.arange(size, dtype=np.int64)
    started = time.perf_counter()
    index = VectorIndex.build(
        facts=facts,
        image_ids=ids,
        product_ids=ids,
        vectors=vectors,
        **({} if ann else {"ann_min_rows": None}),
    )
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    uses_ann = index.wait_for_ann(timeout=1800)
    return index, uses_ann, build_s, time.perf_counter() - started


def section_index(args: dict[str, Any]) -> dict[str, Any]:
    reference = load_reference(Path(args["data"]) / "vgg16_avgpool_reference.npy")
    sigma_centre, sigma_item, synthetic_stats = calibrate(reference)
    result: dict[str, Any] = {
        "calibration": {
            "sigma_centre": sigma_centre,
            "sigma_item": sigma_item,
            "reference": describe(reference),
            "synthetic_300": synthetic_stats,
        },
        "sizes": [],
    }
    for size in [int(s) for s in args["sizes"]]:
        n_queries = int(args["queries"])
        if size <= len(reference):
            # The real vectors; queries from a synthetic family around them.
            vectors = reference[:size].copy()
            gen = SyntheticCatalog(
                reference, families=size, sigma_centre=0.0, sigma_item=sigma_item, seed=size
            )
            queries, _ = gen.draw(n_queries)
            source = "reference vectors"
        else:
            gen = synthetic_catalogue(reference, size, (sigma_centre, sigma_item))
            vectors, _ = gen.draw(size)  # (size, 512)
            queries, _ = gen.draw(n_queries)  # (n_queries, 512)
            source = "synthetic, calibrated"
        entry: dict[str, Any] = {"size": size, "source": source, "queries": n_queries}
        seed_queries = queries[: int(args["seed_queries"].get(str(size), 3))]
        entry["seed_ms_median"] = _seed_search_ms(vectors, seed_queries)
        entry.update(_measure_index(vectors, queries))
        entry["speedup_vs_seed"] = entry["seed_ms_median"] / entry["default"]["p50_ms"]
        result["sizes"].append(entry)
        del vectors, queries, gen
    result["peak_rss_mb"] = proc_status_mb("VmHWM")
    return result


def _seed_search_ms(vectors: np.ndarray, queries: np.ndarray) -> float:
    """The seed: NearestNeighbors re-fitted on every search; median ms."""
    from sklearn.neighbors import NearestNeighbors

    times = []
    for q in queries:
        started = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=K, metric="cosine")
        nn.fit(vectors)
        nn.kneighbors(q[np.newaxis])
        times.append(time.perf_counter() - started)
        del nn
    return 1000 * statistics.median(times)


def _measure_index(vectors: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """The exact index and the default one (IVF above the threshold) on the same queries."""
    size = vectors.shape[0]
    # Exact ground truth (cosine).
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    q_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = exact_top_k(unit, q_unit, K, None)
    filtered_truth = exact_top_k(unit, q_unit[:100], K, np.arange(size) % CATEGORIES == 0)
    del unit
    measured: dict[str, Any] = {}
    for label in ("exact", "default"):
        before = proc_status_mb("VmRSS")
        index, uses_ann, build_s, ann_s = build_vector_index(vectors, ann=label == "default")
        rss = proc_status_mb("VmRSS") - before
        times, found = [], []
        # The exact scan at a million rows takes ~0.1 s a query: fewer queries there.
        timed = queries if label == "default" or size < 1_000_000 else queries[:100]
        for q in timed:
            started = time.perf_counter()
            hits = index.search(q, k=K)
            times.append(time.perf_counter() - started)
            found.append([h.product_id for h in hits])
        filtered = [
            [h.product_id for h in index.search(q, k=K, query_filter=SearchFilter(category="c0"))]
            for q in queries[:100]
        ]
        info = index.ann_info()
        measured[label] = {
            "uses_ann": uses_ann,
            "build_s": build_s,
            "ann_build_s": ann_s if uses_ann else 0.0,
            "p50_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * percentile(times, 99),
            "recall_at_8": recall(found, truth[: len(found)]),
            "timed_queries": len(timed),
            "recall_at_8_category_filter": recall(filtered, filtered_truth),
            # The index's unit vectors, float32 (its per-row facts and spare capacity aside).
            "vector_bytes": len(index) * index.dim * 4,
            "ann_bytes": int(info["bytes"]),
            "nlist": int(info["nlist"]),
            "nprobe": int(info["nprobe"]),
            "rss_growth_mb": rss,
        }
        del index
    return measured


def index_rows(results: dict[str, Any]) -> list[Row]:
    index = results.get("index", {})
    rows = []
    if "error" in index:
        rows.append(row("index", "index", f"error: {index['error'][:200]}"))
    for entry in index.get("sizes", []):
        size = entry["size"]
        default, exact = entry["default"], entry["exact"]
        kind = "IVF-SQ8 + exact re-rank" if default["uses_ann"] else "exact"
        memory = (default["vector_bytes"] + default["ann_bytes"]) / 2**20
        rows.append(
            row(
                "index",
                f"{size:,} products ({entry['source']}): {kind}",
                f"p50 {default['p50_ms']:.3f} ms, p99 {default['p99_ms']:.3f} ms vs seed "
                f"{entry['seed_ms_median']:.1f} ms = x{entry['speedup_vs_seed']:.0f}; recall@8 "
                f"{default['recall_at_8']:.4f} (category filter "
                f"{default['recall_at_8_category_filter']:.4f}); "
                f"exact scan p50 {exact['p50_ms']:.3f} ms; memory {memory:.0f} MB "
                f"(+{default['rss_growth_mb']:.0f} MB RSS)",
                ">= x20" + ("; p99 < 50 ms, recall >= 0.99" if size >= 1_000_000 else ""),
                entry["speedup_vs_seed"] >= 20
                and (
                    size < 1_000_000 or (default["p99_ms"] < 50 and default["recall_at_8"] >= 0.99)
                ),
            )
        )
    return rows
