"""The `choice` section of `lookalike bench`, and the issue's goals computed from one run.

- choice: what `MODEL_RUNTIME=auto` chooses on this CPU, as the application chooses it
  (search.featurize.loader.ModelLoader.decide): float32 Keras and every served runtime measured
  on catalogue photos, int8 quantised on them, the fastest runtime passing the fidelity gate
  recorded beside the model. It runs first, so the record and the exported files (OpenVINO IR,
  int8 IR, ONNX) exist for every later section: the `auto` variant, the pipeline, `catalog
  import` and the bot's start all serve the runtime chosen here.
- goals: the ratios the issue asks for, each from figures of the same run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import Row, catalog_photos, lookup, proc_status_mb, row

__all__ = ["calibration_files", "choice_rows", "goal_rows", "section_choice"]


def calibration_files(photos: list[Path], count: int) -> list[Path]:
    """`count` catalogue photos spread over it: what int8 is calibrated and the gate run on.
    The runtime rows measure fidelity on other photos (bench.runtimes.fidelity_files)."""
    step = max(1, len(photos) // max(1, count))
    return photos[::step][:count]


def section_choice(args: dict[str, Any]) -> dict[str, Any]:
    """`args["calibration_count"]` photos, `args["bench_seconds"]` per runtime; with
    `args["reuse"]`, a record still valid here is kept (smoke mode: the test session's)."""
    from search.featurize import ModelLoader

    files = calibration_files(catalog_photos(Path(args["data"])), int(args["calibration_count"]))
    loader = ModelLoader(
        models_dir=Path(args["models_dir"]),
        weights=str(args["weights"]),
        seed=int(args["seed"]),
        calibration_photos=lambda limit: [p.read_bytes() for p in files[:limit]],
        calibration_count=int(args["calibration_count"]),
        bench_seconds=float(args["bench_seconds"]),
        progress=lambda message: print(f"choice: {message}", file=sys.stderr, flush=True),
    )
    started = time.perf_counter()
    decision = loader.current_decision("vgg16") if args.get("reuse") else None
    reused = decision is not None
    if decision is None:
        decision = loader.decide("vgg16")
    model_files = loader.files("vgg16")
    return {
        "decision": asdict(decision),
        "reused": reused,
        "seconds": time.perf_counter() - started,
        "record": str(model_files.decision),
        "int8_ir": model_files.fresh(model_files.int8_xml),
        "peak_rss_mb": proc_status_mb("VmHWM"),
    }


# ---- the table -------------------------------------------------------------------------------


def chosen_runtime(results: dict[str, Any]) -> str | None:
    chosen = lookup(results, "choice", "decision", "chosen")
    return str(chosen) if chosen else None


def choice_rows(results: dict[str, Any]) -> list[Row]:
    choice = results.get("choice", {})
    if "error" in choice:
        return [row("auto", "runtime choice", f"error: {str(choice['error'])[:200]}")]
    decision = choice.get("decision")
    if not decision:
        return []
    how = "record kept (still valid here)" if choice.get("reused") else "measured now"
    rows = [
        row(
            "auto",
            "MODEL_RUNTIME=auto chose (search.featurize.loader, on catalogue photos)",
            f"{decision['chosen']} on {decision['cpu']}; {how}: {decision['photos']} photos, "
            f"weights {decision['weights']}, {choice.get('seconds', 0):.0f} s",
        )
    ]
    trials = []
    for trial in decision.get("trials", []):
        if trial.get("images_per_s") is None:
            trials.append(f"{trial['runtime']} could not run")
            continue
        text = f"{trial['runtime']} {trial['images_per_s']:.1f}"
        if trial.get("refused"):
            text += " (refused by the gate)"
        trials.append(text)
    if trials:
        rows.append(
            row("auto", "the choice's own measurement, images/s", ", ".join(trials) + " images/s")
        )
    gated = [_gate_figures(t) for t in decision.get("trials", []) if t.get("cosine") is not None]
    if gated:
        held_out = decision.get("held_out") or decision["photos"]
        rows.append(
            row(
                "auto",
                f"the gate's figures on {held_out} held-out photos (cosine, top-8 kept): "
                "ranking space / raw",
                "; ".join(gated),
            )
        )
    return rows


def _gate_figures(trial: dict[str, Any]) -> str:
    """ "openvino-int8 0.99990 98.4% / 0.99999 99.5%": ranking space, then raw."""
    text = f"{trial['runtime']} {trial['cosine']:.5f} {100 * trial['top8_overlap']:.1f}%"
    if trial.get("raw_cosine") is not None:
        text += f" / {trial['raw_cosine']:.5f} {100 * trial['raw_top8_overlap']:.1f}%"
    return text


def _ratio_row(measure: str, value: float | None, seed: float | None, goal: float) -> Row:
    if not value or not seed:
        return row("goals", measure, "not measured", f">= x{goal:g} seed loop", False)
    ratio = value / seed
    return row(
        "goals",
        measure,
        f"x{ratio:.1f} ({value:.1f} / {seed:.2f} images/s)",
        f">= x{goal:g} seed loop",
        ratio >= goal,
    )


def goal_rows(results: dict[str, Any]) -> list[Row]:
    """The issue's goals, each a ratio or a bound over figures of this one run."""
    from bench.runtimes import seed_images_per_s

    seed = seed_images_per_s(results)
    pipe = results.get("pipeline", {})
    runtime = pipe.get("runtime", "?")
    rows = [
        _ratio_row(
            f"production pipeline ({runtime}) vs the seed loop",
            lookup(pipe, "featurise", "images_per_s"),
            seed,
            3.0,
        ),
        _ratio_row(
            f"`catalog import` ({runtime}) vs the seed loop",
            lookup(pipe, "import", "images_per_s"),
            seed,
            2.7,
        ),
    ]
    median = lookup(pipe, "search", "median_ms")
    rows.append(
        row(
            "goals",
            f"one search p50 ({lookup(pipe, 'search', 'products')} products)",
            f"{median:.0f} ms" if median is not None else "not measured",
            "<= 120 ms",
            median is not None and median <= 120,
        )
    )
    start = results.get("startup", {})
    ready, rss = start.get("ready_s"), start.get("rss_ready_mb")
    cores = lookup(results, "machine", "usable_cores")
    rows.append(
        row(
            "goals",
            f"bot ready ({start.get('products', '?')} products, {start.get('runtime', '?')}, "
            f"{cores} cores)",
            f"{ready:.1f} s, {rss:.0f} MB resident" if ready and rss else "not measured",
            "<= 3 s and <= 500 MB",
            bool(ready and rss and ready <= 3.0 and rss <= 500),
        )
    )
    chosen = chosen_runtime(results)
    served = {"pipeline": runtime, "bot": start.get("runtime")}
    rows.append(
        row(
            "goals",
            "pipeline, import and bot serve auto's choice",
            ", ".join(f"{k} {v}" for k, v in served.items()) + f" (chosen: {chosen})",
            "the chosen runtime",
            bool(chosen) and all(v == chosen for v in served.values()),
        )
    )
    return rows
