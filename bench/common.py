"""What every `lookalike bench` section shares: running a section in its own process, memory
and latency figures, a scratch engine, exact nearest neighbours and recall, and the table.

A section is a function `args -> result` (both JSON-ready dicts) that `run_section` runs as
`python -m bench.run NAME ARGS_JSON` in a fresh process: runtimes do not share thread pools
or memory, and each section's peak resident memory is its own.
"""

from __future__ import annotations

import json
import logging
import os
import site
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lookalike.settings import Settings
    from search import SearchEngine
    from search.featurize import Featurizer

__all__ = [
    "DEFAULT_DATA",
    "PACKAGES_ROOT",
    "TABLE_HEADERS",
    "Row",
    "catalog_photos",
    "child_env",
    "emit",
    "exact_top_k",
    "format_table",
    "lookup",
    "open_scratch_engine",
    "percentile",
    "proc_status_mb",
    "quiet_logs",
    "recall",
    "row",
    "run_section",
]

# The folder our packages are imported from: the checkout (`python -m cli` run in it, or an
# editable install) or site-packages (an installed wheel). A section's process imports the
# same code from there.
PACKAGES_ROOT = Path(__file__).resolve().parents[1]
# The shop's demo data (catalog/, queries/, products.csv, the reference vectors) is not part of
# the package: by default ../shared/footwear from the current folder, which is beside the
# checkout when run from it (`make bench`); elsewhere, --data.
DEFAULT_DATA = Path("..") / "shared" / "footwear"
RESULT_PREFIX = "BENCH-RESULT "
TABLE_HEADERS = ("section", "measure", "value", "target", "verdict")

Row = dict[str, str]  # one table row: TABLE_HEADERS -> text


# ---- one section, one process ------------------------------------------------------------------


def run_section(
    name: str, args: dict[str, Any], *, env: dict[str, str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run `python -m bench.run NAME ARGS` and return its result (or an error record)."""
    started = time.perf_counter()
    full_env = child_env(dict(env if env is not None else os.environ))
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "bench.run", name, json.dumps(args)],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{name}: timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            result.setdefault("process_seconds", round(time.perf_counter() - started, 1))
            return result
    tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
    return {"error": f"{name} exited {proc.returncode} without a result: {tail}"}


def child_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child `sys.executable -P -m ...` that must import this very code. Installed,
    the child's own site-packages holds it; run from a checkout, PACKAGES_ROOT goes first on
    PYTHONPATH (never site-packages there: it would come before the standard library). The
    child keeps our current folder (relative settings and .env mean the same there); -P keeps
    that folder off its sys.path, so a checkout we stand in cannot shadow what is installed."""
    if PACKAGES_ROOT in {Path(folder).resolve() for folder in site.getsitepackages()}:
        return dict(env)
    path = [str(PACKAGES_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


def emit(result: dict[str, Any]) -> None:
    """A section's result, on stdout for the parent process."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


@contextmanager
def quiet_logs() -> Iterator[None]:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    yield


# ---- measuring -------------------------------------------------------------------------------


def proc_status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak) in MB; 0 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def catalog_photos(data: Path) -> list[Path]:
    photos = sorted((data / "catalog").glob("*.jpg"))
    if not photos:
        raise FileNotFoundError(f"no catalogue photos in {data / 'catalog'}")
    return photos


def scratch_settings(root: Path, args: dict[str, Any]) -> Settings:
    """Settings of a scratch catalogue under `root` (SQLite, no .env read), with the model
    from args' models_dir/weights/seed."""
    from lookalike.settings import Settings

    root.mkdir(parents=True, exist_ok=True)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{root / 'lookalike.db'}",
        media_dir=root / "media",
        models_dir=Path(args["models_dir"]),
        model_weights=str(args["weights"]),
        model_seed=int(args["seed"]),
    )


def open_scratch_engine(
    root: Path, args: dict[str, Any], featurizer: Callable[[str], Featurizer] | None = None
) -> SearchEngine:
    """The real engine over a scratch catalogue under `root`, with the model from args'
    models_dir/weights/seed unless `featurizer(backbone)` is given."""
    from lookalike.composition import open_engine

    return open_engine(scratch_settings(root, args), featurizer=featurizer)


def exact_top_k(
    unit: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None
) -> list[list[int]]:
    """Row numbers of the k highest dot products of each (q, dim) query with the (n, dim) unit
    rows (restricted to `mask`, an (n,) bool, if given), best first; in blocks, so a million
    rows need no (q, n) matrix larger than (64, 262144)."""
    rows = np.arange(unit.shape[0]) if mask is None else np.flatnonzero(mask)
    top: list[list[int]] = []
    for start in range(0, len(queries), 64):
        block = queries[start : start + 64]
        scores = np.empty((len(block), rows.size), dtype=np.float32)
        for r0 in range(0, rows.size, 262_144):
            part = rows[r0 : r0 + 262_144]
            scores[:, r0 : r0 + part.size] = block @ unit[part].T
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for i, cand in enumerate(best):
            order = cand[np.argsort(-scores[i, cand], kind="stable")]
            top.append(rows[order].tolist())
    return top


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    """The share of the true neighbours found, over the queries answered."""
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=False))
    total = sum(len(t) for t in truth[: len(found)])
    return hits / total if total else 1.0


# ---- the table -------------------------------------------------------------------------------


def row(section: str, measure: str, value: str, target: str = "", ok: bool | None = None) -> Row:
    verdict = "" if ok is None else ("ok" if ok else "MISSED")
    return dict(zip(TABLE_HEADERS, (section, measure, value, target, verdict), strict=True))


def lookup(tree: Any, *path: str | int) -> Any:
    """tree[path[0]][path[1]]..., or None where a key is missing (a section that failed)."""
    for key in path:
        try:
            tree = tree[key]
        except (KeyError, IndexError, TypeError):
            return None
    return tree


def format_table(rows: list[Row]) -> str:
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) if rows else len(h) for h in TABLE_HEADERS}
    widths["value"] = min(widths["value"], 150)
    lines = ["  ".join(h.upper().ljust(widths[h]) for h in TABLE_HEADERS).rstrip()]
    lines.append("  ".join("-" * widths[h] for h in TABLE_HEADERS))
    for r in rows:
        lines.append("  ".join(r[h].ljust(widths[h]) for h in TABLE_HEADERS).rstrip())
    return "\n".join(lines)
