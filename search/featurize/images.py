"""Image bytes -> checked, decoded model input for a backbone (no model, no database).

Thread-safe: decoding releases the GIL in Pillow, so `prepare_many` decodes the next images
in worker threads while the caller runs the model on the current batch. The only state is the
decoding budget: at most `max_pixels` (the largest image accepted) are decoded at once over all
threads, since a decoded image holds 4 bytes a pixel: four 7999x7999 PNGs of 200 KB each,
prepared at once, peaked at 2.1 GB before this bound (0.35 GB with it; README, "Decoding
memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image

from search.featurize.backbones import BackboneSpec
from search.featurize.preprocess import InvalidImageError, inspect_image, load_rgb, to_model_input

__all__ = ["DecodeBudget", "DescribeColour", "ImagePreparer", "PreparedImage", "content_hash"]

# A decoded RGB photo -> its colour descriptor (the engine passes search.colour.describe_image:
# this package knows nothing of colour, it only hands over the pixels it decoded anyway).
DescribeColour = Callable[[Image.Image], np.ndarray]


def content_hash(data: bytes) -> str:
    """sha256 hex of the bytes: how an image is recognised, and its file name."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image checked and turned into model input, not yet featurised."""

    data: bytes
    content_hash: str  # sha256 hex of the bytes
    image_format: str
    width: int
    height: int
    model_input: np.ndarray  # (h, w, 3) float32 in the backbone's input size and preprocessing
    backbone: str = "vgg16"  # the backbone `model_input` was made for
    colour: np.ndarray | None = None  # (colour DIM,) float32 descriptor, if the preparer makes one


# Past this many pixels, the memory a decode freed is handed back to the system once no
# decode runs (glibc keeps freed blocks of that size in its arenas: the process stayed at
# 2 GB after the four PNGs above). A 12 MP phone photo is below it: nothing to trim then.
TRIM_AFTER_PIXELS = 16_000_000


class DecodeBudget:
    """At most `pixels` pixels decoded at once across threads; an image over the budget
    decodes alone. Waiting threads queue in no particular order."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self.in_use = 0
        self.peak = 0  # the most pixels ever decoding at once (for tests and figures)
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        with self._changed:
            while self.in_use and self.in_use + pixels > self.pixels:
                self._changed.wait()
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                idle = self.in_use == 0
                self._changed.notify_all()
            if idle and pixels >= TRIM_AFTER_PIXELS:
                _return_freed_memory()


def _load_libc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, None elsewhere (musl, macOS: they return large blocks anyway)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    return None if trim is None else trim


_MALLOC_TRIM = _load_libc_trim()


def _return_freed_memory() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class ImagePreparer:
    def __init__(
        self, *, max_pixels: int, max_bytes: int, describe_colour: DescribeColour | None = None
    ) -> None:
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.describe_colour = describe_colour
        self.decoding = DecodeBudget(max_pixels)  # one largest image, or several smaller

    def prepare(self, data: bytes, spec: BackboneSpec) -> PreparedImage:
        """Check (header first: bombs are refused before decoding) and preprocess one image.
        Raises InvalidImageError with a one-line reason."""
        info = inspect_image(data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        with self.decoding.hold(info.width * info.height):
            image = load_rgb(data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
            prepared = PreparedImage(
                data=data,
                content_hash=content_hash(data),
                image_format=info.format,
                width=image.width,
                height=image.height,
                model_input=self._model_input(image, spec),
                backbone=spec.name,
                colour=self.describe_colour(image) if self.describe_colour else None,
            )
            del image  # freed inside the budget, before the memory is trimmed
        return prepared

    def model_input(self, prepared: PreparedImage, spec: BackboneSpec) -> np.ndarray:
        """(h, w, 3) input of `spec` for an image prepared for it or for another backbone."""
        if prepared.backbone == spec.name and prepared.model_input.size:
            return prepared.model_input
        with self.decoding.hold(prepared.width * prepared.height):
            image = load_rgb(prepared.data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
            model_input = self._model_input(image, spec)
            del image
        return model_input

    def prepare_many(
        self,
        payloads: Iterable[tuple[str, bytes]],
        spec: BackboneSpec,
        *,
        workers: int = 2,
        lookahead: int = 64,
    ) -> Iterator[tuple[str, PreparedImage | InvalidImageError]]:
        """(key, prepared image or the reason it is unusable), in the order of `payloads`.

        `payloads` is read lazily and at most `lookahead` images are decoded ahead of the one
        handed out, so a stream of any length needs bounded memory.
        """
        source = iter(payloads)
        pending: deque[tuple[str, Future[PreparedImage | InvalidImageError]]] = deque()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:

            def submit_next() -> None:
                item = next(source, None)
                if item is not None:
                    pending.append((item[0], pool.submit(self._try_prepare, item[1], spec)))

            try:
                for _ in range(max(1, lookahead)):
                    submit_next()
                while pending:
                    key, future = pending.popleft()
                    submit_next()
                    yield key, future.result()
            finally:  # the caller stopped early: do not decode the rest
                for _, future in pending:
                    future.cancel()

    def _try_prepare(self, data: bytes, spec: BackboneSpec) -> PreparedImage | InvalidImageError:
        try:
            return self.prepare(data, spec)
        except InvalidImageError as exc:
            return exc

    @staticmethod
    def _model_input(image: Image.Image, spec: BackboneSpec) -> np.ndarray:
        return to_model_input(image, size=spec.input_size, preprocessing=spec.preprocessing)
