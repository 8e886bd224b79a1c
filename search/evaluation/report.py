"""Search quality: leave-one-out precision@k, recall@k and mAP@k on a labelled catalogue.

Every labelled vector is used once as the query against all the others (leave-one-out: the
query itself is never among its own results, by position, so an exact duplicate of it still
counts). A neighbour is relevant when it has the query's category. The methods compared
(post-processing, re-ranking, category inference) are in search.evaluation.methods; the inputs
(labels, vectors, a folder of images) in search.evaluation.inputs.

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
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from search.evaluation.methods import (
    EvaluationError,
    EvaluationOptions,
    Fit,
    Method,
    leave_one_out_neighbours,
)
from search.index import Metric

__all__ = [
    "CategoryScores",
    "EvaluationReport",
    "MethodReport",
    "evaluate",
    "score_neighbours",
]


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
    live_name: str | None = None  # the method the live search runs, when it was scored

    @property
    def plain(self) -> MethodReport:
        return self.methods[0]

    @property
    def live(self) -> MethodReport | None:
        """The scores of what customers get (search.evaluation.methods.live_method), if scored."""
        return next((m for m in self.methods if m.name == self.live_name), None)

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
            "live": self.live_name if self.live is not None else None,
            "methods": [m.to_dict() for m in self.methods],
        }


def evaluate(
    vectors: npt.ArrayLike,
    labels: Sequence[str],
    methods: Sequence[Method] = (Method("plain"),),
    options: EvaluationOptions | None = None,
    *,
    source: dict[str, Any] | None = None,
    live: Method | None = None,
) -> EvaluationReport:
    """Leave-one-out scores of each method on (n, d) vectors with n category labels; `live`
    (one of the methods, see search.evaluation.methods.live_method) is marked as the method the
    live search runs."""
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
        live_name=live.name if live is not None else None,
    )
