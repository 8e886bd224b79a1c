"""`lookalike bench` and the featurisation pipeline it measures. Benchmarks are not timed tests:
these prove the command works and that its JSON has the agreed shape, never how fast it is."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.augment import augment
from bench.colour import labelled_photos, robustness
from bench.colour import table_rows as colour_rows
from bench.data import SyntheticCatalog, calibrate, describe, load_reference
from bench.pipeline import customers_at_once
from bench.run import PLUGGED_SECTIONS, PluggedSection, build_table, format_table
from bench.runtimes import conv_macs
from bench.sync import SHARED_GOAL, measure_sync, shared_rows
from bench.web import table_rows as web_rows
from cli.main import main
from lookalike.settings import Settings
from search import InvalidImageError
from search.fields import clean_product_fields
from search.importer import featurise_files, import_directory
from tests.bench_smoke import check_smoke_results
from tests.conftest import current_backend, open_test_engine, settings_env


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
    engine = open_test_engine(settings, CountingFeaturizer())
    photo = next((Path(__file__).parents[2] / "shared" / "footwear" / "catalog").glob("*.jpg"))
    data = photo.read_bytes()
    pulled = 0

    def endless() -> Iterator[tuple[str, bytes]]:
        nonlocal pulled
        while True:
            pulled += 1
            yield str(pulled), data

    stream = iter(engine.models.prepare_many(endless(), lookahead=8))
    keys = [next(stream)[0] for _ in range(20)]
    assert keys == [str(i) for i in range(1, 21)]  # in order
    assert pulled <= 20 + 8  # never more than `lookahead` ahead of the consumer
    stream.close()  # type: ignore[attr-defined]


def test_pipeline_in_small_batches(
    settings: Settings, catalog_photos: list[Path], tmp_path: Path
) -> None:
    featurizer = CountingFeaturizer()
    engine = open_test_engine(settings, featurizer)
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in catalog_photos[:10]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "broken.jpg").write_bytes(catalog_photos[0].read_bytes()[:300])

    results = list(featurise_files(engine, sorted(folder.iterdir()), batch_size=3))
    assert [path.name for path, _ in results] == sorted(p.name for p in folder.iterdir())
    assert sum(isinstance(r, InvalidImageError) for _, r in results) == 1
    assert featurizer.batches == [3, 3, 3, 1]

    summary = import_directory(engine, folder, batch_size=4)
    assert sorted(summary.added) == sorted(p.stem for p in catalog_photos[:10])
    assert [label for label, _ in summary.skipped] == ["broken.jpg"]
    assert summary.featurised == 10 and len(engine.models.index) == 10
    for photo in catalog_photos[:10]:
        product = engine.catalog.require(photo.stem)
        stored = engine.models.index.product_vectors(product.id)
        expected = engine.models.embed([engine.models.prepare(photo.read_bytes())])[0]
        # The index holds the post-processed vector of exactly what the model gave.
        np.testing.assert_allclose(stored[0], engine.models.to_index_space(expected), atol=1e-6)
    again = import_directory(engine, folder, batch_size=4)
    assert again.featurised == 0 and len(again.unchanged) == 10


def test_customers_at_once_go_through_the_engines_worker(
    settings: Settings, catalog_photos: list[Path]
) -> None:
    """The bench's load figure: concurrent `engine.search_photo` calls, featurised by the
    engine's batching worker (every photo once, in the batches the worker counted)."""
    featurizer = CountingFeaturizer()
    engine = open_test_engine(settings, featurizer)
    for photo in catalog_photos[:4]:
        fields = clean_product_fields(sku=photo.stem, name=photo.stem, price="10", currency="EUR")
        engine.catalog.add(fields, photo.read_bytes())
    featurizer.batches.clear()
    payloads = [photo.read_bytes() for photo in catalog_photos[4:7]]
    load = asyncio.run(customers_at_once(engine, payloads, 7))
    assert load["customers"] == 7 and load["p95_s"] >= load["p50_s"] > 0
    assert sum(featurizer.batches) == 7  # each customer's photo featurised once
    assert load["batches"] == len(featurizer.batches)
    engine.close()


def test_table_from_partial_results() -> None:
    trial = {"cosine": 0.9999, "top8_overlap": 0.97, "refused": None}
    rows = build_table(
        {
            "machine": {"cores": 2, "usable_cores": 2, "gemm_gflops": 330.0, "blas": []},
            "choice": {
                "decision": {
                    "chosen": "openvino-int8",
                    "cpu": "Some CPU, 2 cores",
                    "photos": 32,
                    "weights": "none",
                    "trials": [
                        {**trial, "runtime": "keras", "images_per_s": 16.0},
                        {**trial, "runtime": "openvino-int8", "images_per_s": 64.0},
                        {**trial, "runtime": "onnxruntime", "images_per_s": None},
                    ],
                },
                "seconds": 50.0,
            },
            "runtimes": [
                {"variant": "seed", "runtime": "keras", "images_per_s": 4.0},
                {"variant": "onnxruntime b8", "skipped": "not installed: onnxruntime"},
                {
                    "variant": "auto b32",
                    "runtime": "openvino-int8",
                    "images_per_s": 60.0,
                    "fidelity_vs_float32": {"cosine": 0.99991, "top8_overlap": 0.96, "photos": 32},
                },
            ],
            "pipeline": {"error": "pipeline exited 1 without a result"},
            "startup": {
                "ready_s": 2.5,
                "python_and_imports_s": 0.5,
                "open_engine_s": 0.1,
                "model_load_and_warm_up_s": 1.9,
                "products": 300,
                "runtime": "openvino-int8",
                "rss_ready_mb": 450.0,
                "rss_after_searches_mb": 470.0,
                "peak_rss_mb": 480.0,
                "tensorflow_imported": False,
                "tensorflow_after_searches": False,
            },
            "web": {"error": "web exited 1 without a result"},
        }
    )
    text = format_table(rows)
    assert "21.4 images/s" in text and "not measured" in text and "error" in text
    assert all(set(row) == {"section", "measure", "value", "target", "verdict"} for row in rows)
    values = {(row["section"], row["measure"]): row for row in rows}
    assert "openvino-int8 on Some CPU" in next(r["value"] for r in rows if r["section"] == "auto")
    auto = next(r for r in rows if r["measure"].startswith("auto b32 = openvino-int8"))
    assert "x15.0 seed" in auto["value"] and "cosine 0.99991, top-8 96.0%" in auto["value"]
    assert values[("bot", "TensorFlow imported (openvino-int8)")]["value"].startswith("no")
    goals = {row["measure"]: row for row in rows if row["section"] == "goals"}
    assert len(goals) == 5
    bot = next(row for measure, row in goals.items() if measure.startswith("bot ready"))
    assert bot["verdict"] == "ok" and "2.5 s, 450 MB" in bot["value"]
    # The pipeline failed: its goals are missed, not passed.
    assert [row["verdict"] for m, row in goals.items() if "seed loop" in m] == ["MISSED"] * 2
    # A plugged section (bench.web, bench.sync) that failed gives an error row.
    assert [row["value"] for row in rows if row["section"] == "web"] == [
        "error: web exited 1 without a result"
    ]


def test_the_web_rows_split_the_servers_cpu_into_the_model_and_the_rest() -> None:
    result = {
        "clients": 20,
        "seconds": 60.0,
        "searches": 1200,
        "searches_per_s": 20.0,
        "elapsed_s": 60.0,
        "cores": 2,
        "server_cpu_s": 108.0,  # 90% of 2 cores for 60 s: 90 CPU-ms a search
        "clients_cpu_s": 2.4,
        "batched_images_per_s": 25.0,  # 2 cores / 25 images a second: 80 CPU-ms an image
        "share_of_batched_throughput": 0.8,
        "p50_ms": 900.0,
        "p95_ms": 1100.0,
        "idle_p50_ms": 44.0,
        "in_process_p50_ms": 40.0,
    }
    rows = {row["measure"]: row for row in web_rows(result)}
    cpu = next(row for measure, row in rows.items() if measure.startswith("CPU under load"))
    assert cpu["value"] == (
        "90% / 2% (server 90.0 CPU-ms per search: ~80.0 the model at its batched cost, "
        "~10.0 the rest)"
    )
    share = rows["throughput / batched featurisation"]
    assert share["value"] == "80%" and share["verdict"] == "MISSED"
    idle = next(row for measure, row in rows.items() if measure.startswith("one search, idle"))
    assert idle["verdict"] == "ok"  # 44 / 40 = 1.1x


def test_plugged_sections_run_only_when_their_module_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"web", "sync"} <= {plugged.name for plugged in PLUGGED_SECTIONS}
    assert not PluggedSection("nothing", "bench_nothing_here", "-").available()
    # A module without the two functions (section, table_rows) is not run either.
    assert not PluggedSection("index", "bench.index", "-").available()
    (tmp_path / "bench_example_section.py").write_text(
        "from bench.common import row\n"
        "def section(args):\n"
        "    return {'mode': args['mode']}\n"
        "def table_rows(result):\n"
        "    return [row('example', 'mode', result['mode'])]\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # where the example module is found
    example = PluggedSection("example", "bench_example_section", "-")
    assert example.available()
    result = example.function("section")({"mode": "smoke"})
    assert example.function("table_rows")(result)[0]["value"] == "smoke"


@pytest.mark.slow
@pytest.mark.skipif(
    current_backend() != "postgres",
    reason="on SQLite the installed wheel runs the same smoke (tests/test_wheel.py)",
)
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

    check_smoke_results(json.loads(out.read_text()))


def test_a_customers_photo_is_drawn_from_its_seed_and_photo_alone(footwear: Path) -> None:
    from PIL import Image

    photos = labelled_photos(footwear)
    assert len(photos) == 150 and photos[0].name == "footwear_0000.jpg"
    with Image.open(footwear / "queries" / "search_image_02.jpg") as image:
        source = np.asarray(image.convert("RGB"))
    with Image.open(photos[1]) as image:
        rgb = np.asarray(image.convert("RGB"))
    first, again = augment(rgb, 2, 0, source), augment(rgb, 2, 0, source)
    assert first.pasted and np.array_equal(first.image, again.image)
    assert not np.array_equal(first.image, augment(rgb, 2, 1, source).image)
    assert first.image.shape != rgb.shape  # cropped and scaled
    # The benchmark row: every photo's named colour compared, reproducibly.
    run = robustness(photos[:4], source, seed=0)
    assert run == robustness(photos[:4], source, seed=0)
    assert run["photos"] == 4 and run["pasted"] <= 4 and 0.0 <= run["agreement"] <= 1.0


# An import comparison as the colour section records it without CPU times.
IMPORT_WALL_ONLY = {
    "rounds": 2,
    "photos": 40,
    "with_s": [2.2, 2.4],
    "without_s": [2.0, 2.0],
    "added": 0.15,
}


def test_colour_rows_say_which_goals_are_met() -> None:
    rows = colour_rows(
        {
            "robustness": [
                {"seed": 0, "photos": 150, "pasted": 140, "agreement": 0.92},
                {"seed": 1, "photos": 150, "pasted": 141, "agreement": 0.89},
            ],
            "describe": {
                "photos": 150,
                "p50_ms": 2.5,
                "p90_ms": 4.0,
                "cpu_p50_ms": 2.0,
                "cpu_p90_ms": 3.0,
            },
            "search": {
                "searches": 40,
                "colour_weight": 0.6,
                "with_p50_ms": 61.0,
                "without_p50_ms": 58.0,
                "end_to_end_added_ms": 3.0,
                "parts": 400,
                "cpu_p50_ms": {"describe": 2.5, "with": 4.0, "without": 3.0},
                "wall_p50_ms": {"describe": 5.0, "with": 8.0, "without": 6.0},
                "added_ms": 3.5,
                "added_wall_ms": 7.0,
            },
            "import": IMPORT_WALL_ONLY,
        }
    )
    verdicts = {row["measure"].split(" (")[0]: (row["value"], row["verdict"]) for row in rows}
    assert verdicts["named colour unchanged in a customer's photo"] == ("90.5% (89.0-92.0%)", "ok")
    assert verdicts[
        "what colour adds to a customer search: describing the query photo + ranking with colour"
    ] == ("p50 2.5 ms + (4.0 - 3.0 ms) = +3.5 ms CPU; 5.0 + (8.0 - 6.0) = +7.0 ms wall", "ok")
    assert verdicts["one customer search end to end, with colour vs without"] == (
        "p50 61.0 vs 58.0 ms: +3.0 ms",
        "",
    )
    assert verdicts["`catalog import` of 40 photos with colour vs without"] == (
        "2.30 vs 2.00 s (with 2.20, 2.40; without 2.00, 2.00): +15.0%; the descriptor's own "
        "time, p50 x photos: 5.0%",
        "MISSED",
    )
    # With the imports' CPU times the verdict reads them (the wall times wait for a core).
    by_cpu = colour_rows(
        {
            "import": {
                **IMPORT_WALL_ONLY,
                "with_cpu_s": [3.1, 3.2],
                "without_cpu_s": [3.0, 3.0],
                "added_cpu": 0.05,
            }
        }
    )[0]
    assert (by_cpu["value"], by_cpu["target"], by_cpu["verdict"]) == (
        "2.30 vs 2.00 s (with 2.20, 2.40; without 2.00, 2.00): +15.0%; CPU 3.15 vs 3.00 s: +5.0%",
        "<= 10% more (CPU)",
        "ok",
    )
    assert colour_rows({"error": "colour exited 1"})[0]["value"] == "error: colour exited 1"


def test_products_sharing_photos_are_all_created_and_a_resync_fetches_nothing(
    footwear: Path, tmp_path: Path
) -> None:
    # bench.sync's shared-photos scenario, small: 12 rows over 3 photos, with the stub model.
    args = {"data": str(footwear), "models_dir": str(tmp_path / "models"), "weights": "none"}
    measured = measure_sync(
        {**args, "seed": 1, "workdir": str(tmp_path), "featurizer": "stub", "rows": 12, "photos": 3}
    )
    first, unchanged = measured["first"], measured["unchanged"]
    assert (first["products"], first["featurised"], first["downloaded"]) == (12, 3, 12)
    again = (unchanged["downloaded"], unchanged["featurised"], unchanged["not_modified"])
    assert again == (0, 0, 12)
    goal = shared_rows(measured)[-1]
    assert (goal["target"], goal["verdict"]) == (SHARED_GOAL, "ok")
    assert "12 of 12 products" in goal["value"]
    # The goal is missed when a product is missing or the re-sync fetches a photo again.
    fewer = {**measured, "first": {**first, "products": 11}}
    refetched = {**measured, "unchanged": {**unchanged, "downloaded": 1}}
    assert [shared_rows(m)[-1]["verdict"] for m in (fewer, refetched)] == ["MISSED"] * 2
