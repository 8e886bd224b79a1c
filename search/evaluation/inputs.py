"""The inputs of `lookalike evaluate`: labels (file,category CSV), precomputed vectors with
their names, or a folder with one sub-folder of images per category, featurised here.

numpy and the image checks only: featurising a folder takes any `Featurizer`, so TensorFlow
stays in search/featurize/runtimes/keras.py.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from search.evaluation.methods import EvaluationError, FloatArray
from search.featurize import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    BackboneSpec,
    Featurizer,
    InvalidImageError,
    get_backbone,
    preprocess_image,
)

__all__ = ["FolderData", "featurise_folder", "labels_for", "read_labels", "read_vectors"]


def csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: stripped value}) of each row of a CSV whose header names
    `columns` (any case; other columns ignored), rows with every column empty skipped.
    EvaluationError for a file that cannot be read, is not CSV, or lacks a column."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            if any(column not in fields for column in columns):
                raise EvaluationError(f"{path}: expected the columns {','.join(columns)}")
            for line, row in enumerate(reader, start=2):
                cleaned = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                values = {column: cleaned.get(column, "") for column in columns}
                if any(values.values()):
                    yield line, values
    except OSError as exc:
        raise EvaluationError(f"cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationError(f"{path} is not a readable CSV file: {exc}") from exc


def read_labels(path: Path) -> dict[str, str]:
    """A CSV with a header and the columns file,category -> {file: category}."""
    labels: dict[str, str] = {}
    for line, row in csv_rows(path, ("file", "category")):
        name, category = row["file"], row["category"]
        if not name or not category:
            raise EvaluationError(f"{path}, line {line}: empty file or category")
        if labels.get(name, category) != category:
            raise EvaluationError(f"{path}, line {line}: {name} has two categories")
        labels[name] = category
    if not labels:
        raise EvaluationError(f"{path}: no labels")
    return labels


def read_vectors(vectors_path: Path, names_path: Path) -> tuple[FloatArray, list[str]]:
    """An (n, d) .npy matrix and a text file of n names, one per line, in the same order."""
    try:
        array = np.load(vectors_path, allow_pickle=False)
        names = [ln.strip() for ln in names_path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise EvaluationError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except ValueError as exc:
        raise EvaluationError(f"{vectors_path} is not a numpy .npy matrix: {exc}") from exc
    names = [name for name in names if name]
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise EvaluationError(f"{vectors_path}: expected an (n, d) matrix of numbers")
    if array.shape[0] != len(names):
        raise EvaluationError(
            f"{vectors_path} has {array.shape[0]} vectors but {names_path} {len(names)} names"
        )
    return np.asarray(array, dtype=np.float64), names


def labels_for(names: Sequence[str], labels: dict[str, str]) -> list[str]:
    """The category of each name (matched by file name, or by base name as a fallback)."""
    out: list[str] = []
    missing: list[str] = []
    for name in names:
        category = labels.get(name) or labels.get(Path(name).name)
        if category is None:
            missing.append(name)
        else:
            out.append(category)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise EvaluationError(f"{len(missing)} vector(s) have no label: {shown}")
    return out


@dataclass(frozen=True)
class FolderData:
    vectors: npt.NDArray[np.float32]  # (n, d)
    names: list[str]  # "category/file"
    labels: list[str]
    skipped: list[tuple[str, str]]  # (name, reason)


def featurise_folder(
    folder: Path,
    featurizer: Featurizer,
    *,
    batch_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    backbone: BackboneSpec | None = None,
) -> FolderData:
    """Vectors of every image in folder/<category>/ (one sub-folder per category), made with
    `featurizer` from images in `backbone`'s input size and preprocessing (default VGG16's).

    Hidden files and files directly in `folder` are ignored; files that are not usable
    images are skipped with the reason. Images are featurised `batch_size` at a time.
    """
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder")
    if batch_size < 1:
        raise EvaluationError(f"batch size must be >= 1, got {batch_size}")
    files: list[tuple[str, Path]] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files.extend(
            (sub.name, f)
            for f in sorted(sub.iterdir())
            if f.is_file() and not f.name.startswith(".")
        )
    if not files:
        raise EvaluationError(f"{folder} has no images in category sub-folders")
    if on_total is not None:
        on_total(len(files))
    spec = backbone or get_backbone("vgg16")
    vectors: list[npt.NDArray[np.float32]] = []
    names: list[str] = []
    labels: list[str] = []
    skipped: list[tuple[str, str]] = []
    for start in range(0, len(files), batch_size):
        batch: list[npt.NDArray[np.float32]] = []
        for category, path in files[start : start + batch_size]:
            name = f"{category}/{path.name}"
            try:
                batch.append(
                    preprocess_image(
                        path.read_bytes(),
                        max_pixels=max_pixels,
                        max_bytes=max_bytes,
                        size=spec.input_size,
                        preprocessing=spec.preprocessing,
                    )
                )
            except InvalidImageError as exc:
                skipped.append((name, str(exc)))
                continue
            except OSError as exc:
                skipped.append((name, f"cannot read the file: {exc.strerror}"))
                continue
            names.append(name)
            labels.append(category)
        if batch:
            vectors.append(np.asarray(featurizer.embed(np.stack(batch)), dtype=np.float32))
        if progress is not None:
            progress(len(files[start : start + batch_size]))
    if not vectors:
        raise EvaluationError(f"{folder}: none of the {len(files)} files is a usable image")
    return FolderData(vectors=np.concatenate(vectors), names=names, labels=labels, skipped=skipped)
