"""Image bytes -> checked, decoded model input for a backbone (no model, no database).

Thread-safe and stateless: decoding releases the GIL in Pillow, so `prepare_many` decodes the
next images in worker threads while the caller runs the model on the current batch.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from search.featurize.backbones import BackboneSpec
from search.featurize.preprocess import InvalidImageError, inspect_image, load_rgb, to_model_input

__all__ = ["DescribeColour", "ImagePreparer", "PreparedImage", "content_hash"]

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


class ImagePreparer:
    def __init__(
        self, *, max_pixels: int, max_bytes: int, describe_colour: DescribeColour | None = None
    ) -> None:
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.describe_colour = describe_colour

    def prepare(self, data: bytes, spec: BackboneSpec) -> PreparedImage:
        """Check (header first: bombs are refused before decoding) and preprocess one image.
        Raises InvalidImageError with a one-line reason."""
        info = inspect_image(data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        image = load_rgb(data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        return PreparedImage(
            data=data,
            content_hash=content_hash(data),
            image_format=info.format,
            width=image.width,
            height=image.height,
            model_input=self._model_input(image, spec),
            backbone=spec.name,
            colour=self.describe_colour(image) if self.describe_colour else None,
        )

    def model_input(self, prepared: PreparedImage, spec: BackboneSpec) -> np.ndarray:
        """(h, w, 3) input of `spec` for an image prepared for it or for another backbone."""
        if prepared.backbone == spec.name and prepared.model_input.size:
            return prepared.model_input
        image = load_rgb(prepared.data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        return self._model_input(image, spec)

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
