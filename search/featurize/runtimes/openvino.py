"""OpenVINO: an exported IR file (float32, bfloat16 or int8) compiled for this CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search.featurize.runtimes.forward import Forward

__all__ = ["openvino_forward"]


def openvino_forward(xml: Path, precision: str = "f32") -> Forward:
    """An IR file compiled for the CPU twice: with the latency hint (one stream over every
    core) for one photo, and with the throughput hint (the streams OpenVINO finds best, two on 2
    cores, each with its own infer request) for a batch, split into as many parts run at once.

    Why two: one photo is fastest over every core (36 ms vs 67 ms on one of the 2-core EPYC's
    cores), but a batch on that one stream stalls whenever another thread of the process (a
    server's request handling) takes one of its cores, since the stream's threads wait for
    each other at every layer; independent streams do not. Measured on the 2-core EPYC
    (bf16, a busy Python thread beside the model): a batch of 10 at 9.5-10.1 images/s on
    the latency stream, 16.3-16.7 split over two streams; without that thread both give the
    same 26-28 images/s. The second compiled model and its batches' buffers cost memory: a
    web server held 637 MB after a burst of 40 searches, 500 MB before (docs/benchmarks.md)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(xml)
    latency = core.compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    )
    throughput = core.compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "THROUGHPUT"}
    )
    single = latency.create_infer_request()
    parallel = int(throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    streams = [throughput.create_infer_request() for _ in range(max(1, parallel))]

    def forward(batch: np.ndarray) -> np.ndarray:
        if len(batch) < 2 or len(streams) < 2:
            single.infer({0: batch})
            return np.array(single.get_output_tensor(0).data, dtype=np.float32)  # a copy
        parts = np.array_split(batch, min(len(batch), len(streams)))  # in order, sizes +-1
        running = []
        try:
            for request, part in zip(streams, parts, strict=False):
                request.start_async({0: part})
                running.append(request)
        finally:  # every started request finishes before the next call may reuse it
            for request in running:
                request.wait()
        return np.concatenate(
            [np.array(request.get_output_tensor(0).data, dtype=np.float32) for request in running]
        )  # (n, dim), in the batch's order

    return forward
