"""One inference worker per process: photos to featurise queue here and are batched when
several wait, so 50 customers at once cost a few batched model calls, and the event loop never
runs the model itself (it runs in a worker thread). Every door's searches and adds share it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from search.featurize import PreparedImage

__all__ = ["InferenceWorker"]

log = logging.getLogger(__name__)


@dataclass
class _Job:
    prepared: PreparedImage
    future: asyncio.Future[np.ndarray]


class InferenceWorker:
    def __init__(
        self, embed: Callable[[Sequence[PreparedImage]], np.ndarray], *, max_batch: int = 16
    ) -> None:
        """`embed`: prepared images -> (n, dim) vectors, blocking (run in a worker thread)."""
        self._embed = embed
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches_run = 0
        self.images_embedded = 0

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="inference-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def embed(self, prepared: PreparedImage) -> np.ndarray:
        """The (dim,) vector of one prepared image, computed in a (possibly shared) batch."""
        if self._queue is None:
            raise RuntimeError("the inference worker is not running")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(prepared, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self._max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            live = [job for job in jobs if not job.future.cancelled()]
            if not live:
                continue
            try:
                vectors = await asyncio.to_thread(
                    self._embed, [job.prepared for job in live]
                )  # (n, dim)
            except Exception as exc:  # one bad batch must not stop the worker
                log.exception("inference failed for a batch of %d", len(live))
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches_run += 1
            self.images_embedded += len(live)
            for job, vector in zip(live, vectors, strict=True):
                if not job.future.done():
                    job.future.set_result(vector)
