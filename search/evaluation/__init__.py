"""Search quality, measured in the open: leave-one-out precision, recall and mAP@k per category
for every method (post-processing, re-ranking, category inference), on labelled vectors or on
a folder of labelled photos featurised with the served model. `lookalike evaluate` is its door;
docs/evaluation.md has the figures.

- search.evaluation.report: `evaluate` and the reports it returns;
- search.evaluation.methods: the methods compared and the live chain (`live_method`);
- search.evaluation.colours: colour P@k of each method with the live colour blend;
- search.evaluation.plot: a few queries' rankings with their colour chips, as a picture;
- search.evaluation.inputs: labels, vectors and folders read as the evaluation needs them.
"""

from search.errors import EvaluationError
from search.evaluation.colours import (
    ColourScores,
    colour_neighbours,
    describe_files,
    read_colour_labels,
    score_colours,
)
from search.evaluation.inputs import (
    FolderData,
    featurise_folder,
    labels_for,
    read_labels,
    read_vectors,
)
from search.evaluation.methods import (
    ALL_METHODS,
    EvaluationOptions,
    Fit,
    Method,
    leave_one_out_neighbours,
    live_method,
    parse_methods,
)
from search.evaluation.plot import plot_rankings, plot_size
from search.evaluation.report import (
    CategoryScores,
    EvaluationReport,
    MethodReport,
    evaluate,
    score_neighbours,
)

__all__ = [
    "ALL_METHODS",
    "CategoryScores",
    "ColourScores",
    "EvaluationError",
    "EvaluationOptions",
    "EvaluationReport",
    "Fit",
    "FolderData",
    "Method",
    "MethodReport",
    "colour_neighbours",
    "describe_files",
    "evaluate",
    "featurise_folder",
    "labels_for",
    "leave_one_out_neighbours",
    "live_method",
    "parse_methods",
    "plot_rankings",
    "plot_size",
    "read_colour_labels",
    "read_labels",
    "read_vectors",
    "score_colours",
    "score_neighbours",
]
