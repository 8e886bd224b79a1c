"""Product image files under MEDIA_DIR, content-addressed: the name comes from the bytes' hash.

Names are generated (`ab/abcdef….jpg`), never taken from user input. Writes go to a temporary
file that is fsynced and renamed, so a file either exists whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tiff)$")
_EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
}
TMP_DIR_NAME = ".tmp"
# A file younger than this is never swept: another process (a bot instance sharing MEDIA_DIR)
# may have written it and not yet committed its row. An add takes seconds from writing its
# file to committing; an hour is far more than any add can take.
ORPHAN_GRACE_SECONDS = 3600.0


class MediaStoreError(OSError):
    """An image file could not be stored; the message is safe to show an admin."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    file_name: str  # relative to the media root
    created: bool  # False when identical bytes were already stored


def file_name_for(content_hash: str, image_format: str) -> str:
    extension = _EXTENSIONS.get(image_format.upper(), "jpg")
    return f"{content_hash[:2]}/{content_hash}.{extension}"


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, file_name: str) -> Path:
        """The absolute path of a stored file; refuses anything that is not a generated name."""
        if not _FILE_NAME.match(file_name):
            raise ValueError(f"not a media file name: {file_name!r}")
        return self.root / file_name

    def read(self, file_name: str) -> bytes:
        return self.path_for(file_name).read_bytes()

    def save(self, data: bytes, *, content_hash: str, image_format: str) -> StoredFile:
        """Store `data` durably under its content-addressed name."""
        file_name = file_name_for(content_hash, image_format)
        target = self.path_for(file_name)
        if target.is_file() and target.stat().st_size == len(data):
            # The file may be an orphan awaiting its sweep: fresh again, it is safe from it
            # until this add has committed its row.
            with contextlib.suppress(OSError):
                os.utime(target)
            return StoredFile(file_name=file_name, created=False)
        tmp_dir = self.root / TMP_DIR_NAME
        tmp_path: Path | None = None
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
            tmp_path = Path(tmp_name)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_path, target)
            tmp_path = None
            _fsync_dir(target.parent)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise MediaStoreError("the disk is full: the image could not be saved") from exc
            raise MediaStoreError(f"the image could not be saved: {exc.strerror or exc}") from exc
        finally:
            if tmp_path is not None:
                with contextlib.suppress(OSError):
                    tmp_path.unlink()
        return StoredFile(file_name=file_name, created=True)

    def delete(self, file_name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(file_name).unlink()

    def sweep_orphans(
        self,
        referenced: Collection[str],
        *,
        grace_seconds: float = ORPHAN_GRACE_SECONDS,
        now: float | None = None,
    ) -> list[str]:
        """Delete temporary files and files no database row references (left by a crash
        between writing the file and committing its row), once they are older than
        `grace_seconds`: younger ones may belong to another process's add in flight.
        Returns what was deleted."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        keep = set(referenced)
        cutoff = (time.time() if now is None else now) - grace_seconds
        for path in sorted(self.root.rglob("*")):
            try:
                if not path.is_file() or path.stat().st_mtime > cutoff:
                    continue
            except OSError:  # gone meanwhile (another process's rename or sweep)
                continue
            relative = path.relative_to(self.root).as_posix()
            is_tmp = relative.startswith(f"{TMP_DIR_NAME}/")
            if is_tmp or (_FILE_NAME.match(relative) and relative not in keep):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(relative)
        if removed:
            log.info("removed %d orphan media file(s)", len(removed))
        return removed


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
