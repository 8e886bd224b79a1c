"""A non-editable install works: the wheel holds every file of our packages, and the installed
`lookalike evaluate` and `lookalike bench --smoke` run outside the checkout, without it on
the path (a folder named like one of ours elsewhere in site-packages broke this once: tools/).

The dependencies (TensorFlow, OpenVINO, ...) are not installed again: the fresh virtualenv sees
the project venv's site-packages through a line of a .pth file. Python puts such a line on
sys.path but does not process the .pth files in that folder, so the editable install's finder
there (__editable__.lookalike-*.pth, which points at the checkout) never runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bench_smoke import check_smoke_results
from tests.conftest import REPO_ROOT, make_settings, settings_env

pytestmark = pytest.mark.slow

PACKAGES = ("lookalike", "bot", "search", "db", "migrations", "web", "feed", "cli", "bench")
# Not copied to the folder the wheel is built in: big, generated, or not in any package.
NOT_COPIED = {".venv", ".git", "models", "data", "bench-results", "build", "dist"}


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy of the checkout the wheel was built from
    wheel: Path
    python: Path  # the fresh virtualenv's interpreter
    site_packages: Path  # the fresh virtualenv's own
    cwd: Path  # outside the checkout: the commands run here


def _copy_source(target: Path) -> Path:
    """The checkout's files, so the build's build/ and *.egg-info land in a copy, not in the
    tree other people work in."""

    def ignored(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == REPO_ROOT
        return [
            name
            for name in names
            if (top and name in NOT_COPIED)
            or name == "__pycache__"
            or name.endswith((".egg-info", "_cache"))
        ]

    shutil.copytree(REPO_ROOT, target, ignore=ignored)
    return target


def _run(
    *command: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from a copy of the checkout, installed (--no-deps) in a fresh venv."""
    root = tmp_path_factory.mktemp("wheel")
    source = _copy_source(root / "source")
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root, source)
    (wheel,) = root.glob("lookalike-*.whl")

    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = env_dir / "bin" / "python"
    # Installed before the dependencies' folder is visible: pip then finds no other lookalike
    # (the project venv's editable one) to keep or to uninstall.
    _run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel)
    (own,) = env_dir.glob("lib/python*/site-packages")
    (own / "project_venv_dependencies.pth").write_text(
        "".join(f"{folder}\n" for folder in site.getsitepackages()), encoding="utf-8"
    )
    cwd = root / "elsewhere"
    cwd.mkdir()
    assert not cwd.is_relative_to(REPO_ROOT)
    return Installed(source, wheel, python, own, cwd)


@pytest.fixture(scope="module")
def child_env(
    installed: Installed, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The installed commands' environment: a scratch catalogue, the session's models folder
    (MODEL_WEIGHTS=none), and nothing that would put the checkout on the path."""
    root = tmp_path_factory.mktemp("installed-catalogue")
    env = settings_env(make_settings(root, models_dir))
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(key, None)
    env["PATH"] = f"{installed.python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_wheel_holds_every_file_of_our_packages(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    expected = {
        path.relative_to(installed.source).as_posix()
        for package in PACKAGES
        for path in (installed.source / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - names == set()  # e.g. web/static/*, migrations/script.py.mako
    assert {"web/static/index.html", "feed/default_categories.toml"} <= names
    tops = {name.split("/")[0] for name in names if "/" in name}
    assert tops - set(PACKAGES) == {"lookalike-0.1.0.dist-info"}  # no tests/, no tools/


def test_the_installed_packages_come_from_the_wheel(
    installed: Installed, child_env: dict[str, str]
) -> None:
    script = (
        "import importlib, json, sys\n"
        f"files = {{p: importlib.import_module(p).__file__ for p in {PACKAGES!r}}}\n"
        "finders = [type(f).__module__ for f in sys.meta_path]\n"
        "editable = [m for m in sys.modules if m.startswith('__editable__')]\n"
        "print(json.dumps({'files': files, 'path': sys.path, 'finders': finders,"
        " 'editable': editable}))\n"
    )
    done = _run(installed.python, "-c", script, cwd=installed.cwd, env=child_env)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    for package, file in seen["files"].items():
        assert Path(file).is_relative_to(installed.site_packages), (package, file)
    # The dependencies' folder is on the path, its editable finder is not installed.
    assert set(site.getsitepackages()) <= set(seen["path"])
    assert seen["editable"] == [] and not any("editable" in m for m in seen["finders"])
    assert str(REPO_ROOT) not in [str(Path(p or installed.cwd).resolve()) for p in seen["path"]]


def test_evaluate_runs_installed_on_the_reference_vectors(
    installed: Installed, child_env: dict[str, str], footwear: Path
) -> None:
    done = _run(
        installed.python.parent / "lookalike",
        "evaluate",
        "--vectors",
        footwear / "vgg16_avgpool_reference.npy",
        "--names",
        footwear / "vgg16_avgpool_reference.txt",
        "--labels",
        footwear / "labels.csv",
        cwd=installed.cwd,
        env=child_env,
        timeout=300,
    )
    found = re.search(r"what customers get .*: P@8 ([0-9.]+), R@8 ([0-9.]+)", done.stdout)
    assert found, done.stdout
    assert all(0.0 <= float(value) <= 1.0 for value in found.groups())
    plain = re.search(r"^plain +([0-9.]+) ", done.stdout, re.MULTILINE)
    assert plain and 0.0 <= float(plain.group(1)) <= 1.0, done.stdout
    assert "sneaker" in done.stdout  # the per-category table, labels from labels.csv


def test_bench_smoke_runs_installed(
    installed: Installed,
    child_env: dict[str, str],
    footwear: Path,
    extractor: object,  # the session's model and runtime record, which --smoke reuses
) -> None:
    out = installed.cwd / "bench.json"
    done = _run(
        installed.python.parent / "lookalike",
        "bench",
        "--smoke",
        "--data",
        footwear,
        "--json",
        out,
        cwd=installed.cwd,
        env=child_env,
        timeout=800,
    )
    table = done.stdout
    sections = {line.split()[0] for line in table.splitlines()[2:] if line.strip()}
    expected = {"machine", "auto", "featurise", "search", "load", "index", "bot", "goals"}
    assert expected | {"web", "sync", "run"} <= sections, table
    results = json.loads(out.read_text(encoding="utf-8"))
    check_smoke_results(results)  # what tests/test_bench.py checks on PostgreSQL
    assert results["sync"]["stub"]["unchanged"]["not_modified"] == 100  # every photo a 304
    assert results["web"]["searches"] > 0 and results["web"]["errors"] == 0
