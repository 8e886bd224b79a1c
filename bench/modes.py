"""The sizes of `lookalike bench`'s three modes: smoke (tests/test_bench.py: does it work),
quick (CI, a few minutes) and full (docs/benchmarks.md, longer)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODES", "Mode"]


@dataclass(frozen=True)
class Mode:
    name: str
    seed_images: int  # images through the seed's one-at-a-time loop
    runtime_images: int  # images per runtime variant (batched), at least...
    runtime_seconds: float  # ...and at least this long
    variants: tuple[str, ...]
    fidelity_photos: int  # catalogue photos each variant's fidelity to float32 is measured on
    calibration_photos: int  # the choice step: photos int8 is calibrated and the gate run on
    choice_seconds: float  # the choice step: seconds per runtime measured
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
        runtime_seconds=0.0,
        variants=("seed", "openvino b4", "auto b4"),
        fidelity_photos=12,
        calibration_photos=16,
        choice_seconds=0.3,
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
        seed_images=12,
        runtime_images=32,
        runtime_seconds=2.0,
        variants=(
            "seed",
            "keras b32",
            "openvino b32",
            "openvino-bf16 b32",
            "openvino-int8 b32",
            "onnxruntime b8",
            "auto b32",
        ),
        fidelity_photos=32,
        calibration_photos=32,
        choice_seconds=1.0,
        featurise_images=0,  # all 300: the goals' search and bot start are at 300 products
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
        runtime_seconds=4.0,
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
            "openvino-int8 b32",
            "auto b32",
        ),
        fidelity_photos=96,
        calibration_photos=96,
        choice_seconds=2.0,
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
