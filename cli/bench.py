"""`lookalike bench [--quick] [--json OUT]`: the performance comparisons of issue #5 in one run.

The work is in bench.run (each section in its own process); this module only parses the
options, prints the table and writes the JSON. docs/benchmarks.md holds the latest full run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.common import DEFAULT_DATA
from lookalike.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` subcommand to the `lookalike` parser."""
    bench = commands.add_parser(
        "bench",
        help="measure featurisation, search, the index and the bot (table + JSON)",
        description=(
            "Runs every performance comparison in one go: the machine's GEMM peak, the "
            "runtime MODEL_RUNTIME=auto chooses on this CPU (measured on the catalogue's photos "
            "and recorded beside the model in MODELS_DIR, as the application does), the seed's "
            "featurisation loop against each runtime (float32, bf16, int8, auto) with fidelity "
            "and peak memory, the production pipeline, catalogue import, customer searches, 50 "
            "customers at once, the bot's start, the index against the seed's NearestNeighbors "
            "at 300 to 1M products, the issue's goals as ratios of this run, then the web "
            "server, the feed sync and the colour step (its robustness to customers' photos, "
            "what it adds to a search and to an import). --quick takes "
            "about 4 minutes on 2 cores; full mode measures more variants on more photos."
        ),
    )
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer images and sizes (~4 min)")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="every section on the smallest inputs, to check it runs (the figures mean nothing)",
    )
    bench.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    bench.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with catalog/, queries/ and vgg16_avgpool_reference.npy "
        "(default: ../shared/footwear from the current folder, beside the checkout in it)",
    )
    bench.add_argument(
        "--weights", help="MODEL_WEIGHTS for this run (default: the setting; 'none' works offline)"
    )
    bench.add_argument("--workdir", type=Path, help="keep the scratch databases here")
    bench.add_argument(
        "--pgvector",
        action="store_true",
        help="also measure the k-nearest query inside an embedded PostgreSQL (pgvector HNSW "
        "against the in-memory index; long at 1M vectors, never part of --quick)",
    )
    bench.add_argument(
        "--pg-sizes",
        type=_sizes,
        default=(100_000, 1_000_000),
        metavar="N,N",
        help="vector counts for --pgvector (default: 100000,1000000)",
    )
    bench.set_defaults(handler=cmd_bench)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,N,... got {text!r}") from None
    if not sizes or min(sizes) < 100:
        raise argparse.ArgumentTypeError(f"sizes must be at least 100, got {text!r}")
    return sizes


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.run import Options, format_table, run_benchmarks

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    data = Path(args.data)
    if not (data / "catalog").is_dir():
        print(f"error: no catalog/ folder in {data.resolve()} (use --data)", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as scratch:
        options = Options(
            mode=mode,
            data=data.resolve(),
            models_dir=settings.models_dir.resolve(),
            weights=args.weights or settings.model_weights,
            seed=settings.model_seed,
            workdir=(args.workdir or Path(scratch)).resolve(),
            pg_sizes=args.pg_sizes if args.pgvector else (),
        )
        results = run_benchmarks(options, progress)
    print(format_table(results["table"]))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}", file=sys.stderr)
    failed = [
        name for name, value in results.items() if isinstance(value, dict) and "error" in value
    ]
    failed += [str(r.get("variant")) for r in results.get("runtimes", []) if "error" in r]
    if failed:
        print(f"error: these sections failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
