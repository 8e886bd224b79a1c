"""Search-quality evaluation: metric arithmetic by hand, leave-one-out, the methods, and
`lookalike evaluate` on a generated folder (real VGG16, random weights) and on the shop's real
VGG16 reference vectors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from search.evaluation.methods import (
    EvaluationError,
    EvaluationOptions,
    Method,
    k_reciprocal_distances,
    leave_one_out_neighbours,
    live_method,
    parse_methods,
)
from search.evaluation.report import evaluate, score_neighbours
from search.featurize.featurizer import Featurizer
from search.index import l2_normalise, pairwise_distances
from tests.conftest import make_settings, settings_env
from tests.images import encode, photo_like

# Six unit vectors on a circle, two categories. Cosine distance grows with the angle between
# them, so neighbours are ordered by angular difference:
#   a0 0°, a1 15°, a2 70° (category A);  b0 40°, b1 105°, b2 115° (category B)
ANGLES = {"a0": 0, "a1": 15, "a2": 70, "b0": 40, "b1": 105, "b2": 115}
NAMES = list(ANGLES)
LABELS = [name[0].upper() for name in NAMES]  # A A A B B B


def circle_vectors() -> np.ndarray:
    radians = np.deg2rad(list(ANGLES.values()))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_metrics_by_hand() -> None:
    # Neighbours by angular difference (query excluded), k = 3; R = 2 relevant for every query,
    # so AP@3 divides by min(3, 2) = 2:
    #   a0: a1 15, b0 40, a2 70    -> hits 1 0 1: P = 2/3, R = 2/2, AP = (1/1 + 2/3) / 2 = 5/6
    #   a1: a0 15, b0 25, a2 55    -> hits 1 0 1: P = 2/3, R = 1,   AP = 5/6
    #   a2: b0 30, b1 35, b2 45    -> hits 0 0 0: P = 0,   R = 0,   AP = 0
    #   b0: a1 25, a2 30, a0 40    -> hits 0 0 0: P = 0,   R = 0,   AP = 0
    #   b1: b2 10, a2 35, b0 65    -> hits 1 0 1: P = 2/3, R = 1,   AP = 5/6
    #   b2: b1 10, a2 45, b0 75    -> hits 1 0 1: P = 2/3, R = 1,   AP = 5/6
    # Means over the 6 queries: P@3 = 4 * 2/3 / 6 = 4/9, R@3 = 4/6 = 2/3, mAP@3 = 4 * 5/6 / 6 = 5/9
    options = EvaluationOptions(k=3)
    neighbours = leave_one_out_neighbours(circle_vectors(), Method("plain"), options)
    index = {name: i for i, name in enumerate(NAMES)}
    expected = {
        "a0": ["a1", "b0", "a2"],
        "a1": ["a0", "b0", "a2"],
        "a2": ["b0", "b1", "b2"],
        "b0": ["a1", "a2", "a0"],
        "b1": ["b2", "a2", "b0"],
        "b2": ["b1", "a2", "b0"],
    }
    for name, nearest in expected.items():
        assert neighbours[index[name]].tolist() == [index[n] for n in nearest], name

    report = score_neighbours(neighbours, LABELS)
    assert report.precision == pytest.approx(4 / 9, abs=1e-12)
    assert report.recall == pytest.approx(2 / 3, abs=1e-12)
    assert report.map == pytest.approx(5 / 9, abs=1e-12)
    # Per category: A = (2/3 + 2/3 + 0) / 3 = 4/9, and B the same; macro = 4/9.
    for category in "AB":
        scores = report.per_category[category]
        assert scores.count == 3
        assert scores.precision == pytest.approx(4 / 9, abs=1e-12)
        assert scores.recall == pytest.approx(2 / 3, abs=1e-12)
        assert scores.map == pytest.approx(5 / 9, abs=1e-12)
    assert report.macro_precision == pytest.approx(4 / 9, abs=1e-12)
    # Confusion: A's 9 neighbours are A A . A A . and B B B -> 4 A, 5 B; B's: 5 A, 4 B.
    assert report.confusion["A"] == pytest.approx({"B": 5 / 9, "A": 4 / 9}, abs=1e-12)
    assert report.confusion["B"] == pytest.approx({"A": 5 / 9, "B": 4 / 9}, abs=1e-12)

    # k = 2: a0 [1 0], a1 [1 0], a2 [0 0], b0 [0 0], b1 [1 0], b2 [1 0]; AP = (1/1) / 2.
    # P@2 = 4 * 1/2 / 6 = 1/3, R@2 = 4 * 1/2 / 6 = 1/3, mAP@2 = 4 * 1/2 / 6 = 1/3.
    two = evaluate(circle_vectors(), LABELS, options=EvaluationOptions(k=2)).plain
    assert (two.precision, two.recall, two.map) == pytest.approx((1 / 3, 1 / 3, 1 / 3), abs=1e-12)


def test_average_precision_rewards_early_hits() -> None:
    # Six items, X X X Y Y Y; k = 4; every query has R = 2 relevant others, so AP@4 divides by
    # min(4, 2) = 2. Hand-made rankings (the query never lists itself):
    #   0 (X): 3 1 4 2 -> hits 0 1 0 1: P = 2/4, R = 2/2, AP = (1/2 + 2/4) / 2 = 1/2
    #   1 (X): 0 2 3 4 -> hits 1 1 0 0: P = 2/4, R = 1,   AP = (1/1 + 2/2) / 2 = 1
    #   2 (X): 0 1 3 4 -> hits 1 1 0 0: AP = 1
    #   3 (Y): 4 5 0 1, 4 (Y): 3 5 0 1, 5 (Y): 3 4 0 1 -> hits 1 1 0 0: AP = 1
    # mAP@4 = (1/2 + 5) / 6 = 11/12; P@4 = 1/2; R@4 = 1; X's mAP@4 = (1/2 + 1 + 1) / 3 = 5/6.
    labels = ["X", "X", "X", "Y", "Y", "Y"]
    neighbours = np.array(
        [[3, 1, 4, 2], [0, 2, 3, 4], [0, 1, 3, 4], [4, 5, 0, 1], [3, 5, 0, 1], [3, 4, 0, 1]]
    )
    report = score_neighbours(neighbours, labels)
    assert report.map == pytest.approx(11 / 12, abs=1e-12)
    assert report.precision == pytest.approx(1 / 2, abs=1e-12)
    assert report.recall == pytest.approx(1.0, abs=1e-12)
    assert report.per_category["X"].map == pytest.approx(5 / 6, abs=1e-12)
    assert report.per_category["Y"].map == pytest.approx(1.0, abs=1e-12)


def test_leave_one_out_excludes_the_query_but_not_its_duplicate() -> None:
    rng = np.random.default_rng(3)
    base = rng.random((5, 8))
    vectors = np.concatenate([base, base[:1]])  # row 5 is an exact copy of row 0
    for method in parse_methods("all"):
        neighbours = leave_one_out_neighbours(
            vectors, method, EvaluationOptions(k=3), ["a", "b"] * (len(vectors) // 2)
        )
        assert all(i not in row for i, row in enumerate(neighbours.tolist())), method.name
    plain = leave_one_out_neighbours(vectors, Method("plain"), EvaluationOptions(k=3))
    assert plain[0, 0] == 5 and plain[5, 0] == 0  # each finds its copy first, never itself


def test_singleton_categories_are_distractors_only() -> None:
    vectors = circle_vectors()
    labels = ["A", "A", "A", "B", "B", "C"]  # C has one item: nothing to find for it
    report = evaluate(vectors, labels, options=EvaluationOptions(k=2))
    assert report.singletons == ["C"]
    assert set(report.plain.per_category) == {"A", "B"}
    assert report.categories == {"A": 3, "B": 2, "C": 1}


def test_method_names() -> None:
    assert Method.parse("center+SQRT+qe").name == "sqrt+centre+qe"
    assert Method.parse("plain") == Method("plain")
    assert [m.name for m in parse_methods("none")] == ["plain"]
    assert [m.name for m in parse_methods("centre,qe")] == ["plain", "centre", "qe"]
    assert parse_methods("all")[0].name == "plain"
    for bad in ("qe+krr", "sqrt+sqrt", "plain+qe", "fancy"):
        with pytest.raises(EvaluationError):
            Method.parse(bad)


def test_live_method_follows_the_settings() -> None:
    defaults = {"postprocess": "sqrt-centre", "query_expansion": 3, "infer_category": True}
    assert live_method(**defaults).name == "sqrt+centre+qe+cat"  # what the engine runs
    assert live_method(**defaults, has_categories=False).name == "sqrt+centre+qe"
    assert live_method(**{**defaults, "infer_category": False}).name == "sqrt+centre+qe"
    off = {"postprocess": "none", "query_expansion": 0, "infer_category": False}
    assert live_method(**off).name == "plain"
    assert live_method(**{**off, "query_expansion": 5}).name == "qe"


def test_honest_fit_refits_without_the_query() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.random((12, 6))
    options = EvaluationOptions(k=3, fit="loo")
    got = leave_one_out_neighbours(vectors, Method.parse("centre"), options)
    unit = l2_normalise(vectors)
    for i in range(12):
        mean = np.delete(unit, i, axis=0).mean(axis=0)  # the query never enters the mean
        distances = pairwise_distances(unit[i : i + 1] - mean, unit - mean)[0]
        distances[i] = np.inf
        assert got[i].tolist() == np.argsort(distances, kind="stable")[:3].tolist()


def test_k_reciprocal_separates_clusters() -> None:
    rng = np.random.default_rng(11)
    centres = np.eye(4)[:2] * 5.0
    vectors = np.concatenate([c + rng.normal(0, 0.3, size=(10, 4)) for c in centres])
    distances = k_reciprocal_distances(vectors, k1=5, k2=2)
    assert distances.shape == (20, 20) and np.isfinite(distances).all()
    labels = ["c0"] * 10 + ["c1"] * 10
    report = evaluate(vectors, labels, [Method.parse("krr")], EvaluationOptions(k=5, krr_k1=5))
    assert report.plain.precision == 1.0


def test_bad_options() -> None:
    with pytest.raises(EvaluationError, match="k must be"):
        evaluate(circle_vectors(), LABELS, options=EvaluationOptions(k=6))
    with pytest.raises(EvaluationError, match="labels"):
        evaluate(circle_vectors(), LABELS[:5])


# ---- the command line ----------------------------------------------------------------------


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    return tmp_path


def reference_args(footwear: Path) -> list[str]:
    return [
        "evaluate",
        "--vectors",
        str(footwear / "vgg16_avgpool_reference.npy"),
        "--names",
        str(footwear / "vgg16_avgpool_reference.txt"),
        "--labels",
        str(footwear / "labels.csv"),
    ]


def test_cli_on_the_real_reference_vectors(
    footwear: Path, no_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = no_env / "charts" / "precision.png"
    args = [*reference_args(footwear), "--postprocess", "all", "--json", "--chart", str(chart)]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["k"] == 8 and payload["metric"] == "cosine" and payload["vectors"] == 300
    assert payload["categories"] == {
        "sneaker": 103,
        "rain_boot": 73,
        "heel": 61,
        "sandal": 39,
        "heeled_sandal": 17,
        "boot": 7,
    }
    methods = {m["name"]: m for m in payload["methods"]}
    assert payload["methods"][0]["name"] == "plain"
    assert set(methods) == {
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
    }
    # Measured: plain cosine P@8 = 1983 / 2400 = 0.82625; mAP@8 0.7885.
    plain = methods["plain"]
    assert plain["precision_at_k"] == pytest.approx(0.82625, abs=0.003)
    assert plain["map_at_k"] == pytest.approx(0.7885, abs=0.003)
    assert plain["per_category"]["sneaker"]["precision_at_k"] == pytest.approx(0.985, abs=0.01)
    assert sum(plain["confusion"]["boot"].values()) == pytest.approx(1.0)
    # What the post-processing study found (docs/evaluation.md): centring and query
    # expansion help (0.8717 measured), PCA whitening on 300 images hurts.
    assert methods["sqrt+centre"]["precision_at_k"] > plain["precision_at_k"] + 0.02
    assert methods["sqrt+centre+qe"]["precision_at_k"] == pytest.approx(0.8717, abs=0.005)
    assert methods["whiten"]["precision_at_k"] < plain["precision_at_k"]
    # Category inference, as the live search does it, on top: 0.8979 measured.
    assert methods["sqrt+centre+qe+cat"]["precision_at_k"] == pytest.approx(0.8979, abs=0.005)
    assert payload["best"] == "sqrt+centre+qe+cat"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(chart) as image:
        assert image.width > 400 and image.height > 300


def test_cli_scores_what_the_live_search_runs_by_default(
    footwear: Path,
    no_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --postprocess: plain and the live chain; its figure is the first one printed."""
    monkeypatch.setenv("POSTPROCESS", "sqrt-centre")
    monkeypatch.setenv("QUERY_EXPANSION", "3")
    monkeypatch.setenv("INFER_CATEGORY", "true")
    assert main([*reference_args(footwear), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in payload["methods"]] == ["plain", "sqrt+centre+qe+cat"]
    assert payload["live"] == "sqrt+centre+qe+cat"
    assert payload["methods"][1]["precision_at_k"] == pytest.approx(0.8979, abs=0.005)

    assert main(reference_args(footwear)) == 0
    scored = [line for line in capsys.readouterr().out.splitlines() if re.search(r"0\.\d{4}", line)]
    assert scored[0].startswith(
        "what customers get (the live search, sqrt+centre+qe+cat): P@8 0.8979"
    )

    monkeypatch.setenv("INFER_CATEGORY", "false")
    assert main([*reference_args(footwear), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["live"] == "sqrt+centre+qe"
    assert payload["methods"][1]["precision_at_k"] == pytest.approx(0.8717, abs=0.005)


def test_cli_table(footwear: Path, no_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*reference_args(footwear), "--postprocess", "sqrt+centre", "-k", "4"]) == 0
    out = capsys.readouterr().out
    assert "P@4" in out and "mAP@4" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert float(lines["plain"][1]) == pytest.approx(0.848, abs=0.005)
    assert "confusion, sqrt+centre" in out and "TRUE \\ NEIGHBOUR" in out


def test_cli_bad_input(footwear: Path, no_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--vectors", str(footwear / "vgg16_avgpool_reference.npy")]) == 2
    assert "--names" in capsys.readouterr().err
    assert main([*reference_args(footwear), str(no_env)]) == 2
    assert "not both" in capsys.readouterr().err
    labels = no_env / "labels.csv"
    labels.write_text("file,category\nfootwear_0000.jpg,sneaker\n", encoding="utf-8")
    args = reference_args(footwear)
    args[args.index("--labels") + 1] = str(labels)
    assert main(args) == 2
    assert "299 vector(s) have no label" in capsys.readouterr().err
    assert main([*reference_args(footwear), "--postprocess", "qe+krr"]) == 2
    assert main([*reference_args(footwear), "-k", "300"]) == 2


def test_cli_folder_with_real_vgg16(
    extractor: Featurizer,  # the session's model, cached under MODELS_DIR
    models_dir: Path,
    no_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One sub-folder per category, featurised by VGG16 (random weights: the scores mean
    nothing visually, the mechanics are what is tested)."""
    folder = no_env / "photos"
    for category, seeds in (("striped", (1, 2, 3)), ("plain", (4, 5, 6))):
        (folder / category).mkdir(parents=True)
        for seed in seeds:
            image = photo_like(120, 90, seed=seed)
            (folder / category / f"{seed}.jpg").write_bytes(encode(image, "JPEG"))
    (folder / "plain" / "notes.txt").write_text("not a photo", encoding="utf-8")
    (folder / "loose.jpg").write_bytes(encode(photo_like(seed=9), "JPEG"))  # not in a category
    (folder / "plain" / ".hidden.jpg").write_bytes(b"")
    # The configured model: the session's VGG16, loaded from the MODELS_DIR cache.
    for key, value in settings_env(make_settings(no_env, models_dir)).items():
        monkeypatch.setenv(key, value)

    chart = no_env / "folder.png"
    args = ["evaluate", str(folder), "-k", "2", "--batch-size", "4", "-q", "--json"]
    saved = no_env / "vectors.npy"
    assert (
        main(
            [
                *args,
                "--postprocess",
                "centre,qe",
                "--chart",
                str(chart),
                "--save-vectors",
                str(saved),
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["source"]["model"] == "vgg16_avgpool"
    assert np.load(saved).shape == (6, 512)
    assert len(saved.with_suffix(".txt").read_text().split()) == 6
    assert payload["vectors"] == 6
    assert payload["categories"] == {"plain": 3, "striped": 3}
    assert [s["file"] for s in payload["skipped"]] == ["plain/notes.txt"]
    assert [m["name"] for m in payload["methods"]] == ["plain", "centre", "qe"]
    for method in payload["methods"]:
        for key in ("precision_at_k", "recall_at_k", "map_at_k"):
            assert 0.0 <= method[key] <= 1.0 and not math.isnan(method[key])
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--backbone", "alexnet"]) == 2
    assert "unknown backbone 'alexnet'" in capsys.readouterr().err


def test_category_inference_step_restricts_to_the_majority_category() -> None:
    """Hand-computed: unit vectors at angles (degrees) a0=0, a1=10, a2=20 (category A),
    b0=15, b1=100 (B); k=3, cosine ranks by angle. a0's top 3 are a1, b0, a2 (two As): the cat
    step moves b0 behind the As -> a1, a2, b0. b1's top 3 are a2 (80), b0 (85), a1 (90): two
    As, so it is (wrongly) restricted to A -> a2, a1, a0, and its precision drops to 0."""
    angles = np.radians([0.0, 10.0, 20.0, 15.0, 100.0])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (5, 2)
    labels = ["A", "A", "A", "B", "B"]
    options = EvaluationOptions(k=3)
    plain = leave_one_out_neighbours(vectors, Method.parse("plain"), options, labels)
    cat = leave_one_out_neighbours(vectors, Method.parse("cat"), options, labels)
    assert plain[0].tolist() == [1, 3, 2] and cat[0].tolist() == [1, 2, 3]
    assert plain[4].tolist() == [2, 3, 1] and cat[4].tolist() == [2, 1, 0]
    assert Method.parse("cat+sqrt+centre").name == "sqrt+centre+cat"
    with pytest.raises(EvaluationError):
        leave_one_out_neighbours(vectors, Method.parse("cat"), options)  # no labels
    report = evaluate(vectors, labels, [Method.parse("plain"), Method.parse("cat")], options)
    # precision@3 per query, plain / cat: a0, a1, a2 2/3 / 2/3 (same sets, reordered);
    # b0 0 / 0 (its neighbours are all As); b1 1/3 / 0.
    assert report.methods[0].precision == pytest.approx((3 * 2 / 3 + 0 + 1 / 3) / 5)
    assert report.methods[1].precision == pytest.approx((3 * 2 / 3 + 0 + 0) / 5)


def test_cli_colours_score_the_live_chain_with_its_colour_blend(
    footwear: Path, no_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The 150 colour-labelled photos as the catalogue; the live search measured the same figures
    # through the engine (docs/evaluation.md, "Colour"): with colour 0.468 / 0.420 / 0.869;
    # this command 0.4658 / 0.4183 / 0.8692.
    rankings = no_env / "rankings.json"
    colour_args = ["--colours", str(footwear / "colours.csv")]
    colour_args += ["--images", str(footwear / "catalog"), "--rankings", str(rankings)]
    assert main([*reference_args(footwear), *colour_args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)["colour"]
    assert payload["photos"] == 150 and payload["colour_weight"] == 0.6
    scores = {(m["method"], m["colour_weight"]): m for m in payload["methods"]}
    live = scores[(payload["live"], 0.6)]
    before = scores[(payload["live"], 0.0)]
    assert live["colour_precision"] >= 0.46 and live["category_colour_precision"] >= 0.41
    assert live["category_precision"] >= 0.86
    assert before["colour_precision"] < 0.30 and before["category_colour_precision"] < 0.26
    written = json.loads(rankings.read_text(encoding="utf-8"))
    assert written["method"] == payload["live"] and written["k"] == 8
    labelled = {line.split(",")[0] for line in (footwear / "colours.csv").open()} - {"file"}
    assert set(written["rankings"]) == labelled
    for query, found in written["rankings"].items():
        assert len(found) == 8 and query not in found and set(found) <= labelled


def test_cli_colours_bad_input(
    footwear: Path, no_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*reference_args(footwear), "--colours", str(footwear / "colours.csv")]) == 2
    assert "--colours needs --images" in capsys.readouterr().err
    bad = no_env / "bad.csv"
    bad.write_text("file,colour\nfootwear_0000.jpg,mauve\n", encoding="utf-8")
    args = [*reference_args(footwear), "--colours", str(bad), "--images", str(no_env)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'mauve' is not one of" in err and "Traceback" not in err
