"""Shared fixtures: the real VGG16 (random weights, fixed seed) built once per session, real
SQLite files with migrations applied, and the shop's real catalogue photos in ../shared."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.media import MediaStore
from lookalike.app import open_service
from lookalike.settings import Settings
from search.featurizer import Featurizer
from search.service import SearchService

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FOOTWEAR = REPO_ROOT.parent / "shared" / "footwear"
MODEL_SEED = 1234

pytest_plugins = (
    ["tests.fakebotapi.fixtures"]
    if (Path(__file__).parent / "fakebotapi" / "fixtures.py").is_file()
    else []
)


@pytest.fixture(scope="session")
def footwear() -> Path:
    """../shared/footwear: 300 catalogue photos, 2 queries, the real VGG16 reference vectors."""
    if not (SHARED_FOOTWEAR / "catalog").is_dir():
        pytest.fail(f"the shared catalogue is missing: expected it at {SHARED_FOOTWEAR}")
    return SHARED_FOOTWEAR


@pytest.fixture(scope="session")
def catalog_photos(footwear: Path) -> list[Path]:
    return sorted((footwear / "catalog").glob("*.jpg"))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def extractor(models_dir: Path) -> Featurizer:
    """VGG16 avg-pool with random weights (seed fixed), built once for the whole session."""
    from search.extractor import VGG16Extractor

    model = VGG16Extractor.load(models_dir=models_dir, weights="none", seed=MODEL_SEED)
    model.warm_up()
    return model


def make_settings(root: Path, models_dir: Path, **overrides: object) -> Settings:
    """Settings for a test: everything under `root`, no .env file read."""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{root / 'lookalike.db'}",
        "media_dir": root / "media",
        "models_dir": models_dir,
        "model_weights": "none",
        "model_seed": MODEL_SEED,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a `lookalike` subprocess needs to use the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "MEDIA_"))}
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "MEDIA_DIR": str(settings.media_dir),
            "MODELS_DIR": str(settings.models_dir),
            "MODEL_WEIGHTS": settings.model_weights,
            "MODEL_SEED": str(settings.model_seed),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    return env


def open_test_service(settings: Settings, extractor: Featurizer) -> SearchService:
    """The real service, wired like the application, sharing the session's model."""
    return open_service(settings, featurizer=lambda: extractor)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return make_settings(tmp_path, models_dir)


@pytest.fixture
def service(settings: Settings, extractor: Featurizer) -> SearchService:
    """An empty catalogue in a fresh SQLite file with migrations applied."""
    return open_test_service(settings, extractor)


@pytest.fixture(scope="session")
def imported_catalog(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    extractor: Featurizer,
    footwear: Path,
) -> Path:
    """A folder holding lookalike.db and media/ after importing all 300 catalogue photos.
    Built once; tests copy it (catalog_settings) before changing anything."""
    from search.catalog_import import import_catalog

    root = tmp_path_factory.mktemp("imported")
    service = open_test_service(make_settings(root, models_dir), extractor)
    summary = import_catalog(service, footwear / "catalog")
    assert len(summary.added) == 300, summary.skipped
    service.close()  # checkpoints the WAL: the folder can be copied as it is
    return root


@pytest.fixture
def catalog_settings(imported_catalog: Path, tmp_path: Path, models_dir: Path) -> Settings:
    """Settings for a private copy of the imported 300-product catalogue."""
    root = tmp_path / "catalog"
    shutil.copytree(imported_catalog, root)
    return make_settings(root, models_dir)


@pytest.fixture
def catalog_service(catalog_settings: Settings, extractor: Featurizer) -> Iterator[SearchService]:
    yield open_test_service(catalog_settings, extractor)


@pytest.fixture
def media(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


# ---- the bot token never appears in a log line, over the whole test run -----------------------

FAKE_TOKENS = ("123456:TEST-TOKEN",)  # tests.fakebotapi's default token
_LOG_SCAN: dict[str, Path] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Record every log line of the run (Telegram and HTTP clients at DEBUG) to one file."""
    import logging
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="lookalike-logscan-")) / "all.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    for name in ("telegram", "httpx", "httpcore", "bot", "lookalike", "search", "db"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    _LOG_SCAN["path"] = path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = _LOG_SCAN.get("path")
    if path is None or not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    leaked = [token for token in FAKE_TOKENS if token in text or token.split(":")[1] in text]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaked:
        if reporter is not None:
            reporter.write_line(
                f"FAILED token scan: the bot token appears in the log ({path})", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        lines = text.count("\n")
        reporter.write_line(
            f"token scan: {lines} log lines, no bot token ({text.count('[REDACTED]')} redacted)"
        )
