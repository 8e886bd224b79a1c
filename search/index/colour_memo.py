"""The stored colour descriptors of the images an in-memory index holds, kept beside it so a
search's candidates (up to 64) need no database read for them once seen.

An entry is forgotten whenever the index writes or removes that image id: SQLite hands the id
of a deleted newest image to the next one, so an id alone does not name one photo for ever.
A read that raced such a write (the database read before, the forget after) is not kept
(`epoch`). At most one entry per image the index holds: 3.6 MB for 10,000 (tracemalloc)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["ColourMemo"]


class ColourMemo:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._colours: dict[int, np.ndarray] = {}  # image id -> (colour DIM,) float32
        self._epoch = 0  # bumped by every forget

    @property
    def epoch(self) -> int:
        """Take it before reading the database; `remember` keeps that read only if no entry
        was forgotten since."""
        return self._epoch

    def known(self, image_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """image id -> descriptor, for those of `image_ids` remembered."""
        with self._lock:
            return {i: self._colours[i] for i in image_ids if i in self._colours}

    def remember(self, colours: Mapping[int, np.ndarray], *, epoch: int) -> None:
        with self._lock:
            if epoch == self._epoch:
                self._colours.update(colours)

    def forget(self, image_ids: Iterable[int]) -> None:
        with self._lock:
            self._epoch += 1
            for image_id in image_ids:
                self._colours.pop(image_id, None)

    def __len__(self) -> int:
        return len(self._colours)
