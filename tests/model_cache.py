"""The session model's files kept between pytest processes, so that `make test`'s second pass
(and every later run of the suite) copies them instead of building VGG16, exporting it,
quantising it and measuring its runtimes again (tests/conftest.py `extractor`: about 45 s on
2 cores).

What is kept is what the session's fixtures leave in its models folder: the .keras model
(random weights, MODEL_SEED), its OpenVINO IR, the int8 IR, the ONNX export if one was made,
and the runtime record (`<model>.runtime.json`). It is keyed by everything that determines
those files: the CPU (cpu_signature: the record is this CPU's choice, and oneDNN's ISA limit
is part of it), Python's and the libraries' versions, the source of search/featurize/ (build,
export, quantise, measure, record) and the session loader's parameters and photos. A change
to any of them is another key: built and measured afresh, as on a fresh clone.

An entry is a folder renamed into place once complete (a crash never leaves half an entry),
built under a lock so that two pytest processes starting at once build it once; a stem's
entries beyond the KEEP most recently used are removed when a new one is stored (each is
~180 MB; an entry in use, its lock held, is left); copies keep
the files' modification times, since the runtime record names the model by its size and mtime
(search.featurize.files.ModelFiles.model_stamp) and a derived file counts as fresh only if it
is not older than the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from search.featurize.record import cpu_signature

__all__ = ["CACHE_ROOT", "ModelCache"]

REPO_ROOT = Path(__file__).resolve().parents[1]
# In the checkout, ignored by git (and by the wheel test's copy: it skips "*_cache");
# `make clean` removes it.
CACHE_ROOT = REPO_ROOT / ".test_models_cache"
# Whose versions change what is built, exported, quantised or measured.
_LIBRARIES = ("tensorflow-cpu", "tensorflow", "keras", "openvino", "nncf", "onnxruntime")
_LIBRARIES += ("tf2onnx", "onnx", "numpy", "pillow")
_SOURCES = REPO_ROOT / "search" / "featurize"
# Entries of one model kept: switching to another branch and back costs no rebuild.
KEEP = 3


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


class ModelCache:
    """One entry of the cache: the files of model `stem` (e.g. "vgg16_avgpool-random-seed1234")
    for the given loader parameters and calibration photos."""

    def __init__(
        self, stem: str, parameters: str, photos: Iterable[Path], root: Path = CACHE_ROOT
    ) -> None:
        digest = hashlib.sha256()
        for part in (
            stem,
            parameters,
            cpu_signature(),
            sys.version,
            *(f"{name}={_version(name)}" for name in _LIBRARIES),
        ):
            digest.update(part.encode() + b"\0")
        for source in sorted(_SOURCES.rglob("*.py")):
            digest.update(source.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
            digest.update(source.read_bytes())
        for photo in photos:
            digest.update(f"{photo.name}:{photo.stat().st_size}".encode() + b"\0")
        self.stem = stem
        self.root = root
        self.entry = root / f"{stem}-{digest.hexdigest()[:16]}"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held while this process restores or builds the entry: another process building
        the same one is waited for (the kernel releases the lock if its holder dies)."""
        self.root.mkdir(exist_ok=True)
        with (self.root / f"{self.entry.name}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _model_files(self, folder: Path) -> list[Path]:
        # The .runtime.lock beside them is only ever locked, never read: not kept.
        return sorted(
            path
            for path in folder.glob(f"{self.stem}.*")
            if path.is_file() and not path.name.endswith(".lock")
        )

    def restore(self, models_dir: Path) -> bool:
        """Copy the entry's files into `models_dir` (mtimes kept); False when there is no entry."""
        if not self.entry.is_dir():
            return False
        for path in self._model_files(self.entry):
            shutil.copy2(path, models_dir / path.name)
        os.utime(self.entry)  # used now: the last entry pruned
        return True

    def store(self, models_dir: Path) -> None:
        """Keep `models_dir`'s files of the model as the entry (replacing one whose record
        did not hold). Call it holding the lock."""
        self.root.mkdir(exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{self.entry.name}.", dir=self.root))
        try:
            for path in self._model_files(models_dir):
                shutil.copy2(path, partial / path.name)
            shutil.rmtree(self.entry, ignore_errors=True)
            os.rename(partial, self.entry)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        self._prune()

    def _prune(self) -> None:
        """Remove this stem's entries beyond the KEEP most recently used (this one among them),
        each under its own lock, taken without waiting: one in use stays."""
        others = [p for p in self.root.glob(f"{self.stem}-*") if p.is_dir() and p != self.entry]
        others.sort(key=lambda path: path.stat().st_mtime, reverse=True)
        for old in others[KEEP - 1 :]:
            lock = self.root / f"{old.name}.lock"
            with lock.open("a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                shutil.rmtree(old, ignore_errors=True)
                lock.unlink(missing_ok=True)
