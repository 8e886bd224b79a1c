"""The `machine` and `runtime` sections of `lookalike bench`: how fast this machine can run
VGG16 at all, and how fast each featurisation runtime gets.

- machine: cores, CPU, numpy float32 GEMM peak (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset in
  that process only) and the featurisation limit derived from it;
- runtime: one process per variant: the seed's loop (decode, then model.predict on a batch of
  one, np.append), Keras tf.function, XLA, thread and oneDNN settings, OpenVINO, ONNX Runtime;
  images/s on preprocessed batches, load time, peak memory, and how far each variant's vectors
  are from Keras' on the same 8 photos.

These drive the model directly (search.extractor): they compare runtimes, not the engine.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from tools.bench_common import Row, catalog_photos, lookup, proc_status_mb, row

__all__ = [
    "ISSUE_GFLOP_PER_IMAGE",
    "VGG16_CONV_GMAC",
    "compare_vectors",
    "conv_macs",
    "featurisation_limit",
    "machine_rows",
    "runtime_rows",
    "section_machine",
    "section_runtime",
    "seed_images_per_s",
    "variant_env",
]

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


# ---- section: machine ------------------------------------------------------------------------


def _cpu_description() -> tuple[str, str]:
    """(model name, the vector-instruction flags that matter here) from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", ""
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
        "",
    )
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in text]
    return cpu, " ".join(flags)


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
    cpu, flags = _cpu_description()
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


# ---- section: runtime ------------------------------------------------------------------------


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


def _load_extractor(args: dict[str, Any], runtime: str) -> Any:
    from search.extractor import VGG16Extractor

    return VGG16Extractor.load(
        models_dir=Path(args["models_dir"]),
        weights=str(args["weights"]),
        seed=int(args["seed"]),
        runtime=runtime,
    )


def section_runtime(args: dict[str, Any]) -> dict[str, Any]:
    """One runtime variant: load, warm up, featurise preprocessed batches (or the seed loop)."""
    from search.preprocess import preprocess_image

    variant = str(args["variant"])
    runtime, batch, _ = _parse_variant(variant)
    # Whether the runtime's packages are installed, without importing them here (only the
    # extractor imports TensorFlow and its converters).
    needed: tuple[str, ...] = {"onnxruntime": ("onnxruntime", "tf2onnx")}.get(runtime, ())
    if runtime.startswith("openvino"):
        needed = ("openvino",)
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        return {"variant": variant, "skipped": f"not installed: {missing[0]}"}
    photos = catalog_photos(Path(args["data"]))
    started = time.perf_counter()
    extractor = _load_extractor(args, "keras" if runtime == "seed" else runtime)
    load_s = time.perf_counter() - started
    result: dict[str, Any] = {"variant": variant, "runtime": extractor.runtime, "load_s": load_s}
    count = int(args["images"])
    probe = np.stack([preprocess_image(p.read_bytes()) for p in photos[:8]])  # (8, 224, 224, 3)
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
    result["vectors"] = extractor.embed(probe).tolist()  # (8, 512), for compare_vectors
    result["peak_rss_mb"] = proc_status_mb("VmHWM")
    if args.get("agreement"):
        result["agreement_vs_float32"] = _agreement(extractor, photos, args)
    return result


def _agreement(extractor: Any, photos: list[Path], args: dict[str, Any]) -> dict[str, float]:
    """Every catalogue photo featurised by `extractor` and by float32 OpenVINO (= Keras to
    ~1e-7): cosine between the two vectors, and how many of each photo's 8 nearest other
    photos stay the same."""
    from search.preprocess import preprocess_image

    reference = _load_extractor(args, "openvino")
    ours, theirs = [], []
    for start in range(0, len(photos), 32):
        batch = np.stack([preprocess_image(p.read_bytes()) for p in photos[start : start + 32]])
        ours.append(extractor.embed(batch))
        theirs.append(reference.embed(batch))
    a, b = np.concatenate(ours), np.concatenate(theirs)  # (n, 512) each
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


def compare_vectors(runtimes: list[dict[str, Any]]) -> None:
    """How far each runtime's vectors are from Keras' (float32) on the same 8 photos; the
    vectors themselves are dropped from the results."""
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


# ---- the table -------------------------------------------------------------------------------


def featurisation_limit(results: dict[str, Any]) -> float | None:
    """Images/s as the issue defines the limit (GEMM peak / 15.4 GFLOP), if measured."""
    gemm = lookup(results, "machine", "gemm_gflops")
    return float(gemm) / ISSUE_GFLOP_PER_IMAGE if gemm else None


def seed_images_per_s(results: dict[str, Any]) -> float | None:
    seed: dict[str, Any] = next(
        (r for r in results.get("runtimes", []) if r.get("variant") == "seed"), {}
    )
    value = seed.get("images_per_s")
    return float(value) if value else None


def machine_rows(results: dict[str, Any]) -> list[Row]:
    machine = results.get("machine", {})
    gemm = lookup(machine, "gemm_gflops")
    blas = lookup(machine, "blas", 0) or {}
    rows = [
        row("machine", "cores (usable)", f"{machine.get('cores')} ({machine.get('usable_cores')})"),
        row("machine", "CPU", f"{machine.get('cpu', '?')} [{machine.get('cpu_flags', '')}]"),
        row(
            "machine",
            "numpy float32 GEMM peak",
            f"{gemm} GFLOP/s ({blas.get('internal_api')} {blas.get('architecture')}, "
            f"{blas.get('num_threads')} threads)",
        ),
    ]
    limit = featurisation_limit(results)
    if gemm and limit:
        rows.append(
            row("machine", "limit as the issue defines it (GEMM / 15.4)", f"{limit:.1f} images/s")
        )
        rows.append(
            row(
                "machine",
                "the same counting 2 FLOP per multiply-add, as GEMM does (GEMM / 30.7)",
                f"{gemm / (2 * VGG16_CONV_GMAC):.1f} images/s",
            )
        )
    return rows


def runtime_rows(results: dict[str, Any]) -> list[Row]:
    limit, seed_ips = featurisation_limit(results), seed_images_per_s(results)
    rows = []
    for r in results.get("runtimes", []):
        if "error" in r or "skipped" in r:
            reason = r.get("error") or r.get("skipped") or ""
            rows.append(row("featurise", str(r.get("variant")), f"not measured: {reason[:150]}"))
            continue
        ips = r.get("images_per_s", 0.0)
        seed = r["variant"] == "seed"
        name = (
            "seed loop (decode + predict(batch of 1) + np.append)"
            if seed
            else f"{r['variant']} (preprocessed batches)"
        )
        extra = [f"{ips:.2f} images/s"]
        if seed_ips and not seed:
            extra.append(f"x{ips / seed_ips:.1f} seed")
        if limit:
            extra.append(f"{100 * ips / limit:.0f}% of limit")
        extra.append(f"peak {r.get('peak_rss_mb', 0):.0f} MB")
        if "min_cosine_vs_keras" in r and not seed:
            extra.append(f"max rel diff vs Keras {r['max_rel_diff_vs_keras']:.1e}")
        agree = r.get("agreement_vs_float32")
        if agree:
            extra.append(
                f"vs float32 on {agree['photos']} photos: cosine >= {agree['min_cosine']:.6f}, "
                f"top-8 neighbours {100 * agree['top8_overlap']:.1f}% the same"
            )
        rows.append(row("featurise", name, ", ".join(extra)))
    return rows
