"""What a `lookalike bench --smoke` JSON must hold: checked once, wherever the smoke runs
(from the checkout on PostgreSQL, tests/test_bench.py; from the installed wheel on SQLite,
tests/test_wheel.py)."""

from __future__ import annotations

from typing import Any

from search.featurize import SERVED_RUNTIMES


def check_smoke_results(results: dict[str, Any]) -> None:
    expected = {"machine", "choice", "runtimes", "pipeline", "startup", "index", "meta", "table"}
    assert expected <= set(results)
    assert results["meta"]["mode"] == "smoke"
    assert results["machine"]["gemm_gflops"] > 0 and results["machine"]["cores"] >= 1
    # The choice step kept the session's record (smoke mode); every later section serves it.
    chosen = results["choice"]["decision"]["chosen"]
    assert results["choice"]["reused"] and chosen in (*SERVED_RUNTIMES, "keras")
    variants = {r["variant"]: r for r in results["runtimes"]}
    assert variants["seed"]["images_per_s"] > 0 and variants["seed"]["tensorflow_imported"]
    assert variants["auto b4"]["runtime"] == chosen
    for name in ("openvino b4", "auto b4"):
        fidelity = variants[name]["fidelity_vs_float32"]
        assert fidelity["photos"] == 12 and fidelity["cosine"] > 0.99
        assert "vectors" not in variants[name]
    # Served from the exported files: no TensorFlow in the process.
    assert variants["openvino b4"]["tensorflow_imported"] is False
    pipeline = results["pipeline"]
    for part in ("featurise", "import", "search", "load", "stream"):
        assert part in pipeline, pipeline
    assert pipeline["import"]["added"] == pipeline["import"]["images"] > 0
    assert pipeline["load"]["customers"] > 0 and pipeline["load"]["p95_s"] > 0
    assert results["startup"]["ready_s"] > 0 and results["startup"]["rss_ready_mb"] > 0
    assert results["pipeline"]["runtime"] == results["startup"]["runtime"] == chosen
    served = chosen in SERVED_RUNTIMES
    assert results["startup"]["tensorflow_imported"] is not served
    assert results["pipeline"]["tensorflow_imported"] is not served
    sizes = {entry["size"]: entry for entry in results["index"]["sizes"]}
    assert set(sizes) == {300, 10_000}
    for entry in sizes.values():
        for kind in ("exact", "default"):
            assert 0.0 <= entry[kind]["recall_at_8"] <= 1.0
            assert entry[kind]["p99_ms"] >= entry[kind]["p50_ms"] > 0
        assert entry["exact"]["recall_at_8"] == 1.0
    assert sizes[10_000]["default"]["uses_ann"] and not sizes[300]["default"]["uses_ann"]
    measures = [row["measure"] for row in results["table"]]
    assert any("GEMM" in m for m in measures) and any("customers" in m for m in measures)
    goals = [row for row in results["table"] if row["section"] == "goals"]
    assert len(goals) == 5 and all(row["verdict"] in ("ok", "MISSED") for row in goals)
    colour = results["colour"]  # bench.colour: robustness, describe, search and import cost
    assert [run["seed"] for run in colour["robustness"]] == [0]
    assert colour["robustness"][0]["photos"] == 8 and colour["robustness"][0]["agreement"] >= 0.0
    assert colour["search"]["searches"] == 3 and colour["search"]["colour_weight"] > 0
    assert colour["import"]["photos"] == 6 and len(colour["import"]["without_s"]) == 1
    assert sum(row["section"] == "colour" for row in results["table"]) == 5
    check_shared_photos(results)


def check_shared_photos(results: dict[str, Any]) -> None:
    """bench.sync's shared-photos scenario at smoke size: 40 rows over 6 photos, byte for byte."""
    shared = results["sync"]["shared"]
    assert (shared["rows"], shared["photos"]) == (40, 6)
    first, unchanged = shared["first"], shared["unchanged"]
    assert first["products"] == first["added"] == 40 and first["featurised"] == 6
    assert unchanged["products"] == 40 and unchanged["not_modified"] == 40
    assert unchanged["downloaded"] == unchanged["featurised"] == 0
    goal = [row for row in results["table"] if row["measure"].startswith("40 rows sharing 6")]
    assert [row["verdict"] for row in goal] == ["", "", "ok"]
