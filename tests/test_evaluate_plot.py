"""`lookalike evaluate --colours FILE --images DIR --plot OUT.png`: a grid of a few queries and
their results, each with its named colour's chip, its label and a tick or cross; drawn on real
catalogue photos and their real colour labels (a few of them: the test stays cheap)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from search.evaluation import describe_files, plot_rankings, plot_size
from tests.test_evaluate import no_env, reference_args  # noqa: F401  (no_env: the fixture)

GREEN, RED, FRAME = (0x2E, 0x7D, 0x32), (0xC6, 0x28, 0x28), (0x0B, 0x5C, 0xAD)


def labelled(footwear: Path, count: int) -> list[tuple[str, str]]:
    """The first `count` photos of colours.csv with their main colour by eye."""
    with (footwear / "colours.csv").open(newline="", encoding="utf-8") as handle:
        return [(row["file"], row["colour"]) for row in csv.DictReader(handle)][:count]


def near(pixels: np.ndarray, colour: tuple[int, int, int]) -> bool:
    """Whether any of the (h, w, 3) pixels is within 40 of `colour` on every channel."""
    return bool((np.abs(pixels.astype(int) - colour) <= 40).all(axis=-1).any())


def test_the_plot_is_a_grid_of_queries_and_results_with_ticks_and_crosses(
    footwear: Path, tmp_path: Path
) -> None:
    photos = labelled(footwear, 6)
    files = [name for name, _ in photos]
    labels = [colour for _, colour in photos]
    labels[1] = labels[0]  # query 0's first result: its colour (a tick)
    labels[2] = "silver" if labels[0] != "silver" else "gold"  # its second: another (a cross)
    top = np.array([[(i + 1) % 6, (i + 2) % 6, (i + 3) % 6] for i in range(6)], dtype=np.intp)
    out = tmp_path / "plot.png"
    descriptors = describe_files(footwear / "catalog", files)
    chosen = plot_rankings(
        out, footwear / "catalog", files, top, labels, descriptors, title="t", queries=6
    )
    assert chosen == list(range(6))  # all of them, in file order
    assert plot_size(6, 3) == ((1 + 3) * 160, 6 * 205 + 55)  # 1 + k tiles a row, a row a query
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == plot_size(6, 3)
        pixels = np.asarray(picture.convert("RGB"))
    row = pixels[55:260]  # the first query's row: its frame, then its tick and its cross
    assert near(row[:, :8], FRAME) and not near(row[:, 160:168], FRAME)
    marks = row[150:190]  # the line under the photos: chip, name, tick or cross
    assert near(marks[:, 290:320], GREEN) and not near(marks[:, 290:320], RED)
    assert near(marks[:, 450:480], RED) and not near(marks[:, 450:480], GREEN)


def test_cli_plot(footwear: Path, no_env: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    subset = no_env / "colours.csv"
    with subset.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "colour"])
        writer.writerows(labelled(footwear, 20))
    out = no_env / "rankings.png"
    args = [*reference_args(footwear), "--colours", str(subset), "--images"]
    args += [str(footwear / "catalog"), "--plot", str(out), "--plot-queries", "2"]
    assert main(args) == 0
    assert f"saved to {out}" in capsys.readouterr().out
    with Image.open(out) as picture:
        assert picture.size == plot_size(2, 8) == (9 * 160, 2 * 205 + 55)

    assert main([*reference_args(footwear), "--plot", str(out)]) == 2
    assert "--plot" in capsys.readouterr().err
    assert main([*args[:-1], "0"]) == 2
    err = capsys.readouterr().err
    assert "--plot-queries must be 1 to 50" in err and "Traceback" not in err
