"""`lookalike bench`: every performance comparison of issue #5 in one run, as a table and JSON.

This module orchestrates; each section lives in its own module and runs in its own Python
process (`python -m bench.run SECTION ARGS_JSON`, see bench.common.run_section):

- machine            bench.runtimes: GEMM peak and the featurisation limit
- choice             bench.choice: what MODEL_RUNTIME=auto chooses on this CPU (every
                     runtime measured on catalogue photos, int8 quantised, the record
                     written beside the model): every later section serves that choice
- runtime            bench.runtimes: the seed's loop against each runtime (float32,
                     bf16 where the CPU has it, int8, `auto`), with fidelity and peak memory
- pipeline           bench.pipeline: featurise_files and `catalog import` of
                     ../shared/footwear/catalog into a fresh database; one customer search;
                     50 customers at once through `engine.search_photo`; a long stream with a
                     stub model (bounded memory)
- startup            bench.startup: the bot's start as bot/application.py's post_init does it
- goals              bench.choice.goal_rows: the issue's ratios, from this one run
- index              bench.index: VectorIndex against the seed's re-fitted
                     NearestNeighbors at 300 real and 10k/100k/1M synthetic vectors
- pgvector           bench.pg, opt-in (`--pgvector`, never in --quick): the k-nearest
                     query inside an embedded PostgreSQL against VectorIndex
- plugged sections   PLUGGED_SECTIONS: sections other modules contribute (the web server, the
                     feed sync, kill -9 of `catalog import`: bench.kill_import, the colour
                     step), each run when its module is present and the mode is one of its

Nothing here is a timed test: the figures depend on the machine and on what else runs on it
(the load average before and after is recorded). tests/test_bench.py runs the smoke mode.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Row, emit, format_table, quiet_logs, row, run_section
from bench.modes import MODES, Mode

__all__ = [
    "MODES",
    "PLUGGED_SECTIONS",
    "SECTIONS",
    "Mode",
    "Options",
    "PluggedSection",
    "build_table",
    "format_table",
    "run_benchmarks",
]


@dataclass(frozen=True)
class PluggedSection:
    """A section another module contributes. The module defines

        def section(args: dict[str, Any]) -> dict[str, Any]        # in its own process
        def table_rows(result: dict[str, Any]) -> list[Row]        # bench.common.row(...)

    `args` holds data, models_dir, weights, seed (as every section gets them), `mode`
    ("smoke", "quick" or "full": the module picks its own sizes) and `workdir` (a scratch
    folder of its own). The result lands in the JSON under `name`; a result with an "error"
    key makes `lookalike bench` exit 1.
    """

    name: str  # the key in the results, and `python -m bench.run NAME`
    module: str  # e.g. "bench.web"
    progress: str  # the line printed when it starts
    modes: tuple[str, ...] = ("smoke", "quick", "full")
    timeout_s: float = 1800.0

    def available(self) -> bool:
        """Whether the module is there and defines both functions (a section whose module
        has not landed, or not yet in this shape, is skipped)."""
        if importlib.util.find_spec(self.module) is None:
            return False
        module = importlib.import_module(self.module)
        return callable(getattr(module, "section", None)) and callable(
            getattr(module, "table_rows", None)
        )

    def function(self, name: str) -> Callable[[dict[str, Any]], Any]:
        function: Callable[[dict[str, Any]], Any] = getattr(
            importlib.import_module(self.module), name
        )
        return function


# The web server, the feed sync and the colour step: run after the built-in sections, in this order.
PLUGGED_SECTIONS: tuple[PluggedSection, ...] = (
    PluggedSection("web", "bench.web", "web: the HTTP server over a socket"),
    PluggedSection("sync", "bench.sync", "feed sync: a shop's product feed"),
    PluggedSection(
        "kill",
        "bench.kill_import",
        "kill: catalog import killed -9 at random moments on a fresh shop",
        modes=("quick", "full"),
    ),
    PluggedSection("colour", "bench.colour", "colour: robustness, search and import cost"),
)


@dataclass(frozen=True)
class Options:
    mode: str  # "smoke", "quick" or "full"
    data: Path
    models_dir: Path
    weights: str
    seed: int
    workdir: Path
    pg_sizes: tuple[int, ...] = ()  # sizes for the opt-in pgvector section; () skips it
    # Plugged sections to run (by name); None: every available one the mode includes.
    plugged: frozenset[str] | None = None


# Built-in sections: name -> (module, function), imported only in the section's own process
# (TensorFlow, faiss, psycopg load where they are needed).
SECTIONS: dict[str, tuple[str, str]] = {
    "machine": ("bench.runtimes", "section_machine"),
    "choice": ("bench.choice", "section_choice"),
    "runtime": ("bench.runtimes", "section_runtime"),
    "pipeline": ("bench.pipeline", "section_pipeline"),
    "startup": ("bench.startup", "section_startup"),
    "index": ("bench.index", "section_index"),
    "pgvector": ("bench.pg", "section_pgvector"),
}


def _section(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The function that runs section `name`."""
    for plugged in PLUGGED_SECTIONS:
        if plugged.name == name:
            return plugged.function("section")
    module, function = SECTIONS[name]
    found: Callable[[dict[str, Any]], dict[str, Any]] = getattr(
        importlib.import_module(module), function
    )
    return found


def run_benchmarks(
    options: Options, progress: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Every section in turn; the results as one JSON-ready dict with a "table"."""
    from bench.runtimes import fidelity_vs_float32, variant_env

    mode = MODES[options.mode]
    started = time.time()
    common = {
        "data": str(options.data),
        "models_dir": str(options.models_dir),
        "weights": options.weights,
        "seed": options.seed,
    }
    load_before = os.getloadavg()
    results: dict[str, Any] = {}

    progress("machine: cores and numpy float32 GEMM peak")
    clean = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    small = mode.name == "smoke"
    results["machine"] = run_section(
        "machine", {"n": 2048 if small else 4096, "repeats": 3 if small else 7}, env=clean
    )

    progress("choice: MODEL_RUNTIME=auto measures every runtime on catalogue photos")
    results["choice"] = run_section(
        "choice",
        {
            **common,
            "calibration_count": mode.calibration_photos,
            "bench_seconds": mode.choice_seconds,
            "reuse": small,  # smoke: a record still valid here (the test session's) is kept
        },
    )

    runtimes = []
    for variant in mode.variants:
        progress(f"featurisation runtime: {variant}")
        images = mode.seed_images if variant == "seed" else mode.runtime_images
        measured = run_section(
            "runtime",
            {
                **common,
                "variant": variant,
                "images": images,
                "min_seconds": mode.runtime_seconds,
                "fidelity_photos": mode.fidelity_photos,
            },
            env=variant_env(variant),
        )
        measured.setdefault("variant", variant)
        runtimes.append(measured)
    fidelity_vs_float32(runtimes)
    results["runtimes"] = runtimes
    # The production sections serve what auto chose (the record the choice step wrote).
    auto_env = {**os.environ, "MODEL_RUNTIME": "auto"}

    progress("pipeline: featurise, catalogue import, searches, customers at once")
    results["pipeline"] = run_section(
        "pipeline",
        {
            **common,
            "workdir": str(options.workdir / "pipeline"),
            "featurise_images": mode.featurise_images,
            "searches": mode.searches,
            "customers": mode.customers,
            "load_rounds": mode.load_rounds,
            "stream_images": mode.stream_images,
        },
        env=auto_env,
    )

    progress("bot start: engine, model from MODELS_DIR, warm-up, inference worker")
    catalogue = str(options.workdir / "pipeline" / "catalogue")
    results["startup"] = run_section(
        "startup", {**common, "catalogue": catalogue, "t0": time.time()}, env=auto_env
    )
    if mode.name == "full":  # the same start with the model on plain Keras, for comparison
        keras_env = {**os.environ, "MODEL_RUNTIME": "keras"}
        results["startup_keras"] = run_section(
            "startup", {**common, "catalogue": catalogue, "t0": time.time()}, env=keras_env
        )

    progress(f"index: {', '.join(f'{s:,}' for s in mode.index_sizes)} products")
    results["index"] = run_section(
        "index",
        {
            **common,
            "sizes": list(mode.index_sizes),
            "queries": mode.index_queries,
            "seed_queries": {str(k): v for k, v in mode.seed_queries.items()},
        },
    )
    if options.pg_sizes:
        from bench.pg import section_args

        progress(f"pgvector: {', '.join(f'{s:,}' for s in options.pg_sizes)} vectors")
        results["pgvector"] = run_section(
            "pgvector",
            section_args(sizes=options.pg_sizes, data=options.data, workdir=options.workdir),
            timeout=6 * 3600,
        )
    for plugged in _plugged_to_run(options):
        progress(plugged.progress)
        workdir = str(options.workdir / plugged.name)
        results[plugged.name] = run_section(
            plugged.name,
            {**common, "mode": mode.name, "workdir": workdir},
            timeout=plugged.timeout_s,
        )
    results["meta"] = {
        "mode": mode.name,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "weights": options.weights,
        "data": str(options.data),
    }
    results["table"] = build_table(results)
    return results


def _plugged_to_run(options: Options) -> list[PluggedSection]:
    return [
        plugged
        for plugged in PLUGGED_SECTIONS
        if options.mode in plugged.modes
        and (options.plugged is None or plugged.name in options.plugged)
        and plugged.available()
    ]


def build_table(results: dict[str, Any]) -> list[Row]:
    """Rows of (section, measure, value, target, verdict) from the results (of any sections:
    a missing or failed one gives no rows or an error row)."""
    from bench.choice import choice_rows, goal_rows
    from bench.index import index_rows
    from bench.pipeline import pipeline_rows
    from bench.runtimes import machine_rows, runtime_rows
    from bench.startup import startup_rows

    rows = machine_rows(results) + choice_rows(results) + runtime_rows(results)
    rows += pipeline_rows(results)
    rows += index_rows(results)
    if "pgvector" in results:
        from bench.pg import table_rows

        rows += [
            row("pgvector", measure, value) for measure, value in table_rows(results["pgvector"])
        ]
    for key in ("startup", "startup_keras"):
        rows += startup_rows(results.get(key, {}))
    if "pipeline" in results or "startup" in results:
        rows += goal_rows(results)
    for plugged in PLUGGED_SECTIONS:
        section = results.get(plugged.name)
        if section is None:
            continue
        if "error" in section:
            rows.append(row(plugged.name, plugged.name, f"error: {str(section['error'])[:200]}"))
        else:
            rows += plugged.function("table_rows")(section)
    meta = results.get("meta", {})
    if meta:
        rows.append(
            row(
                "run",
                f"mode {meta['mode']}, {meta['seconds']:.0f} s",
                f"load average before {meta['load_average_before'][0]}, after "
                f"{meta['load_average_after'][0]} (other processes share the cores)",
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.run SECTION ARGS_JSON`: one section, its result on stdout."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    names = [*SECTIONS, *(p.name for p in PLUGGED_SECTIONS)]
    parser.add_argument("section", choices=names)
    parser.add_argument("args", help="the section's arguments as JSON")
    ns = parser.parse_args(argv)
    with quiet_logs():
        emit(_section(ns.section)(json.loads(ns.args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
