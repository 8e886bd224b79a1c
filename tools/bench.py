"""`lookalike bench`: every performance comparison of issue #5 in one run, as a table and JSON.

Each section runs in its own Python process (`python -m search.bench SECTION ARGS_JSON`), so
runtimes do not share thread pools or memory and each peak resident memory is its own:

- machine      cores, CPU, numpy float32 GEMM peak (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset in
               that process only), the featurisation limit derived from it
- runtime      one process per runtime: the seed's loop (decode, then model.predict on a batch
               of one, np.append), Keras tf.function, XLA, thread and oneDNN settings, OpenVINO,
               ONNX Runtime; images/s on preprocessed batches, load time, peak memory
- pipeline     the production path: featurise_files (decoding included) and `catalog import`
               of ../shared/footwear/catalog into a fresh database; one customer search from
               photo bytes to 8 product records; 50 customers at once through
               bot.inference.InferenceWorker; a long stream with a stub model (bounded memory)
- startup      the bot's start as bot/app.py's post_init does it (service, model from
               MODELS_DIR, warm-up, orphan sweep, inference worker): seconds to ready, memory
- index        VectorIndex (exact below the ANN threshold, faiss IVF + exact re-ranking above)
               against the seed's re-fitted NearestNeighbors, at 300 real reference vectors and
               10k/100k/1M synthetic ones calibrated on them (search.bench_data); recall@8
               against exact cosine, memory
- pgvector     opt-in (`--pgvector`, never in --quick): the k-nearest query inside an embedded
               PostgreSQL (search.bench_pg): COPY load, HNSW build, latency and recall of
               exact, HNSW and filtered queries against VectorIndex on the same vectors

Nothing here is a timed test: the figures depend on the machine and on what else runs on it
(the load average before and after is recorded). tests/test_bench.py runs the smoke mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "footwear"
RESULT_PREFIX = "BENCH-RESULT "
# Multiply-adds of VGG16's 13 convolutions on one 224x224 image (computed by conv_macs()).
VGG16_CONV_GMAC = 15.35
ISSUE_GFLOP_PER_IMAGE = 15.4  # the issue's "limit" divides the GEMM peak by this


def conv_macs() -> float:
    """VGG16's convolution multiply-adds per 224x224 image, from the layer shapes."""
    layers = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128)]
    layers += [(56, 128, 256), (56, 256, 256), (56, 256, 256)]
    layers += [(28, 256, 512), (28, 512, 512), (28, 512, 512)]
    layers += [(14, 512, 512)] * 3
    return float(sum(side * side * cin * cout * 9 for side, cin, cout in layers))


@dataclass(frozen=True)
class Mode:
    name: str
    seed_images: int  # images through the seed's one-at-a-time loop
    runtime_images: int  # images per runtime variant (batched)
    variants: tuple[str, ...]
    featurise_images: int  # images through featurise_files / catalog import (0: all)
    searches: int
    customers: int
    load_rounds: int
    stream_images: int  # images through the stub-model stream (memory check)
    index_sizes: tuple[int, ...]
    index_queries: int
    seed_queries: dict[int, int]  # NearestNeighbors re-fit queries per size


MODES = {
    "smoke": Mode(
        name="smoke",
        seed_images=2,
        runtime_images=4,
        variants=("seed", "openvino b4"),
        featurise_images=8,
        searches=3,
        customers=6,
        load_rounds=1,
        stream_images=64,
        index_sizes=(300, 10_000),
        index_queries=50,
        seed_queries={300: 5, 10_000: 2},
    ),
    "quick": Mode(
        name="quick",
        seed_images=6,
        runtime_images=32,
        variants=(
            "seed",
            "keras b32",
            "openvino b1",
            "openvino b32",
            "onnxruntime b8",
        ),
        featurise_images=64,
        searches=15,
        customers=50,
        load_rounds=1,
        stream_images=2_000,
        index_sizes=(300, 10_000, 100_000),
        index_queries=200,
        seed_queries={300: 20, 10_000: 10, 100_000: 3},
    ),
    "full": Mode(
        name="full",
        seed_images=24,
        runtime_images=96,
        variants=(
            "seed",
            "keras b1",
            "keras b8",
            "keras b32",
            "keras b32 intra2-inter1",
            "keras b32 onednn-off",
            "keras-xla b32",
            "openvino b1",
            "openvino b8",
            "openvino b32",
            "onnxruntime b8",
            "onnxruntime b32",
            "openvino-bf16 b32",
        ),
        featurise_images=0,
        searches=50,
        customers=50,
        load_rounds=3,
        stream_images=30_000,
        index_sizes=(300, 10_000, 100_000, 1_000_000),
        index_queries=500,
        seed_queries={300: 50, 10_000: 20, 100_000: 5, 1_000_000: 3},
    ),
}


# ---- small helpers ---------------------------------------------------------------------------


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


def emit(result: dict[str, Any]) -> None:
    """A section's result, on stdout for the parent process."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_section(
    name: str, args: dict[str, Any], *, env: dict[str, str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run `python -m search.bench NAME ARGS` and return its result (or an error record)."""
    started = time.perf_counter()
    full_env = dict(env if env is not None else os.environ)
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [full_env.get("PYTHONPATH")])]
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "search.bench", name, json.dumps(args)],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=REPO_ROOT,
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


@contextmanager
def quiet_logs() -> Iterator[None]:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    yield


def catalog_photos(data: Path) -> list[Path]:
    photos = sorted((data / "catalog").glob("*.jpg"))
    if not photos:
        raise FileNotFoundError(f"no catalogue photos in {data / 'catalog'}")
    return photos


# ---- section: machine ----------------------------------------------------------------------


def section_machine(args: dict[str, Any]) -> dict[str, Any]:
    """Runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment."""
    from threadpoolctl import threadpool_info

    blas = [
        {k: info.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    n = int(args.get("n", 4096))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up: threads started, pages touched
    best = float("inf")
    for _ in range(int(args.get("repeats", 5))):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in text]
        flags = " ".join(found)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "cpu_flags": flags,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "gemm_n": n,
        "gemm_gflops": round(2 * n**3 / best / 1e9, 1),
    }


# ---- section: runtime ----------------------------------------------------------------------


def _parse_variant(variant: str) -> tuple[str, int, str]:
    """ "openvino b32 intra2-inter1" -> ("openvino", 32, "intra2-inter1")."""
    parts = variant.split()
    runtime = parts[0]
    batch = int(parts[1][1:]) if len(parts) > 1 else 1
    return runtime, batch, " ".join(parts[2:])


def variant_env(variant: str) -> dict[str, str]:
    """The environment a runtime variant runs in (thread and oneDNN settings)."""
    env = dict(os.environ)
    _, _, extra = _parse_variant(variant)
    if "intra2-inter1" in extra:
        env["TF_NUM_INTRAOP_THREADS"] = "2"
        env["TF_NUM_INTEROP_THREADS"] = "1"
    if "onednn-off" in extra:
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    return env


def section_runtime(args: dict[str, Any]) -> dict[str, Any]:
    """One runtime variant: load, warm up, featurise preprocessed batches (or the seed loop)."""
    from search.extractor import VGG16Extractor
    from search.preprocess import preprocess_image

    variant = str(args["variant"])
    runtime, batch, _ = _parse_variant(variant)
    try:
        if runtime == "onnxruntime":
            import onnxruntime  # noqa: F401
            import tf2onnx  # noqa: F401
        elif runtime.startswith("openvino"):
            import openvino  # noqa: F401
    except ImportError as exc:
        return {"variant": variant, "skipped": f"not installed: {exc.name}"}
    photos = catalog_photos(Path(args["data"]))
    started = time.perf_counter()
    extractor = VGG16Extractor.load(
        models_dir=Path(args["models_dir"]),
        weights=str(args["weights"]),
        seed=int(args["seed"]),
        runtime="keras" if runtime == "seed" else runtime,
    )
    load_s = time.perf_counter() - started
    result: dict[str, Any] = {"variant": variant, "runtime": extractor.runtime, "load_s": load_s}
    count = int(args["images"])
    probe = np.stack([preprocess_image(p.read_bytes()) for p in photos[:8]])
    if runtime == "seed":
        # The seed: decode one photo, model.predict on a batch of one, np.append to the store.
        model = extractor.keras_model
        model.predict(probe[:1], verbose=0)  # warm-up, as the seed's first image would be
        store = np.zeros((0, 512), dtype=np.float32)
        started = time.perf_counter()
        for path in photos[:count]:
            x = preprocess_image(path.read_bytes())
            store = np.append(store, model.predict(x[np.newaxis], verbose=0), axis=0)
        elapsed = time.perf_counter() - started
        result.update(images=count, seconds=elapsed, images_per_s=count / elapsed)
        result["vectors"] = extractor.embed(probe).tolist()
    else:
        pixels = np.stack([preprocess_image(p.read_bytes()) for p in photos[: max(batch, 1)]])
        warm = time.perf_counter()
        extractor.embed(pixels[:batch])  # first call: tracing / compilation
        result["first_call_s"] = time.perf_counter() - warm
        rounds = max(1, count // batch)
        timings = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            extractor.embed(pixels[:batch])
            timings.append(time.perf_counter() - t0)
        result.update(
            images=rounds * batch,
            seconds=sum(timings),
            images_per_s=rounds * batch / sum(timings),
            batch_ms_median=1000 * statistics.median(timings),
        )
        result["vectors"] = extractor.embed(probe).tolist()
    result["peak_rss_mb"] = proc_status_mb("VmHWM")
    if args.get("agreement"):
        result["agreement_vs_float32"] = _agreement(extractor, photos, args)
    return result


def _agreement(extractor: Any, photos: list[Path], args: dict[str, Any]) -> dict[str, float]:
    """Every catalogue photo featurised by `extractor` and by float32 OpenVINO (= Keras to
    ~1e-7): cosine between the two vectors, and how many of each photo's 8 nearest other
    photos stay the same."""
    from search.extractor import VGG16Extractor
    from search.preprocess import preprocess_image

    reference = VGG16Extractor.load(
        models_dir=Path(args["models_dir"]),
        weights=str(args["weights"]),
        seed=int(args["seed"]),
        runtime="openvino",
    )
    ours, theirs = [], []
    for start in range(0, len(photos), 32):
        batch = np.stack([preprocess_image(p.read_bytes()) for p in photos[start : start + 32]])
        ours.append(extractor.embed(batch))
        theirs.append(reference.embed(batch))
    a, b = np.concatenate(ours), np.concatenate(theirs)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    same = 0
    for sims_a, sims_b, i in zip(a @ a.T, b @ b.T, range(len(a)), strict=True):
        sims_a[i] = sims_b[i] = -np.inf
        same += len(set(np.argsort(-sims_a)[:8]) & set(np.argsort(-sims_b)[:8]))
    return {
        "photos": len(a),
        "min_cosine": float((a * b).sum(axis=1).min()),
        "top8_overlap": same / (8 * len(a)),
    }


# ---- section: pipeline ---------------------------------------------------------------------


def _open_bench_service(
    root: Path, args: dict[str, Any], featurizer: Any = None
) -> tuple[Any, Any]:
    from lookalike.app import open_service

    settings = _bench_settings(root, args)
    return open_service(settings, featurizer=featurizer), settings


def _bench_settings(root: Path, args: dict[str, Any]) -> Any:
    """Settings for a scratch catalogue under `root` (no .env read)."""
    from lookalike.settings import Settings

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{root / 'lookalike.db'}",
        media_dir=root / "media",
        models_dir=Path(args["models_dir"]),
        model_weights=str(args["weights"]),
        model_seed=int(args["seed"]),
    )


class _StubFeaturizer:
    """Zeros instead of VGG16: the stream check measures the pipeline's own memory."""

    model_name = "vgg16_avgpool"
    dim = 512

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return np.ones((batch.shape[0], 512), dtype=np.float32)


def section_pipeline(args: dict[str, Any]) -> dict[str, Any]:
    from bot.inference import InferenceWorker
    from search.catalog_import import featurise_files, import_catalog

    data = Path(args["data"])
    photos = catalog_photos(data)
    limit = int(args["featurise_images"]) or len(photos)
    root = Path(args["workdir"])
    result: dict[str, Any] = {}

    # 1. Featurisation, decoding included: files -> vectors (nothing stored).
    scratch = root / "featurise"
    service, settings = _open_bench_service(scratch, args)
    service.warm_up()
    result["runtime"] = getattr(service.featurizer, "runtime", "?")
    batch_size = int(settings.inference_batch_size)
    # One untimed batch: each batch size's first call may compile.
    list(featurise_files(service, photos[:batch_size], batch_size=batch_size))
    started = time.perf_counter()
    done = sum(1 for _ in featurise_files(service, photos[:limit], batch_size=batch_size))
    elapsed = time.perf_counter() - started
    result["featurise"] = {
        "images": done,
        "seconds": elapsed,
        "images_per_s": done / elapsed,
        "batch_size": batch_size,
    }
    service.close()

    # 2. `catalog import` into a fresh database (files, rows, index), decoding included.
    folder = data / "catalog"
    if limit < len(photos):
        folder = root / "subset"
        folder.mkdir(parents=True, exist_ok=True)
        for path in photos[:limit]:
            (folder / path.name).write_bytes(path.read_bytes())
    model = service.featurizer  # the same loaded model for the rest of the section
    service, settings = _open_bench_service(
        root / "catalogue", args, featurizer=lambda _backbone: model
    )
    service.warm_up()
    rss_before = proc_status_mb("VmRSS")
    summary = import_catalog(service, folder, batch_size=batch_size)
    result["import"] = {
        "images": summary.featurised,
        "added": len(summary.added),
        "skipped": len(summary.skipped),
        "seconds": summary.seconds,
        "images_per_s": summary.featurised / summary.seconds if summary.seconds else 0.0,
        "rss_growth_mb": proc_status_mb("VmRSS") - rss_before,
    }

    # 3. One customer search: photo bytes -> 8 product records (logged, as in production).
    queries = sorted((data / "queries").glob("*.jpg")) + photos[::7]
    payloads = [q.read_bytes() for q in queries]
    service.search_image(payloads[0])  # warm-up
    latencies = []
    for i in range(int(args["searches"])):
        started = time.perf_counter()
        found = service.search_image(payloads[i % len(payloads)], source="bench")
        latencies.append(1000 * (time.perf_counter() - started))
        assert len(found.items) == min(8, len(summary.added))
    result["search"] = {
        "searches": len(latencies),
        "median_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 95),
        "products": len(summary.added),
    }

    # 4. Customers arriving together, through the bot's inference worker.
    customers = int(args["customers"])
    rounds = []
    for _ in range(int(args["load_rounds"])):
        rounds.append(
            asyncio.run(
                _customers_at_once(
                    service, InferenceWorker, payloads, customers, settings.inference_batch_size
                )
            )
        )
    best = max(rounds, key=lambda r: float(r["images_per_s"]))
    best["rounds"] = [round(float(r["images_per_s"]), 2) for r in rounds]
    best["reference_images_per_s"] = result["featurise"]["images_per_s"]
    result["load"] = best
    service.close()

    # 5. A long stream with a stub model: memory stays bounded whatever the length.
    stream = int(args["stream_images"])
    stub_service, _ = _open_bench_service(
        root / "stream", args, featurizer=lambda _backbone: _StubFeaturizer()
    )
    cycle = (photos[i % len(photos)] for i in range(stream))
    marks: dict[int, float] = {}
    started = time.perf_counter()
    for count, _ in enumerate(featurise_files(stub_service, cycle, batch_size=batch_size), 1):
        if count in (min(1000, stream // 4), stream):
            marks[count] = proc_status_mb("VmRSS")
    elapsed = time.perf_counter() - started
    first, last = min(marks), max(marks)
    result["stream"] = {
        "images": stream,
        "seconds": elapsed,
        "rss_at_first_mark_mb": marks[first],
        "rss_at_end_mb": marks[last],
        "first_mark": first,
        "growth_mb": marks[last] - marks[first],
    }
    stub_service.close()
    result["peak_rss_mb"] = proc_status_mb("VmHWM")
    return result


async def _customers_at_once(
    service: Any, worker_class: Any, payloads: list[bytes], customers: int, max_batch: int
) -> dict[str, Any]:
    """`customers` searches arriving at once, each as the bot's customer handler runs it:
    prepare in a thread, embed through the shared InferenceWorker, search in a thread."""
    worker = worker_class(service, max_batch=max_batch)
    await worker.start()

    async def one(data: bytes) -> float:
        started = time.perf_counter()
        prepared = await asyncio.to_thread(service.prepare, data)
        vector = await worker.embed(prepared)
        await asyncio.to_thread(service.search_vector, vector, user_ref="bench", source="bench")
        return time.perf_counter() - started

    try:
        started = time.perf_counter()
        times = await asyncio.gather(*(one(payloads[i % len(payloads)]) for i in range(customers)))
        wall = time.perf_counter() - started
    finally:
        await worker.stop()
    return {
        "customers": customers,
        "seconds": wall,
        "images_per_s": customers / wall,
        "p50_s": statistics.median(times),
        "p95_s": percentile(times, 95),
        "batches": worker.batches_run,
    }


# ---- section: startup ----------------------------------------------------------------------


def section_startup(args: dict[str, Any]) -> dict[str, Any]:
    """The bot's start without Telegram: what bot/app.py's build_application + post_init do."""
    t0 = float(args["t0"])
    imported = time.time()
    from bot.inference import InferenceWorker
    from lookalike.app import open_service

    root = Path(args["catalogue"])
    settings = _bench_settings(root, args)
    modules_s = time.time() - imported

    async def start() -> dict[str, Any]:
        opened = time.time()
        service = open_service(settings)  # database, migrations, index from the database
        open_s = time.time() - opened
        warm = time.time()
        await asyncio.to_thread(service.warm_up)  # model from MODELS_DIR, one inference
        warm_s = time.time() - warm
        await asyncio.to_thread(service.sweep_orphan_files)
        worker = InferenceWorker(service, max_batch=settings.inference_batch_size)
        await worker.start()
        ready = time.time()
        rss_ready = proc_status_mb("VmRSS")
        # Then a burst of 8 customers, to see the memory of a working bot.
        data = next((root / "media").rglob("*.jpg")).read_bytes()

        async def one() -> None:
            prepared = await asyncio.to_thread(service.prepare, data)
            vector = await worker.embed(prepared)
            await asyncio.to_thread(service.search_vector, vector, user_ref="bench")

        await asyncio.gather(*(one() for _ in range(8)))
        await worker.stop()
        return {
            "ready_s": ready - t0,
            "python_and_imports_s": imported - t0 + modules_s,
            "open_service_s": open_s,
            "model_load_and_warm_up_s": warm_s,
            "products": service.index.product_count(),
            "runtime": getattr(service.featurizer, "runtime", "?"),
            "rss_ready_mb": rss_ready,
            "rss_after_searches_mb": proc_status_mb("VmRSS"),
            "peak_rss_mb": proc_status_mb("VmHWM"),
        }

    return asyncio.run(start())


# ---- section: index ------------------------------------------------------------------------


def section_index(args: dict[str, Any]) -> dict[str, Any]:
    from sklearn.neighbors import NearestNeighbors

    from search.bench_data import SyntheticCatalog, calibrate, describe, load_reference
    from search.index import ProductFacts, VectorIndex

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
    k = 8
    categories = 6
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
            gen = SyntheticCatalog(
                reference,
                families=max(1, size // 10),
                sigma_centre=sigma_centre,
                sigma_item=sigma_item,
                seed=size,
            )
            vectors, _ = gen.draw(size)
            queries, _ = gen.draw(n_queries)
            source = "synthetic, calibrated"
        category = np.arange(size) % categories
        entry: dict[str, Any] = {"size": size, "source": source, "queries": n_queries}

        # The seed: NearestNeighbors re-fitted on every search.
        seed_times = []
        for q in queries[: int(args["seed_queries"].get(str(size), 3))]:
            started = time.perf_counter()
            nn = NearestNeighbors(n_neighbors=k, metric="cosine")
            nn.fit(vectors)
            nn.kneighbors(q[np.newaxis])
            seed_times.append(time.perf_counter() - started)
            del nn
        entry["seed_ms_median"] = 1000 * statistics.median(seed_times)

        # Exact ground truth (cosine), in blocks of rows.
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
        q_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        truth = _exact_top_k(unit, q_unit, k, None)
        filtered_truth = _exact_top_k(unit, q_unit[:100], k, category == 0)
        del unit

        facts = [
            ProductFacts(product_id=i, category=f"c{category[i]}", price=10.0, active=True)
            for i in range(size)
        ]
        ids = np.arange(size, dtype=np.int64)
        for label, threshold in (("exact", None), ("default", "default")):
            before = proc_status_mb("VmRSS")
            started = time.perf_counter()
            index = VectorIndex.build(
                facts=facts,
                image_ids=ids,
                product_ids=ids,
                vectors=vectors,
                **({} if threshold == "default" else {"ann_min_rows": None}),
            )
            build_s = time.perf_counter() - started
            ann_wait = time.perf_counter()
            uses_ann = index.wait_for_ann(timeout=1800)
            ann_s = time.perf_counter() - ann_wait
            rss = proc_status_mb("VmRSS") - before
            times, found = [], []
            # The exact scan at a million rows takes ~0.1 s a query: fewer queries there.
            timed = queries if label == "default" or size < 1_000_000 else queries[:100]
            for q in timed:
                started = time.perf_counter()
                hits = index.search(q, k=k)
                times.append(time.perf_counter() - started)
                found.append([h.product_id for h in hits])
            filtered = [
                [h.product_id for h in index.search(q, k=k, category="c0")] for q in queries[:100]
            ]
            info = index.ann_info()
            entry[label] = {
                "uses_ann": uses_ann,
                "build_s": build_s,
                "ann_build_s": ann_s if uses_ann else 0.0,
                "p50_ms": 1000 * statistics.median(times),
                "p99_ms": 1000 * percentile(times, 99),
                "recall_at_8": _recall(found, truth[: len(found)]),
                "timed_queries": len(timed),
                "recall_at_8_category_filter": _recall(filtered, filtered_truth),
                "vector_bytes": int(index._vectors.nbytes),
                "ann_bytes": int(info["bytes"]),
                "nlist": int(info["nlist"]),
                "nprobe": int(info["nprobe"]),
                "rss_growth_mb": rss,
            }
            del index
        entry["speedup_vs_seed"] = entry["seed_ms_median"] / entry["default"]["p50_ms"]
        result["sizes"].append(entry)
        del vectors, queries, gen
    result["peak_rss_mb"] = proc_status_mb("VmHWM")
    return result


def _exact_top_k(
    unit: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None
) -> list[list[int]]:
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


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=False))
    total = sum(len(t) for t in truth[: len(found)])
    return hits / total if total else 1.0


def _section_pgvector(args: dict[str, Any]) -> dict[str, Any]:
    from search.bench_pg import section_pgvector  # psycopg and PostgreSQL only when asked

    return section_pgvector(args)


# ---- the whole run -------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "machine": section_machine,
    "runtime": section_runtime,
    "pipeline": section_pipeline,
    "startup": section_startup,
    "index": section_index,
    "pgvector": _section_pgvector,
}


@dataclass(frozen=True)
class Options:
    mode: str  # "smoke", "quick" or "full"
    data: Path
    models_dir: Path
    weights: str
    seed: int
    workdir: Path
    pg_sizes: tuple[int, ...] = ()  # sizes for the opt-in pgvector section; () skips it


def run_benchmarks(
    options: Options, progress: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Every section in turn; the results as one JSON-ready dict with a "table"."""
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

    runtimes = []
    for variant in mode.variants:
        progress(f"featurisation runtime: {variant}")
        images = mode.seed_images if variant == "seed" else mode.runtime_images
        agreement = mode.name == "full" and variant.startswith("openvino-bf16")
        measured = run_section(
            "runtime",
            {**common, "variant": variant, "images": images, "agreement": agreement},
            env=variant_env(variant),
        )
        measured.setdefault("variant", variant)
        runtimes.append(measured)
    _compare_vectors(runtimes)
    results["runtimes"] = runtimes

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
    )

    progress("bot start: service, model from MODELS_DIR, warm-up, inference worker")
    catalogue = str(options.workdir / "pipeline" / "catalogue")
    results["startup"] = run_section(
        "startup", {**common, "catalogue": catalogue, "t0": time.time()}
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
        from search.bench_pg import section_args

        progress(f"pgvector: {', '.join(f'{s:,}' for s in options.pg_sizes)} vectors")
        results["pgvector"] = run_section(
            "pgvector",
            section_args(sizes=options.pg_sizes, data=options.data, workdir=options.workdir),
            timeout=6 * 3600,
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


def _compare_vectors(runtimes: list[dict[str, Any]]) -> None:
    """How far each runtime's vectors are from Keras' (float32) on the same 8 photos."""
    reference = next(
        (
            np.asarray(r["vectors"])
            for r in runtimes
            if r.get("runtime") == "keras" and "vectors" in r
        ),
        None,
    )
    for r in runtimes:
        vectors = r.pop("vectors", None)
        if reference is None or vectors is None:
            continue
        v = np.asarray(vectors)
        cos = (v * reference).sum(1) / (
            np.linalg.norm(v, axis=1) * np.linalg.norm(reference, axis=1) + 1e-30
        )
        r["max_rel_diff_vs_keras"] = float(np.abs(v - reference).max() / np.abs(reference).max())
        r["min_cosine_vs_keras"] = float(cos.min())


def _get(tree: Any, *path: str | int) -> Any:
    for key in path:
        try:
            tree = tree[key]
        except (KeyError, IndexError, TypeError):
            return None
    return tree


def build_table(results: dict[str, Any]) -> list[dict[str, str]]:
    """Rows of (section, measure, value, target, verdict) from the results."""
    rows: list[dict[str, str]] = []

    def row(
        section: str, measure: str, value: str, target: str = "", ok: bool | None = None
    ) -> None:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        rows.append(
            {
                "section": section,
                "measure": measure,
                "value": value,
                "target": target,
                "verdict": verdict,
            }
        )

    machine = results.get("machine", {})
    gemm = _get(machine, "gemm_gflops")
    limit = gemm / ISSUE_GFLOP_PER_IMAGE if gemm else None
    fma_bound = gemm / (2 * VGG16_CONV_GMAC) if gemm else None
    blas = _get(machine, "blas", 0) or {}
    row("machine", "cores (usable)", f"{machine.get('cores')} ({machine.get('usable_cores')})")
    row("machine", "CPU", f"{machine.get('cpu', '?')} [{machine.get('cpu_flags', '')}]")
    row(
        "machine",
        "numpy float32 GEMM peak",
        f"{gemm} GFLOP/s ({blas.get('internal_api')} {blas.get('architecture')}, "
        f"{blas.get('num_threads')} threads)",
    )
    if limit and fma_bound:
        row("machine", "limit as the issue defines it (GEMM / 15.4)", f"{limit:.1f} images/s")
        row(
            "machine",
            "the same counting 2 FLOP per multiply-add, as GEMM does (GEMM / 30.7)",
            f"{fma_bound:.1f} images/s",
        )

    runtimes = results.get("runtimes", [])
    seed: dict[str, Any] = next((r for r in runtimes if r.get("variant") == "seed"), {})
    seed_ips = seed.get("images_per_s")
    for r in runtimes:
        if "error" in r or "skipped" in r:
            reason = r.get("error") or r.get("skipped") or ""
            row("featurise", str(r.get("variant")), f"not measured: {reason[:150]}")
            continue
        ips = r.get("images_per_s", 0.0)
        name = (
            "seed loop (decode + predict(batch of 1) + np.append)"
            if r["variant"] == "seed"
            else (f"{r['variant']} (preprocessed batches)")
        )
        extra = [f"{ips:.2f} images/s"]
        if seed_ips and r["variant"] != "seed":
            extra.append(f"x{ips / seed_ips:.1f} seed")
        if limit:
            extra.append(f"{100 * ips / limit:.0f}% of limit")
        extra.append(f"peak {r.get('peak_rss_mb', 0):.0f} MB")
        if "min_cosine_vs_keras" in r and r["variant"] != "seed":
            extra.append(f"max rel diff vs Keras {r['max_rel_diff_vs_keras']:.1e}")
        agree = r.get("agreement_vs_float32")
        if agree:
            extra.append(
                f"vs float32 on {agree['photos']} photos: cosine >= {agree['min_cosine']:.6f}, "
                f"top-8 neighbours {100 * agree['top8_overlap']:.1f}% the same"
            )
        row("featurise", name, ", ".join(extra))

    pipe = results.get("pipeline", {})
    if "error" in pipe:
        row("pipeline", "pipeline", f"error: {pipe['error'][:200]}")
    feat = _get(pipe, "featurise", "images_per_s")
    if feat:
        ok = bool(limit and seed_ips and feat >= 0.7 * limit and feat >= 3 * seed_ips)
        row(
            "featurise",
            f"production pipeline, JPEG decoding included ({pipe.get('runtime')}, "
            f"batch {_get(pipe, 'featurise', 'batch_size')}, "
            f"{_get(pipe, 'featurise', 'images')} images)",
            f"{feat:.2f} images/s"
            + (f", {100 * feat / limit:.0f}% of limit" if limit else "")
            + (f", x{feat / seed_ips:.1f} seed" if seed_ips else ""),
            ">= 70% of limit and >= x3 seed",
            ok,
        )
    imp = _get(pipe, "import", "images_per_s")
    if imp:
        row(
            "featurise",
            f"`catalog import` end to end ({_get(pipe, 'import', 'images')} photos, "
            "fresh database)",
            f"{imp:.2f} images/s" + (f", x{imp / seed_ips:.1f} seed" if seed_ips else ""),
        )
    stream = _get(pipe, "stream")
    if stream:
        row(
            "featurise",
            f"memory over a {stream['images']:,}-image stream (stub model)",
            f"RSS {stream['rss_at_first_mark_mb']:.0f} MB after {stream['first_mark']:,}, "
            f"{stream['rss_at_end_mb']:.0f} MB at the end ({stream['growth_mb']:+.0f} MB)",
            "bounded",
            abs(stream["growth_mb"]) < 100,
        )
    search = _get(pipe, "search")
    if search:
        row(
            "search",
            f"one customer search, photo bytes -> 8 records ({search['products']} products)",
            f"median {search['median_ms']:.0f} ms, p95 {search['p95_ms']:.0f} ms",
            "median <= 120 ms",
            search["median_ms"] <= 120,
        )
    load = _get(pipe, "load")
    if load:
        ratio = load["images_per_s"] / load["reference_images_per_s"]
        row(
            "load",
            f"{load['customers']} customers at once via InferenceWorker "
            f"({load['batches']} batches)",
            f"{load['images_per_s']:.2f} images/s = {100 * ratio:.0f}% of batched featurisation; "
            f"per customer p50 {load['p50_s']:.1f} s, p95 {load['p95_s']:.1f} s",
            ">= 80% of batched",
            ratio >= 0.8,
        )

    index = results.get("index", {})
    if "error" in index:
        row("index", "index", f"error: {index['error'][:200]}")
    for entry in index.get("sizes", []):
        size = entry["size"]
        default, exact = entry["default"], entry["exact"]
        kind = "IVF-SQ8 + exact re-rank" if default["uses_ann"] else "exact"
        memory = (default["vector_bytes"] + default["ann_bytes"]) / 2**20
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
            and (size < 1_000_000 or (default["p99_ms"] < 50 and default["recall_at_8"] >= 0.99)),
        )

    if "pgvector" in results:
        from search.bench_pg import table_rows

        for measure, value in table_rows(results["pgvector"]):
            row("pgvector", measure, value)

    for key in ("startup", "startup_keras"):
        _startup_rows(row, results.get(key, {}))
    meta = results.get("meta", {})
    if meta:
        row(
            "run",
            f"mode {meta['mode']}, {meta['seconds']:.0f} s",
            f"load average before {meta['load_average_before'][0]}, after "
            f"{meta['load_average_after'][0]} (other processes share the cores)",
        )
    return rows


def _startup_rows(row: Callable[..., None], start: dict[str, Any]) -> None:
    if "error" in start:
        row("bot", "startup", f"error: {start['error'][:200]}")
        return
    if not start:
        return
    row(
        "bot",
        f"start to ready, model cached ({start['products']} products, {start['runtime']})",
        f"{start['ready_s']:.1f} s (imports {start['python_and_imports_s']:.1f} s, "
        f"database + index {start['open_service_s']:.1f} s, model + warm-up "
        f"{start['model_load_and_warm_up_s']:.1f} s)",
    )
    row(
        "bot",
        f"resident memory ({start['runtime']})",
        f"{start['rss_ready_mb']:.0f} MB ready, {start['rss_after_searches_mb']:.0f} MB after "
        f"8 searches (peak {start['peak_rss_mb']:.0f} MB)",
    )


def format_table(rows: list[dict[str, str]]) -> str:
    headers = ["section", "measure", "value", "target", "verdict"]
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) if rows else len(h) for h in headers}
    widths["value"] = min(widths["value"], 150)
    lines = ["  ".join(h.upper().ljust(widths[h]) for h in headers).rstrip()]
    lines.append("  ".join("-" * widths[h] for h in headers))
    for r in rows:
        lines.append("  ".join(r[h].ljust(widths[h]) for h in headers).rstrip())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m search.bench SECTION ARGS_JSON`: one section, its result on stdout."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m search.bench")
    parser.add_argument("section", choices=sorted(SECTIONS))
    parser.add_argument("args", help="the section's arguments as JSON")
    ns = parser.parse_args(argv)
    with quiet_logs():
        emit(SECTIONS[ns.section](json.loads(ns.args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
