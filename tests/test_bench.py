"""`lookalike bench` and the featurisation pipeline it measures. Benchmarks are not timed tests:
these prove the command works and that its JSON has the agreed shape, never how fast it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.cli import main
from lookalike.settings import Settings
from search.bench import build_table, conv_macs, format_table
from search.bench_data import SyntheticCatalog, calibrate, describe, load_reference
from search.catalog_import import featurise_files, import_catalog
from search.preprocess import InvalidImageError
from tests.conftest import open_test_service, settings_env


class CountingFeaturizer:
    """A stand-in for VGG16: a vector from the pixels' mean colour, and a record of batches."""

    model_name = "vgg16_avgpool"
    dim = 512

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape[0])
        means = batch.mean(axis=(1, 2))  # (n, 3)
        return np.abs(np.tile(means, (1, 171))[:, :512]).astype(np.float32) + 1.0


def test_vgg16_convolutions_cost_15_35_g_multiply_adds() -> None:
    assert conv_macs() == pytest.approx(15.35e9, rel=1e-3)


def test_synthetic_vectors_look_like_the_reference(footwear: Path) -> None:
    reference = load_reference(footwear / "vgg16_avgpool_reference.npy")
    sigma_centre, sigma_item, stats = calibrate(reference)
    target = describe(reference)
    assert stats["zero_fraction"] == pytest.approx(target["zero_fraction"], abs=0.03)
    assert stats["pair_cos_median"] == pytest.approx(target["pair_cos_median"], abs=0.08)
    assert stats["nn_cos_median"] == pytest.approx(target["nn_cos_median"], abs=0.08)
    vectors, family = SyntheticCatalog(
        reference, families=50, sigma_centre=sigma_centre, sigma_item=sigma_item
    ).draw(1000)
    assert vectors.shape == (1000, 512) and vectors.dtype == np.float32
    assert (vectors >= 0).all() and family.max() < 50


def test_prepare_many_reads_its_input_lazily(settings: Settings) -> None:
    service = open_test_service(settings, CountingFeaturizer())
    photo = next((Path(__file__).parents[2] / "shared" / "footwear" / "catalog").glob("*.jpg"))
    data = photo.read_bytes()
    pulled = 0

    def endless() -> Iterator[tuple[str, bytes]]:
        nonlocal pulled
        while True:
            pulled += 1
            yield str(pulled), data

    stream = iter(service.prepare_many(endless(), lookahead=8))
    keys = [next(stream)[0] for _ in range(20)]
    assert keys == [str(i) for i in range(1, 21)]  # in order
    assert pulled <= 20 + 8  # never more than `lookahead` ahead of the consumer
    stream.close()  # type: ignore[attr-defined]


def test_pipeline_in_small_batches(
    settings: Settings, catalog_photos: list[Path], tmp_path: Path
) -> None:
    featurizer = CountingFeaturizer()
    service = open_test_service(settings, featurizer)
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in catalog_photos[:10]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "broken.jpg").write_bytes(catalog_photos[0].read_bytes()[:300])

    results = list(featurise_files(service, sorted(folder.iterdir()), batch_size=3))
    assert [path.name for path, _ in results] == sorted(p.name for p in folder.iterdir())
    assert sum(isinstance(r, InvalidImageError) for _, r in results) == 1
    assert featurizer.batches == [3, 3, 3, 1]

    summary = import_catalog(service, folder, batch_size=4)
    assert sorted(summary.added) == sorted(p.stem for p in catalog_photos[:10])
    assert [label for label, _ in summary.skipped] == ["broken.jpg"]
    assert summary.featurised == 10 and len(service.index) == 10
    for photo in catalog_photos[:10]:
        product = service.require_product(photo.stem)
        stored = service.index.product_vectors(product.id)
        expected = service.embed([service.prepare(photo.read_bytes())])[0]
        # The index holds the post-processed vector of exactly what the model gave.
        np.testing.assert_allclose(stored[0], service.to_index_space(expected), atol=1e-6)
    again = import_catalog(service, folder, batch_size=4)
    assert again.featurised == 0 and len(again.unchanged) == 10


def test_table_from_partial_results() -> None:
    rows = build_table(
        {
            "machine": {"cores": 2, "usable_cores": 2, "gemm_gflops": 330.0, "blas": []},
            "runtimes": [
                {"variant": "seed", "runtime": "keras", "images_per_s": 4.0},
                {"variant": "onnxruntime b8", "skipped": "not installed: onnxruntime"},
            ],
            "pipeline": {"error": "pipeline exited 1 without a result"},
        }
    )
    text = format_table(rows)
    assert "21.4 images/s" in text and "not measured" in text and "error" in text
    assert all(set(row) == {"section", "measure", "value", "target", "verdict"} for row in rows)


@pytest.mark.slow
def test_bench_smoke_writes_the_table_and_json(
    settings: Settings,
    extractor: object,  # the session's model, already cached under MODELS_DIR
    footwear: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "bench.json"
    code = main(["bench", "--smoke", "--json", str(out), "--data", str(footwear)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "GEMM" in printed.out

    results = json.loads(out.read_text())
    assert {"machine", "runtimes", "pipeline", "startup", "index", "meta", "table"} <= set(results)
    assert results["meta"]["mode"] == "smoke"
    assert results["machine"]["gemm_gflops"] > 0 and results["machine"]["cores"] >= 1
    variants = {r["variant"]: r for r in results["runtimes"]}
    assert variants["seed"]["images_per_s"] > 0
    pipeline = results["pipeline"]
    for part in ("featurise", "import", "search", "load", "stream"):
        assert part in pipeline, pipeline
    assert pipeline["import"]["added"] == pipeline["import"]["images"] > 0
    assert pipeline["load"]["customers"] > 0 and pipeline["load"]["p95_s"] > 0
    assert results["startup"]["ready_s"] > 0 and results["startup"]["rss_ready_mb"] > 0
    sizes = {entry["size"]: entry for entry in results["index"]["sizes"]}
    assert set(sizes) == {300, 10_000}
    for entry in sizes.values():
        for kind in ("exact", "default"):
            assert 0.0 <= entry[kind]["recall_at_8"] <= 1.0
            assert entry[kind]["p99_ms"] >= entry[kind]["p50_ms"] > 0
        assert entry["exact"]["recall_at_8"] == 1.0
    assert sizes[10_000]["default"]["uses_ann"] and not sizes[300]["default"]["uses_ann"]
    measures = [row["measure"] for row in results["table"]]
    assert any("GEMM" in m for m in measures) and any("customers" in m for m in measures)
