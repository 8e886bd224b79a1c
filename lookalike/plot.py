"""The picture of a search: the query photo and its results with their scores."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render to a file

import matplotlib.pyplot as plt
from PIL import Image

from search import SearchResult
from search.featurize import load_rgb


def plot_search(
    query: bytes, result: SearchResult, read_image: Callable[[str], bytes], out: Path
) -> None:
    """Save a grid: the query first, then each result captioned with rank, SKU and scores.
    `read_image(file_name)`: an image file's bytes (the engine's `engine.media.read`)."""
    panels = 1 + len(result.items)
    columns = min(panels, 5)
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.7 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    axes.flat[0].imshow(load_rgb(query))
    axes.flat[0].set_title("query", fontsize=10, fontweight="bold")
    for axis, item in zip(axes.flat[1:], result.items, strict=False):
        with Image.open(io.BytesIO(read_image(item.image.file_name))) as image:
            axis.imshow(image.convert("RGB"))
        price = f"{item.product.price} {item.product.currency}" if item.product.price else ""
        axis.set_title(
            f"#{item.rank} {item.product.sku}\n{price}\n"
            f"distance {item.distance:.3f} · {item.similarity:.0f}%",
            fontsize=8,
        )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    # The layout places the axes but not always their three-line titles (the top row's ran
    # off the top edge): save the box around everything drawn, with a margin.
    figure.savefig(out, dpi=100, bbox_inches="tight", pad_inches=0.2)
    plt.close(figure)
