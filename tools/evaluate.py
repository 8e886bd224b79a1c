"""Search quality: leave-one-out precision@k, recall@k and mAP@k on a labelled catalogue.

Every labelled vector is used once as the query against all the others (leave-one-out: the
query itself is never among its own results, by position, so an exact duplicate of it still
counts). A neighbour is relevant when it has the query's category.

For a query with R relevant items in the rest of the catalogue and hits rel_1..rel_k (1 when
the j-th neighbour is relevant):

    precision@k = sum(rel_j) / k
    recall@k    = sum(rel_j) / R
    AP@k        = sum_j precision@j * rel_j / min(k, R)     (1.0 when the first min(k, R) hit)

Overall scores are means over queries; per-category scores are means over that category's
queries; "macro" precision is the mean of the per-category precisions. A query whose category
has no other member (R = 0) cannot be answered: it is left out as a query (and counted in
`singletons`) but stays in the catalogue as a distractor. The confusion summary gives, for each
true category, the share of its queries' top-k neighbours that come from each category.

Methods are named by "+"-joined steps: plain, sqrt (power 0.5), centre (subtract the mean),
whiten (PCA whitening with shrinkage), then optionally one re-ranking: qe (average query
expansion) or krr (k-reciprocal re-ranking, Zhong et al. 2017), and last optionally cat:
category inference as the live search does it (when more than half of the top k share a
catalogue category, the results are restricted to it; the catalogue's categories are the
labels, as a shop's product categories would be). The fitted steps (centre,
whiten) are fitted on the whole catalogue by default, query included, as the live system would
fit them on its known catalogue; `fit="loo"` refits them without each query instead.

numpy only: featurising a folder takes any `Featurizer`, so TensorFlow stays in extractor.py.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from search.backbones import BackboneSpec, get_backbone
from search.featurizer import Featurizer
from search.postprocess import METRICS, Metric, PostProcessor, l2_normalise, pairwise_distances
from search.preprocess import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    InvalidImageError,
    preprocess_image,
)

__all__ = [
    "ALL_METHODS",
    "CategoryScores",
    "EvaluationError",
    "EvaluationOptions",
    "EvaluationReport",
    "FolderData",
    "Method",
    "MethodReport",
    "evaluate",
    "featurise_folder",
    "k_reciprocal_distances",
    "labels_for",
    "leave_one_out_neighbours",
    "parse_methods",
    "read_labels",
    "read_vectors",
    "score_neighbours",
]

Fit = Literal["catalogue", "loo"]
Rerank = Literal["none", "qe", "krr"]
IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]

# What `--postprocess all` compares, plain first.
ALL_METHODS: Final[tuple[str, ...]] = (
    "plain",
    "sqrt",
    "centre",
    "sqrt+centre",
    "whiten",
    "sqrt+whiten",
    "qe",
    "krr",
    "sqrt+centre+qe",
    "sqrt+centre+krr",
    "sqrt+centre+cat",
    "sqrt+centre+qe+cat",
)
_STEP_ALIASES: Final = {"center": "centre", "power": "sqrt", "rerank": "krr", "kreciprocal": "krr"}
_ROW_CHUNK: Final = 1024  # query rows ranked at a time: bounds the (rows, n) distance matrix


class EvaluationError(ValueError):
    """Input that cannot be evaluated (bad labels, mismatched files, bad options)."""


# ---- methods and options -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Method:
    """Post-processing steps (fitted on the catalogue) and an optional re-ranking."""

    name: str
    power: float = 1.0
    centre: bool = False
    whiten: bool = False
    rerank: Rerank = "none"
    category: bool = False  # restrict to the majority category of the top k (live: INFER_CATEGORY)

    @property
    def fits(self) -> bool:
        """True when the method has state learnt from the catalogue (mean, projection)."""
        return self.centre or self.whiten

    @classmethod
    def parse(cls, name: str) -> Method:
        steps = [_STEP_ALIASES.get(s, s) for s in name.strip().lower().split("+") if s]
        if not steps:
            raise EvaluationError("empty method name")
        power, centre, whiten, category = 1.0, False, False, False
        rerank: Rerank = "none"
        for step in steps:
            if step == "plain" and len(steps) == 1:
                pass
            elif step == "sqrt" and power == 1.0:
                power = 0.5
            elif step == "centre" and not centre:
                centre = True
            elif step == "whiten" and not whiten:
                whiten = True
            elif step == "qe" and rerank == "none":
                rerank = "qe"
            elif step == "krr" and rerank == "none":
                rerank = "krr"
            elif step == "cat" and not category:
                category = True
            else:
                raise EvaluationError(
                    f"bad method {name!r}: steps are plain, or sqrt, centre, whiten, at most "
                    "one of qe, krr, and cat, joined with '+', each once"
                )
        canonical = "+".join(
            s
            for s, on in (
                ("sqrt", power != 1.0),
                ("centre", centre),
                ("whiten", whiten),
                (rerank, rerank != "none"),
                ("cat", category),
            )
            if on
        )
        return cls(
            name=canonical or "plain",
            power=power,
            centre=centre,
            whiten=whiten,
            rerank=rerank,
            category=category,
        )


def parse_methods(spec: str) -> list[Method]:
    """'all', 'none' (plain only) or a comma-separated list; plain is always first."""
    text = spec.strip().lower()
    names: Sequence[str]
    if text == "all":
        names = ALL_METHODS
    elif text in ("", "none", "plain"):
        names = ("plain",)
    else:
        names = ["plain", *text.split(",")]
    methods: list[Method] = []
    for name in names:
        method = Method.parse(name)
        if all(m.name != method.name for m in methods):
            methods.append(method)
    return methods


@dataclass(frozen=True, slots=True)
class EvaluationOptions:
    k: int = 8
    metric: Metric = "cosine"
    fit: Fit = "catalogue"
    qe_neighbours: int = 3  # neighbours averaged into the query by qe
    krr_k1: int = 20  # k-reciprocal neighbourhood size (Zhong et al. defaults: 20, 6, 0.3)
    krr_k2: int = 6  # neighbours averaged in the local query expansion of krr
    krr_lambda: float = 0.3  # weight of the original distance in the final krr distance
    whiten_dim: int | None = None  # principal directions kept by whiten (None: all)
    shrinkage: float = 1.0  # whiten divides by sqrt(eigenvalue + shrinkage * mean eigenvalue)

    def check(self, n: int) -> None:
        if self.metric not in METRICS:
            raise EvaluationError(f"unknown metric {self.metric!r}: use {', '.join(METRICS)}")
        if not 1 <= self.k <= n - 1:
            raise EvaluationError(f"k must be between 1 and {n - 1} (vectors - 1), got {self.k}")
        if self.fit not in ("catalogue", "loo"):
            raise EvaluationError(f"fit must be catalogue or loo, got {self.fit!r}")
        if self.qe_neighbours < 1 or self.krr_k1 < 1 or self.krr_k2 < 1:
            raise EvaluationError("qe and k-reciprocal neighbour counts must be >= 1")
        if not 0.0 <= self.krr_lambda <= 1.0:
            raise EvaluationError(f"krr lambda must be in [0, 1], got {self.krr_lambda}")
        if self.shrinkage < 0:
            raise EvaluationError(f"shrinkage must be >= 0, got {self.shrinkage}")

    def fit_processor(self, method: Method, vectors: npt.ArrayLike) -> PostProcessor:
        return PostProcessor.fit(
            vectors,
            power=method.power,
            centre=method.centre,
            whiten=method.whiten,
            whiten_dim=self.whiten_dim,
            shrinkage=self.shrinkage,
        )


# ---- ranking -------------------------------------------------------------------------------


def _top(distances: FloatArray, k: int) -> IntArray:
    """Column indices of the k smallest per row; ties go to the lower index (stable sort)."""
    return np.argsort(distances, axis=1, kind="stable")[:, :k].astype(np.intp)


def _exclude_self(distances: FloatArray, rows: IntArray) -> None:
    distances[np.arange(rows.size), rows] = np.inf


def k_reciprocal_distances(
    vectors: npt.ArrayLike,
    *,
    metric: Metric = "cosine",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> FloatArray:
    """(n, d) -> (n, n) k-reciprocal re-ranked distances among all n vectors.

    Zhong et al., "Re-ranking person re-identification with k-reciprocal encoding" (CVPR
    2017), with the query inside the set, as in the paper: each row's original distances are
    scaled to [0, 1]; every vector's k1-reciprocal neighbours (expanded by those of its
    k1/2-reciprocal neighbours that overlap by more than 2/3) get Gaussian-like weights; these
    are averaged over the k2 nearest neighbours; the Jaccard distance of the weight vectors is
    mixed with the original distance: (1 - lambda) * jaccard + lambda * original.
    For leave-one-out this is exact: the query plus the other n - 1 vectors is precisely the
    set a live search of that query against the rest would build. O(n^3): for evaluation only.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    original = pairwise_distances(x, x, metric)  # (n, n)
    low = original.min(axis=1, keepdims=True)
    span = original.max(axis=1, keepdims=True) - low
    span[span == 0.0] = 1.0
    original = (original - low) / span  # each row in [0, 1]
    rank = np.argsort(original, axis=1, kind="stable")  # (n, n)

    def reciprocal(k: int) -> npt.NDArray[np.bool_]:
        forward = np.zeros((n, n), dtype=bool)  # forward[i, j]: j among i's k+1 nearest
        forward[np.arange(n)[:, None], rank[:, : min(k + 1, n)]] = True
        return forward & forward.T  # i and j each among the other's nearest

    near = reciprocal(k1)  # (n, n) bool, the k1-reciprocal sets R(i)
    half = reciprocal(round(k1 / 2))  # (n, n) bool, the k1/2-reciprocal sets R(c)
    # overlap[c, i] = |R_half(c) & R(i)|; c expands R(i) when it is in R(i) and overlaps > 2/3.
    overlap = half.astype(np.float64) @ near.T.astype(np.float64)  # (n, n)
    needed = (2.0 / 3.0) * half.sum(axis=1)  # (n,) overlap candidate c must exceed
    grows = near & (needed[None, :] < overlap.T)  # (n, n) [i, c]
    expanded = near | ((grows.astype(np.float64) @ half.astype(np.float64)) > 0)  # (n, n)
    np.fill_diagonal(expanded, True)  # i belongs to its own set even when i is not its nearest
    weights = np.where(expanded, np.exp(-original), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)  # rows sum to 1 (each holds at least i)
    if k2 > 1:
        weights = weights[rank[:, : min(k2, n)]].mean(axis=1)  # (n, n) local query expansion
    jaccard = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        shared = np.minimum(weights[i][None, :], weights).sum(axis=1)  # (n,)
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    return np.asarray((1.0 - lambda_value) * jaccard + lambda_value * original, dtype=np.float64)


def _restrict_to_majority(distances: FloatArray, codes: IntArray, k: int) -> None:
    """In place, per row of (c, n) distances: when more than half of the row's top k share a
    category, every item of another category moves behind all of that category's items
    (order kept), as the live search's category filter does."""
    top = _top(distances, k)  # (c, k)
    for row in range(distances.shape[0]):
        counts = np.bincount(codes[top[row]], minlength=int(codes.max()) + 1)
        majority = int(np.argmax(counts))
        if counts[majority] * 2 > k:
            finite = distances[row][np.isfinite(distances[row])]
            shift = float(np.abs(finite).max()) * 2.0 + 1.0 if finite.size else 1.0
            distances[row, codes != majority] += shift


def _ranked(
    z: FloatArray,
    rows: IntArray,
    method: Method,
    options: EvaluationOptions,
    codes: IntArray | None = None,
) -> IntArray:
    """Top-k neighbours of z[rows] among all rows of z but themselves: (len(rows), k).
    `codes` ((n,) category codes) are needed by the cat step."""
    if method.category and codes is None:
        raise EvaluationError("category inference needs the labels")
    if method.rerank == "krr":
        distances = k_reciprocal_distances(
            z,
            metric=options.metric,
            k1=options.krr_k1,
            k2=options.krr_k2,
            lambda_value=options.krr_lambda,
        )[rows]
        _exclude_self(distances, rows)
        if method.category and codes is not None:
            _restrict_to_majority(distances, codes, options.k)
        return _top(distances, options.k)
    out = np.empty((rows.size, options.k), dtype=np.intp)
    for start in range(0, rows.size, _ROW_CHUNK):
        chunk = rows[start : start + _ROW_CHUNK]
        distances = pairwise_distances(z[chunk], z, options.metric)  # (c, n)
        _exclude_self(distances, chunk)
        if method.rerank == "qe":
            first = _top(distances, options.qe_neighbours)  # (c, m)
            stack = np.concatenate([z[chunk][:, None, :], z[first]], axis=1)  # (c, m + 1, d)
            if options.metric == "cosine":
                stack = l2_normalise(stack)
            distances = pairwise_distances(stack.mean(axis=1), z, options.metric)
            _exclude_self(distances, chunk)
        if method.category and codes is not None:
            _restrict_to_majority(distances, codes, options.k)
        out[start : start + chunk.size] = _top(distances, options.k)
    return out


def leave_one_out_neighbours(
    vectors: npt.ArrayLike,
    method: Method,
    options: EvaluationOptions,
    labels: Sequence[str] | None = None,
) -> IntArray:
    """(n, d) -> (n, k): each vector's k nearest others after the method's steps (the cat
    step needs the n labels)."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    options.check(n)
    every = np.arange(n, dtype=np.intp)
    codes: IntArray | None = None
    if labels is not None:
        categories = sorted(set(labels))
        codes = np.array([categories.index(c) for c in labels], dtype=np.intp)
    if options.fit == "catalogue" or not method.fits:
        z = options.fit_processor(method, x).transform(x).astype(np.float64)
        return _ranked(z, every, method, options, codes)
    out = np.empty((n, options.k), dtype=np.intp)
    for i in range(n):  # honest: the mean / whitening never sees the query
        processor = options.fit_processor(method, np.delete(x, i, axis=0))
        z = processor.transform(x).astype(np.float64)
        out[i] = _ranked(z, every[i : i + 1], method, options, codes)[0]
    return out


# ---- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CategoryScores:
    count: int  # queries of this category that were evaluated
    precision: float
    recall: float
    map: float


@dataclass(frozen=True)
class MethodReport:
    name: str
    precision: float
    recall: float
    map: float
    macro_precision: float
    per_category: dict[str, CategoryScores]
    confusion: dict[str, dict[str, float]]  # true category -> neighbour category -> share
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision_at_k": self.precision,
            "recall_at_k": self.recall,
            "map_at_k": self.map,
            "macro_precision_at_k": self.macro_precision,
            "seconds": round(self.seconds, 3),
            "per_category": {
                c: {
                    "count": s.count,
                    "precision_at_k": s.precision,
                    "recall_at_k": s.recall,
                    "map_at_k": s.map,
                }
                for c, s in self.per_category.items()
            },
            "confusion": self.confusion,
        }


def score_neighbours(
    neighbours: npt.ArrayLike, labels: Sequence[str], *, name: str = "plain"
) -> MethodReport:
    """Scores of (n, k) neighbour indices against the n labels (see the module docstring)."""
    nb = np.asarray(neighbours, dtype=np.intp)
    n, k = nb.shape
    if len(labels) != n:
        raise EvaluationError(f"{len(labels)} labels for {n} queries")
    categories = sorted(set(labels))
    codes = np.array([categories.index(c) for c in labels], dtype=np.intp)  # (n,)
    sizes = np.bincount(codes, minlength=len(categories))  # (C,)
    relevant = sizes[codes] - 1  # (n,) other items of the query's category
    hits = codes[nb] == codes[:, None]  # (n, k) bool
    found = hits.sum(axis=1).astype(np.float64)  # (n,)
    precision_at_j = np.cumsum(hits, axis=1) / np.arange(1, k + 1)[None, :]  # (n, k)
    answerable = relevant > 0
    denominator = np.maximum(np.minimum(relevant, k), 1)
    precision = found / k
    recall = found / np.maximum(relevant, 1)
    average_precision = (precision_at_j * hits).sum(axis=1) / denominator

    per_category: dict[str, CategoryScores] = {}
    confusion: dict[str, dict[str, float]] = {}
    for code, category in enumerate(categories):
        mask = answerable & (codes == code)
        count = int(mask.sum())
        if count == 0:
            continue
        per_category[category] = CategoryScores(
            count=count,
            precision=float(precision[mask].mean()),
            recall=float(recall[mask].mean()),
            map=float(average_precision[mask].mean()),
        )
        counts = np.bincount(codes[nb[mask]].ravel(), minlength=len(categories))
        confusion[category] = {
            categories[j]: float(counts[j]) / (count * k)
            for j in np.argsort(-counts, kind="stable")
            if counts[j]
        }
    if not answerable.any():
        raise EvaluationError("no category has two or more items: nothing to evaluate")
    return MethodReport(
        name=name,
        precision=float(precision[answerable].mean()),
        recall=float(recall[answerable].mean()),
        map=float(average_precision[answerable].mean()),
        macro_precision=float(np.mean([s.precision for s in per_category.values()])),
        per_category=per_category,
        confusion=confusion,
    )


@dataclass(frozen=True)
class EvaluationReport:
    k: int
    metric: Metric
    fit: Fit
    vectors: int
    categories: dict[str, int]  # items per category in the catalogue
    singletons: list[str]  # categories with one item: not evaluated as queries
    methods: list[MethodReport] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def plain(self) -> MethodReport:
        return self.methods[0]

    @property
    def best(self) -> MethodReport:
        """Highest precision@k; the first listed (plain) wins ties."""
        return max(self.methods, key=lambda m: m.precision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "metric": self.metric,
            "fit": self.fit,
            "vectors": self.vectors,
            "categories": self.categories,
            "singletons": self.singletons,
            "source": self.source,
            "best": self.best.name,
            "methods": [m.to_dict() for m in self.methods],
        }


def evaluate(
    vectors: npt.ArrayLike,
    labels: Sequence[str],
    methods: Sequence[Method] = (Method("plain"),),
    options: EvaluationOptions | None = None,
    *,
    source: dict[str, Any] | None = None,
) -> EvaluationReport:
    """Leave-one-out scores of each method on (n, d) vectors with n category labels."""
    import time

    options = options or EvaluationOptions()
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise EvaluationError(f"{x.shape[0] if x.ndim else 0} vectors but {len(labels)} labels")
    if not np.isfinite(x).all():
        raise EvaluationError("the vectors contain NaN or infinity")
    options.check(x.shape[0])
    sizes: dict[str, int] = {}
    for label in labels:
        sizes[label] = sizes.get(label, 0) + 1
    reports = []
    for method in methods:
        started = time.perf_counter()
        neighbours = leave_one_out_neighbours(x, method, options, labels)
        report = score_neighbours(neighbours, labels, name=method.name)
        reports.append(
            MethodReport(**{**report.__dict__, "seconds": time.perf_counter() - started})
        )
    return EvaluationReport(
        k=options.k,
        metric=options.metric,
        fit=options.fit,
        vectors=x.shape[0],
        categories=dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))),
        singletons=sorted(c for c, s in sizes.items() if s == 1),
        methods=reports,
        source=source or {},
    )


# ---- input ---------------------------------------------------------------------------------


def read_labels(path: Path) -> dict[str, str]:
    """A CSV with a header and the columns file,category -> {file: category}."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            if "file" not in fields or "category" not in fields:
                raise EvaluationError(f"{path}: expected the columns file,category")
            labels: dict[str, str] = {}
            for line, row in enumerate(reader, start=2):
                cleaned = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                name, category = cleaned.get("file", ""), cleaned.get("category", "")
                if not name and not category:
                    continue
                if not name or not category:
                    raise EvaluationError(f"{path}, line {line}: empty file or category")
                if labels.get(name, category) != category:
                    raise EvaluationError(f"{path}, line {line}: {name} has two categories")
                labels[name] = category
    except OSError as exc:
        raise EvaluationError(f"cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationError(f"{path} is not a readable CSV file: {exc}") from exc
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
