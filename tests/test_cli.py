"""The `lookalike` command line, run the way people run it: in-process through main() for
most commands, as a real subprocess where a new process is the point."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cli.main import main
from lookalike.settings import Settings
from tests.conftest import REPO_ROOT, settings_env


@pytest.fixture
def cli_env(
    catalog_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    """main() reads Settings from the environment, pointed at a copy of the catalogue."""
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    for key, value in settings_env(catalog_settings).items():
        monkeypatch.setenv(key, value)
    return catalog_settings


def run_cli(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=settings_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def media_count(settings: Settings) -> int:
    return sum(1 for p in settings.media_dir.rglob("*") if p.is_file())


def test_search_json_and_plot(
    cli_env: Settings,
    catalog_photos: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo = catalog_photos[42]
    plot = tmp_path / "out" / "search.png"
    assert main(["search", str(photo), "--json", "--plot", str(plot)]) == 0
    payload = json.loads(capsys.readouterr().out)
    results = payload["results"]
    assert len(results) == 8
    assert results[0]["sku"] == photo.stem and results[0]["distance"] < 1e-6
    assert [r["rank"] for r in results] == list(range(1, 9))
    assert all(Path(r["image"]).is_file() for r in results)
    with Image.open(plot) as image:
        assert image.width > 600 and image.height > 300
        # A blank margin all round: no title runs off the top edge (nor anything off another).
        grey = image.convert("L")
        edges = [grey.crop(box) for box in ((0, 0, grey.width, 10), (0, 0, 10, grey.height))]
        edges += [grey.crop((0, grey.height - 10, grey.width, grey.height))]
        edges += [grey.crop((grey.width - 10, 0, grey.width, grey.height))]
        assert all(edge.getextrema() == (255, 255) for edge in edges)


def test_search_table_and_k(
    cli_env: Settings, catalog_photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", str(catalog_photos[3]), "-k", "3"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(lines) == 3
    assert lines[0].split()[1] == catalog_photos[3].stem
    assert "SIMILARITY" in out


def make_bad_files(folder: Path, real_jpeg: bytes) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "text": folder / "notes.jpg",
        "truncated": folder / "cut.jpg",
        "empty": folder / "empty.jpg",
        "bomb": folder / "bomb.png",
    }
    files["text"].write_text("this is not a photo\n")
    files["truncated"].write_bytes(real_jpeg[: len(real_jpeg) // 2])
    files["empty"].write_bytes(b"")
    # 20000 x 20000 mode "1" PNG: 50 MB of pixels, a few KB on disk.
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")
    files["bomb"].write_bytes(buffer.getvalue())
    return files


@pytest.mark.parametrize("kind", ["text", "truncated", "empty", "bomb"])
def test_bad_files_give_one_line_error_and_change_nothing(
    cli_env: Settings,
    catalog_photos: list[Path],
    tmp_path: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = make_bad_files(tmp_path / "bad", catalog_photos[0].read_bytes())[kind]
    before = media_count(cli_env)
    for args in (
        ["search", str(bad)],
        ["catalog", "add", str(bad), "--sku", "BAD-1", "--name", "Bad", "--price", "10"],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        assert "Traceback" not in err[0]
    assert main(["catalog", "show", "BAD-1"]) == 2
    assert "no product" in capsys.readouterr().err
    assert media_count(cli_env) == before


def test_catalog_commands_and_export(
    cli_env: Settings,
    catalog_photos: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_photo = tmp_path / "new.png"
    Image.open(catalog_photos[9]).rotate(7).save(new_photo)
    assert (
        main(
            [
                "catalog",
                "add",
                str(new_photo),
                "--sku",
                "NEW-9",
                "--name",
                "New <b>boot</b>",
                "--price",
                "€59,90",
                "--category",
                "Boot",
                "--url",
                "https://shop.example/n9",
            ]
        )
        == 0
    )
    assert "added NEW-9" in capsys.readouterr().out
    assert main(["catalog", "show", "NEW-9", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["price"] == "59.90" and shown["category"] == "boot"
    assert shown["name"] == "New <b>boot</b>"  # stored verbatim, escaped where shown as HTML
    assert (
        main(["catalog", "add", str(new_photo), "--sku", "X", "--name", "n", "--price", "abc"]) == 2
    )
    assert "price" in capsys.readouterr().err
    assert main(["catalog", "stock", "NEW-9", "out"]) == 0
    assert "out of stock" in capsys.readouterr().out
    assert main(["catalog", "remove", catalog_photos[1].stem]) == 0
    capsys.readouterr()
    assert main(["catalog", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 300  # 301 products, one removed
    assert {p["sku"]: p["colour"] for p in listed}["footwear_0002"] == "red"  # from its photo
    assert main(["catalog", "list", "--all"]) == 0
    assert "301 product(s)" in capsys.readouterr().out
    export = tmp_path / "export.csv"
    assert main(["catalog", "export", "-o", str(export), "--all"]) == 0
    rows = list(csv.DictReader(export.open()))
    assert len(rows) == 301
    by_sku = {row["sku"]: row for row in rows}
    assert by_sku["NEW-9"]["in_stock"] == "0" and by_sku[catalog_photos[1].stem]["removed"] == "1"
    assert by_sku["footwear_0002"]["colour"] == "red"
    assert main(["catalog", "remove", "NO-SUCH-SKU"]) == 2
    assert "no product" in capsys.readouterr().err


def test_changes_hold_in_a_new_process(cli_env: Settings, catalog_photos: list[Path]) -> None:
    """Remove through one process; a separate `lookalike search` no longer shows it."""
    photo = catalog_photos[17]
    assert main(["catalog", "remove", photo.stem]) == 0
    done = run_cli("search", str(photo), "--json", settings=cli_env)
    assert done.returncode == 0, done.stderr
    skus = [r["sku"] for r in json.loads(done.stdout)["results"]]
    assert photo.stem not in skus and len(skus) == 8
    assert main(["catalog", "restore", photo.stem]) == 0
    done = run_cli("search", str(photo), "--json", "-k", "1", settings=cli_env)
    assert [r["sku"] for r in json.loads(done.stdout)["results"]] == [photo.stem]


def test_import_progress_summary_and_rerun(
    settings: Settings, catalog_photos: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    for photo in catalog_photos[:4]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "readme.txt").write_text("not an image, not even looked at")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    first = run_cli("catalog", "import", str(folder), settings=settings)
    assert first.returncode == 0, first.stderr
    assert "added 4" in first.stdout and "skipped 1" in first.stdout
    assert "broken.jpg" in first.stdout
    second = run_cli("catalog", "import", str(folder), settings=settings)
    assert "added 0" in second.stdout and "unchanged 4" in second.stdout
    assert "0 featurised" in second.stdout


@pytest.mark.sqlite_only(reason="`db backup` is SQLite's online backup API")
def test_backup_is_consistent_and_restorable(
    cli_env: Settings,
    catalog_photos: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backup = tmp_path / "backup" / "copy.db"
    assert main(["db", "backup", str(backup)]) == 0
    assert backup.is_file() and not Path(f"{backup}-wal").exists()
    capsys.readouterr()
    # Restore: point DATABASE_URL at the copy; the same search gives the same answer.
    assert main(["search", str(catalog_photos[5]), "--json"]) == 0
    original = json.loads(capsys.readouterr().out)["results"]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{backup}")
    assert main(["search", str(catalog_photos[5]), "--json"]) == 0
    restored = json.loads(capsys.readouterr().out)["results"]
    assert [r["sku"] for r in restored] == [r["sku"] for r in original]


def test_backup_of_a_postgres_database_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/lookalike")
    assert main(["db", "backup", str(tmp_path / "copy.db")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "SQLite" in err and "\n" not in err
    assert not (tmp_path / "copy.db").exists()


def test_invalid_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOP_K", "zero")
    monkeypatch.setenv("ADMIN_IDS", "12,alice")
    assert main(["db", "current"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid settings") and "TOP_K" in err and "ADMIN_IDS" in err
    assert "\n" not in err


def test_bot_without_token_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert main(["bot"]) != 0
    err = capsys.readouterr().err
    assert "TELEGRAM_BOT_TOKEN" in err and "Traceback" not in err
    assert os.environ.get("TELEGRAM_BOT_TOKEN") is None


def test_model_list_shows_the_runtime_auto_chose_and_its_figures(
    cli_env: Settings, extractor: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.featurize import ModelLoader

    decision = ModelLoader(
        models_dir=cli_env.models_dir, weights="none", seed=cli_env.model_seed
    ).current_decision("vgg16")
    assert decision is not None
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert f"auto: {decision.chosen}" in out and "300/300" in out
    assert "RUNTIME" in out and "IMAGES/S" in out and "TOP-8 KEPT" in out
    for trial in decision.trials:  # every runtime measured, with its verdict
        verdict = "chosen" if trial.runtime == decision.chosen else trial.refused or "passed"
        assert any(
            line.startswith(trial.runtime) and line.rstrip().endswith(verdict)
            for line in out.splitlines()
        ), (trial, out)
    assert "random weights: the gate checks the mechanism" in out


def test_model_build_reuses_this_cpus_choice(
    cli_env: Settings, extractor: object, capsys: pytest.CaptureFixture[str]
) -> None:
    record = next(cli_env.models_dir.glob("vgg16_avgpool-random-seed*.runtime.json"))
    before = record.read_text()
    assert main(["model", "build"]) == 0
    out = capsys.readouterr().out
    chosen = json.loads(before)["chosen"]
    assert f"runtime: {chosen}" in out and f"on {chosen}" in out
    assert record.read_text() == before  # not measured again


def test_an_explicit_runtime_is_shown_as_such(
    cli_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODEL_RUNTIME", "keras")
    assert main(["model", "list"]) == 0
    assert "keras (MODEL_RUNTIME)" in capsys.readouterr().out
