"""The `machine` and `runtime` sections of `lookalike bench`: how fast this machine can run
VGG16 at all, and how fast each featurisation runtime gets.

- machine: cores, CPU, numpy float32 GEMM peak (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset in
  that process only) and the featurisation limit derived from it;
- runtime: one process per variant: the seed's loop (decode, then model.predict on a batch of
  one, np.append), Keras tf.function, XLA, thread and oneDNN settings
  (search.featurize.runtimes.keras, with TensorFlow), and the served runtimes as the application
  loads them (search.featurize.loader, from the exported files, no TensorFlow): OpenVINO float32,
  bfloat16 (where the CPU has it), int8, ONNX Runtime, and `auto` (the runtime the choice step
  recorded); images/s on preprocessed batches, load time, peak memory, and each variant's fidelity
  to float32 Keras on the same catalogue photos (search.featurize.fidelity: mean cosine, top-8
  overlap).

These drive the model directly: they compare runtimes, not the engine.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Row, catalog_photos, lookup, proc_status_mb, row

__all__ = [
    "ISSUE_GFLOP_PER_IMAGE",
    "VGG16_CONV_GMAC",
    "conv_macs",
    "featurisation_limit",
    "fidelity_files",
    "fidelity_vs_float32",
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
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
    flags = [f for f in wanted if f" {f}" in text]
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


SERVED = ("openvino", "openvino-bf16", "openvino-int8", "onnxruntime", "auto")


def fidelity_files(photos: list[Path], count: int) -> list[Path]:
    """`count` catalogue photos spread over it, none of those the choice step calibrated int8
    on (bench.choice.calibration_files takes every step-th from the first)."""
    step = max(1, len(photos) // max(1, count))
    return photos[step // 2 :: step][:count]


def _load_keras(args: dict[str, Any], runtime: str) -> Any:
    from search.featurize import ModelLoader

    loader = ModelLoader(
        models_dir=Path(args["models_dir"]), weights=str(args["weights"]), seed=int(args["seed"])
    )
    return loader.keras("vgg16", runtime)


def _load_served(args: dict[str, Any], runtime: str, photos: list[Path]) -> Any:
    """The model as the application serves `runtime` ("auto": the recorded choice), from its
    exported file; Keras only when that file is missing (the row then says TensorFlow)."""
    from search.featurize import ModelLoader

    loader = ModelLoader(
        models_dir=Path(args["models_dir"]),
        weights=str(args["weights"]),
        seed=int(args["seed"]),
        runtime=runtime,
        calibration_photos=lambda limit: [p.read_bytes() for p in photos[:limit]],
    )
    return loader("vgg16")


def _unavailable(runtime: str, args: dict[str, Any]) -> str | None:
    """Why `runtime` cannot be measured here, or None."""
    package = "onnxruntime" if runtime == "onnxruntime" else "openvino"
    if runtime in SERVED and runtime != "auto" and importlib.util.find_spec(package) is None:
        return f"not installed: {package}"
    if runtime == "openvino-bf16":
        import openvino as ov

        if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            return "this CPU has no native bfloat16 (OpenVINO would run float32 under that name)"
    if runtime == "openvino-int8":
        from search.featurize import ModelFiles, cached_model_path

        keras = cached_model_path(Path(args["models_dir"]), str(args["weights"]), int(args["seed"]))
        if not ModelFiles(keras).fresh(ModelFiles(keras).int8_xml):
            return "no int8 IR beside the model (the choice step makes it; is nncf installed?)"
    return None


def section_runtime(args: dict[str, Any]) -> dict[str, Any]:
    """One runtime variant: load, warm up, featurise preprocessed batches (or the seed loop)
    for at least `images` images and `min_seconds`; then the vectors of `fidelity_photos`
    photos, for fidelity_vs_float32."""
    from search.featurize import preprocess_image

    variant = str(args["variant"])
    runtime, batch, _ = _parse_variant(variant)
    reason = _unavailable(runtime, args)
    if reason:
        return {"variant": variant, "skipped": reason}
    photos = catalog_photos(Path(args["data"]))
    started = time.perf_counter()
    if runtime in SERVED:
        model = _load_served(args, runtime, photos)
    else:
        model = _load_keras(args, "keras" if runtime == "seed" else runtime)
    load_s = time.perf_counter() - started
    if runtime in SERVED and runtime != "auto" and model.runtime != runtime:
        # The loader fell back (bfloat16 announced but not compiled under ONEDNN_MAX_CPU_ISA,
        # say): measuring the fallback under this name would mislead.
        return {"variant": variant, "skipped": f"cannot run here (served {model.runtime})"}
    result: dict[str, Any] = {"variant": variant, "runtime": model.runtime, "load_s": load_s}
    count, min_seconds = int(args["images"]), float(args.get("min_seconds", 0.0))
    if runtime == "seed":
        # The seed: decode one photo, model.predict on a batch of one, np.append to the store.
        keras_model = model.keras_model
        first = preprocess_image(photos[0].read_bytes())[np.newaxis]
        keras_model.predict(first, verbose=0)  # warm-up, as the seed's first image would be
        store = np.zeros((0, 512), dtype=np.float32)
        started = time.perf_counter()
        for path in photos[:count]:
            x = preprocess_image(path.read_bytes())
            store = np.append(store, keras_model.predict(x[np.newaxis], verbose=0), axis=0)
        elapsed = time.perf_counter() - started
        result.update(images=count, seconds=elapsed, images_per_s=count / elapsed)
    else:
        pixels = np.stack([preprocess_image(p.read_bytes()) for p in photos[: max(batch, 1)]])
        warm = time.perf_counter()
        model.embed(pixels[:batch])  # first call: tracing / compilation
        result["first_call_s"] = time.perf_counter() - warm
        timings: list[float] = []
        while len(timings) < max(1, count // batch) or sum(timings) < min_seconds:
            t0 = time.perf_counter()
            model.embed(pixels[:batch])
            timings.append(time.perf_counter() - t0)
        result.update(
            images=len(timings) * batch,
            seconds=sum(timings),
            images_per_s=len(timings) * batch / sum(timings),
            batch_ms_median=1000 * statistics.median(timings),
        )
    result["peak_rss_mb"] = proc_status_mb("VmHWM")  # before the fidelity pass below
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    probe = fidelity_files(photos, int(args.get("fidelity_photos", 0)))
    vectors = [
        model.embed(np.stack([preprocess_image(p.read_bytes()) for p in probe[i : i + 32]]))
        for i in range(0, len(probe), 32)
    ]
    if vectors:
        result["vectors"] = np.concatenate(vectors).tolist()  # (n, 512): fidelity_vs_float32
    return result


def fidelity_vs_float32(runtimes: list[dict[str, Any]]) -> None:
    """Each runtime's fidelity to float32 Keras (search.featurize.fidelity: mean cosine, top-8
    overlap) on the same catalogue photos; the reference is the seed loop's model (Keras
    float32). The vectors themselves are dropped from the results."""
    from search.featurize import measure_fidelity

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
        if reference is None or vectors is None or len(reference) <= 8:
            continue
        fidelity = measure_fidelity(reference, np.asarray(vectors))
        r["fidelity_vs_float32"] = {
            "cosine": fidelity.cosine,  # ranking space (after the post-processing)
            "top8_overlap": fidelity.top8_overlap,
            "raw_cosine": fidelity.raw_cosine,
            "raw_top8_overlap": fidelity.raw_top8_overlap,
            "photos": fidelity.photos,
        }


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
        if seed:
            name = "seed loop (decode + predict(batch of 1) + np.append)"
        elif r["variant"].startswith("auto"):
            name = (
                f"{r['variant']} = {r.get('runtime')} (the recorded choice, preprocessed batches)"
            )
        else:
            name = f"{r['variant']} (preprocessed batches)"
        extra = [f"{ips:.2f} images/s"]
        if seed_ips and not seed:
            extra.append(f"x{ips / seed_ips:.1f} seed")
        if limit:
            extra.append(f"{100 * ips / limit:.0f}% of limit")
        fidelity = r.get("fidelity_vs_float32")
        if seed:
            extra.append("its model is the float32 reference")
        elif fidelity:
            text = f"vs float32 on {fidelity['photos']} photos, ranking space: cosine "
            text += f"{fidelity['cosine']:.5f}, top-8 {100 * fidelity['top8_overlap']:.1f}%"
            if fidelity.get("raw_cosine") is not None:
                text += f" (raw {fidelity['raw_cosine']:.5f}, "
                text += f"{100 * fidelity['raw_top8_overlap']:.1f}%)"
            extra.append(text)
        extra.append(f"peak {r.get('peak_rss_mb', 0):.0f} MB")
        extra.append("TensorFlow imported" if r.get("tensorflow_imported") else "no TensorFlow")
        rows.append(row("featurise", name, ", ".join(extra)))
    return rows
