"""`auto` chooses the runtime by measuring, on this CPU and the shop's photos.

Every runtime available here runs the same photos: its speed (images/s over batches of the
production batch size, after one warm-up batch, for at least `MIN_BENCH_SECONDS`) and its
fidelity against float32 Keras (search.featurize.fidelity). The fastest runtime that passes the gate
and runs from an exported file wins, so the served process needs no TensorFlow; Keras is
chosen only when no exported runtime can run the model. A runtime that fails the gate is
never chosen, and the decision says why.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from search.featurize.backbones import BackboneSpec
from search.featurize.fidelity import DEFAULT_GATE, FidelityGate, measure_fidelity
from search.featurize.files import ModelFiles
from search.featurize.record import RuntimeDecision, RuntimeTrial, cpu_signature
from search.featurize.served import SERVED_RUNTIMES, Forward, check_vectors, forward_for

__all__ = [
    "MIN_BENCH_SECONDS",
    "MIN_CALIBRATION_PHOTOS",
    "SPLIT_SEED",
    "ReferenceModel",
    "choose_runtime",
    "default_candidates",
    "probe_images",
    "provisional_decision",
    "split_photos",
]

log = logging.getLogger(__name__)

MIN_BENCH_SECONDS = 2.0
# Fewer shop photos than this: int8 is not calibrated, and the gate runs on generated probe
# images; the runtime is chosen again once the catalogue has this many.
MIN_CALIBRATION_PHOTOS = 16
# The measured photos are split in two halves with this seed: int8 is calibrated on one, the
# gate scores the other (each photo's neighbours searched among all of them), so the figures
# are not those of the photos the quantisation was fitted to.
SPLIT_SEED = 0


def split_photos(count: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(calibration indices, held-out indices), sorted: a seeded half of range(count) each
    (the held-out half gets the odd one)."""
    order = np.random.default_rng(seed).permutation(count)
    half = count // 2
    return np.sort(order[:half]), np.sort(order[half:])


class ReferenceModel(Protocol):
    """Float32 Keras (search.featurize.runtimes.keras.KerasExtractor with runtime "keras"): the
    vectors every runtime is measured against, and the exports the served runtimes run."""

    def embed(self, batch: np.ndarray) -> np.ndarray: ...

    def export_openvino(self) -> Path: ...

    def export_onnx(self) -> Path: ...


# A candidate: runtime name -> a function that prepares it (export, quantise) and returns its
# forward function; it raises when the runtime cannot run here.
Candidates = Mapping[str, Callable[[], Forward]]


def probe_images(spec: BackboneSpec, count: int = 24, seed: int = 0) -> np.ndarray:
    """(count, H, W, 3) float32 smooth random images, in the model's input range: what the
    gate runs on when the shop has too few photos."""
    rng = np.random.default_rng(seed)
    height, width = spec.input_size
    coarse = rng.uniform(0, 255, size=(count, 8, 8, 3)).astype(np.float32)
    images = coarse.repeat(height // 8 + 1, axis=1)[:, :height].repeat(width // 8 + 1, axis=2)
    images = images[:, :, :width]
    return np.ascontiguousarray(images - 120.0, dtype=np.float32)  # roughly centred, as caffe


def _openvino_capabilities() -> list[str]:
    try:
        import openvino as ov

        return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # not installed, or no CPU plugin
        return []


def provisional_decision(model_stamp: str, weights: str) -> RuntimeDecision:
    """Before the catalogue has MIN_CALIBRATION_PHOTOS photos: OpenVINO bfloat16 where the
    CPU has native bf16, else OpenVINO float32 (exact; measured 1.5x faster than Keras on an
    AVX2-only CPU). Nothing is measured; the record says so."""
    chosen = "openvino-bf16" if "BF16" in _openvino_capabilities() else "openvino"
    return RuntimeDecision(
        chosen=chosen, cpu=cpu_signature(), model_stamp=model_stamp, photos=0, weights=weights
    )


# Measured: the ONNX export (tf2onnx) and an ONNX Runtime session raise the choice's peak from
# 3.0 to 5.8 GB resident (VGG16, batches of 32). On a small server the export is skipped, and
# the record says why, rather than the measurement taking the machine down.
ONNX_EXPORT_FREE_GB = 4.0


def _available_memory_gb() -> float:
    """MemAvailable from /proc/meminfo, in GB (infinite where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return float("inf")


def default_candidates(
    reference: ReferenceModel, files: ModelFiles, samples: np.ndarray, *, calibrated: bool
) -> dict[str, Callable[[], Forward]]:
    """Every served runtime worth measuring here: OpenVINO float32; bfloat16 where the CPU
    has it natively (elsewhere OpenVINO would run float32 under that name); int8 quantised on
    `samples` when they are the shop's photos; ONNX Runtime when installed (and, for its
    export, ONNX_EXPORT_FREE_GB of memory is free)."""
    from importlib.util import find_spec

    def openvino(runtime: str) -> Callable[[], Forward]:
        def prepare() -> Forward:
            reference.export_openvino()
            return forward_for(files, runtime)

        return prepare

    def int8() -> Forward:
        from search.featurize.quantize import quantize_int8

        quantize_int8(reference.export_openvino(), files.int8_xml, samples)
        return forward_for(files, "openvino-int8")

    def onnx() -> Forward:
        free_gb = _available_memory_gb()
        if not files.fresh(files.onnx) and free_gb < ONNX_EXPORT_FREE_GB:
            raise MemoryError(
                f"not measured: exporting to ONNX needs about {ONNX_EXPORT_FREE_GB} GB free "
                f"memory, {free_gb:.1f} GB is available"
            )
        reference.export_onnx()
        return forward_for(files, "onnxruntime")

    candidates: dict[str, Callable[[], Forward]] = {"openvino": openvino("openvino")}
    if "BF16" in _openvino_capabilities():
        candidates["openvino-bf16"] = openvino("openvino-bf16")
    if calibrated and find_spec("nncf") is not None:
        candidates["openvino-int8"] = int8
    if find_spec("onnxruntime") is not None and find_spec("tf2onnx") is not None:
        candidates["onnxruntime"] = onnx
    return candidates


def _run_timed(
    forward: Forward, samples: np.ndarray, batch_size: int, min_seconds: float
) -> tuple[np.ndarray, float]:
    """(n, dim) vectors of `samples`, and images/s: one warm-up batch, then passes over the
    samples in batches of `batch_size` until `min_seconds` have passed."""
    forward(samples[:batch_size])
    vectors: list[np.ndarray] = []
    images, started = 0, time.perf_counter()
    while True:
        for start in range(0, len(samples), batch_size):
            out = forward(samples[start : start + batch_size])
            if len(vectors) * batch_size < len(samples):
                vectors.append(out)
        images += len(samples)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return np.concatenate(vectors)[: len(samples)], images / elapsed


def _one_line(exc: Exception) -> str:
    """An exception as one short line for the record and `model list`: OpenVINO's messages
    run over many lines, and the last one says what failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[-1] if lines else ""
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def choose_runtime(
    reference: ReferenceModel,
    samples: np.ndarray,
    *,
    candidates: Candidates,
    model_stamp: str,
    photos: int,
    weights: str,
    batch_size: int = 32,
    min_seconds: float = MIN_BENCH_SECONDS,
    gate: FidelityGate = DEFAULT_GATE,
    progress: Callable[[str], None] = log.info,
    held_out: np.ndarray | None = None,
    split_seed: int = SPLIT_SEED,
) -> RuntimeDecision:
    """Measure float32 Keras and every candidate on `samples` ((n, H, W, 3), n > 8: the
    shop's photos, `photos` of them), and choose. held_out: the indices of the photos the
    gate scores (those int8 was not calibrated on; default: all)."""
    progress(f"measuring float32 Keras on {len(samples)} images (the reference)")
    expected, keras_speed = _run_timed(reference.embed, samples, batch_size, min_seconds)
    trials = [RuntimeTrial("keras", keras_speed, 1.0, 1.0, None, 1.0, 1.0)]
    for runtime, prepare in candidates.items():
        progress(f"measuring {runtime}")
        try:
            forward = prepare()
            vectors, speed = _run_timed(forward, samples, batch_size, min_seconds)
            # Inside the `try`: a runtime whose output is not (n, dim) finite floats is refused
            # with the reason, like one that raises, and the next one is measured.
            check_vectors(vectors, rows=expected.shape[0], dim=expected.shape[1])
            fidelity = measure_fidelity(expected, vectors, queries=held_out)
        except Exception as exc:  # cannot export, quantise, compile or run this backbone
            log.warning("runtime %s cannot run here: %s: %s", runtime, type(exc).__name__, exc)
            trials.append(RuntimeTrial(runtime, None, None, None, _one_line(exc)))
            continue
        finally:
            forward = None  # type: ignore[assignment]  # free the compiled model before the next
            gc.collect()
        refused = gate.refusal(fidelity)
        trials.append(
            RuntimeTrial(
                runtime,
                speed,
                fidelity.cosine,
                fidelity.top8_overlap,
                refused,
                raw_cosine=fidelity.raw_cosine,
                raw_top8_overlap=fidelity.raw_top8_overlap,
            )
        )
        figures = f"{speed:.1f} images/s, ranking space: cosine {fidelity.cosine:.5f}, "
        figures += f"top-8 overlap {fidelity.top8_overlap:.1%} (raw {fidelity.raw_cosine:.5f}, "
        figures += f"{fidelity.raw_top8_overlap:.1%}) on {fidelity.photos} held-out photos"
        progress(f"{runtime}: {figures}" + (f": refused ({refused})" if refused else ""))
    served = [
        t for t in trials if t.runtime in SERVED_RUNTIMES and t.refused is None and t.images_per_s
    ]
    chosen = max(served, key=lambda t: t.images_per_s or 0.0).runtime if served else "keras"
    return RuntimeDecision(
        chosen=chosen,
        cpu=cpu_signature(),
        model_stamp=model_stamp,
        photos=photos,
        weights=weights,
        trials=trials,
        held_out=len(samples) if held_out is None else len(held_out),
        split_seed=split_seed,
    )
