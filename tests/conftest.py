"""Shared fixtures: the real VGG16 (random weights, fixed seed) built once per session, real
databases with migrations applied, and the shop's real catalogue photos in ../shared.

The database backend is SQLite files (the default) or, with `--backend=postgres` (or
LOOKALIKE_TEST_BACKEND=postgres), one embedded PostgreSQL server started for the session on
127.0.0.1, in which every test folder gets a database of its own (dropped after the test)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from db.media import MediaStore
from lookalike.composition import open_engine
from lookalike.settings import Settings
from search import SearchEngine
from search.featurize.featurizer import Featurizer
from search.featurize.loader import ModelLoader
from tests.model_cache import ModelCache

# Helpers that assert outside test modules still get pytest's detailed failure messages.
pytest.register_assert_rewrite("tests.index_catalogue")

if TYPE_CHECKING:
    from db.embedded_pg import EmbeddedPostgres
    from search.featurize.runtimes.keras import KerasExtractor

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FOOTWEAR = REPO_ROOT.parent / "shared" / "footwear"
MODEL_SEED = 1234
# The session model's runtimes are measured on this many of the shop's photos, this long each
# (the application: 96 photos, 2 s).
SESSION_CALIBRATION_COUNT = 24
SESSION_BENCH_SECONDS = 0.3
BACKENDS = ("sqlite", "postgres")

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
def keras_extractor(models_dir: Path, session_model: ModelLoader) -> KerasExtractor:
    """VGG16 avg-pool with random weights (seed fixed) on float32 Keras, loaded once for the
    whole session: the source of truth the served runtimes are checked against."""
    from search.featurize.runtimes.keras import KerasExtractor

    model = KerasExtractor.load(
        models_dir=models_dir, weights="none", seed=MODEL_SEED, runtime="keras"
    )
    model.warm_up()
    return model


def calibration_spread(catalog_photos: list[Path]) -> list[Path]:
    """The shop's photos the session's model is calibrated and measured on: 24, spread over
    the catalogue."""
    return catalog_photos[:: max(1, len(catalog_photos) // SESSION_CALIBRATION_COUNT)]


def session_model_loader(
    models_dir: Path,
    catalog_photos: list[Path],
    progress: Callable[[str], None] | None = None,
) -> ModelLoader:
    """The application's model loader over the session's models folder, calibrating on 24
    of the shop's photos with short measurements (the application takes 96, 2 s each)."""
    spread = calibration_spread(catalog_photos)
    return ModelLoader(
        models_dir=models_dir,
        weights="none",
        seed=MODEL_SEED,
        calibration_photos=lambda limit: [p.read_bytes() for p in spread[:limit]],
        calibration_count=SESSION_CALIBRATION_COUNT,
        bench_seconds=SESSION_BENCH_SECONDS,
        progress=progress,
    )


def session_model_cache(loader: ModelLoader, catalog_photos: list[Path]) -> ModelCache:
    """The model cache's entry for the session model of `loader` (session_model_loader)."""
    return ModelCache(
        loader.files("vgg16").keras.stem,
        parameters=f"seed={MODEL_SEED} calibration={SESSION_CALIBRATION_COUNT} "
        f"bench_seconds={SESSION_BENCH_SECONDS}",
        photos=calibration_spread(catalog_photos),
    )


@pytest.fixture(scope="session")
def session_model(models_dir: Path, catalog_photos: list[Path]) -> ModelLoader:
    """The session's models folder holding the model and what `auto` made of it on this CPU:
    built (random weights, seed fixed), exported, quantised, its runtimes measured and the
    choice recorded, once per model cache entry (tests/model_cache.py: this CPU, these
    libraries, this code); a later session, such as `make test`'s PostgreSQL pass, copies
    them. Returns the application's model loader over that folder."""
    loader = session_model_loader(models_dir, catalog_photos)
    cache = session_model_cache(loader, catalog_photos)
    with cache.lock():  # another pytest process building the same entry is waited for
        if not cache.restore(models_dir) or loader.current_decision("vgg16") is None:
            loader.decide("vgg16")
            cache.store(models_dir)
    return loader


@pytest.fixture(scope="session")
def extractor(session_model: ModelLoader, keras_extractor: KerasExtractor) -> Featurizer:
    """The model as the application serves it: the runtime `auto` chose by measuring on this
    CPU (recorded beside the model, so every `lookalike` subprocess of the session reuses it),
    run from its exported file without TensorFlow."""
    return session_model("vgg16")


# ---- the database backend ------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("LOOKALIKE_TEST_BACKEND", "sqlite"),
        help="database the tests run on: sqlite files (default) or an embedded PostgreSQL "
        "(also LOOKALIKE_TEST_BACKEND)",
    )


class PostgresDatabases:
    """The test folders' databases on the session's server: one per folder, created the first
    time a folder's URL is asked for, dropped when the test that created it ends."""

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server
        self._by_root: dict[Path, str] = {}
        self._made_in_test: list[Path] | None = None
        self._created = 0

    def url_for(self, root: Path, *, copy_of: Path | None = None, keep: bool = False) -> str:
        """The URL of `root`'s database; the first call creates it, empty, or as a copy of
        `copy_of`'s database (CREATE DATABASE ... TEMPLATE). `keep`: not dropped after the
        current test (session fixtures)."""
        root = root.resolve()
        name = self._by_root.get(root)
        if name is None:
            self._created += 1
            name = f"test_{self._created}"
            template = self._by_root[copy_of.resolve()] if copy_of is not None else None
            started = time.perf_counter()
            self.server.create_database(name, template=template)
            kind = "empty databases" if template is None else "catalogue copies"
            _Backend.create_seconds.setdefault(kind, []).append(time.perf_counter() - started)
            self._by_root[root] = name
            if not keep and self._made_in_test is not None:
                self._made_in_test.append(root)
        return self.server.url(name)

    def freeze_as_template(self, root: Path) -> None:
        """Make `root`'s database a template nobody can connect to any more, so copies of it
        never wait for (or copy in the middle of) somebody's open transaction."""
        from psycopg import sql

        name = sql.Identifier(self._by_root[root.resolve()])
        with self.server.connect_admin() as connection:
            connection.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true").format(
                    name
                )
            )
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (self._by_root[root.resolve()],),
            )

    def begin_test(self) -> None:
        self._made_in_test = []

    def end_test(self) -> None:
        made, self._made_in_test = self._made_in_test or [], None
        for root in made:
            # WITH (FORCE) closes what the test left open (services its fixtures never closed).
            self.server.drop_database(self._by_root.pop(root))


class _Backend:
    """The session's backend; `postgres` is set while a PostgreSQL session runs."""

    name = "sqlite"
    postgres: PostgresDatabases | None = None
    server_start_seconds: float | None = None
    # CREATE DATABASE durations: empty ones, and copies of the imported catalogue.
    create_seconds: dict[str, list[float]] = {}  # noqa: RUF012 - the session's, on purpose


def current_backend() -> str:
    """The backend this run's tests use: "sqlite" or "postgres"."""
    return _Backend.name


def postgres_databases() -> PostgresDatabases | None:
    """The PostgreSQL pass's databases (None in the SQLite pass), for fixtures that copy a
    catalogue of their own."""
    return _Backend.postgres


def database_url_for(root: Path) -> str:
    """The database of a test folder: `root`/lookalike.db with SQLite; with PostgreSQL a
    database of its own on the session's server, created empty the first time."""
    if _Backend.postgres is None:
        return f"sqlite:///{root / 'lookalike.db'}"
    return _Backend.postgres.url_for(root)


def server_scratch_dir() -> Path:
    """A new folder for a PostgreSQL data folder, in the system's temp folder rather than
    pytest's: as root the server runs as another user that must traverse the folders above its
    data, and every pytest session that starts on this machine (CI jobs, other developers)
    makes /tmp/pytest-of-root private again; a running server then crashes at its next
    checkpoint ("could not open file global/pg_control: Permission denied")."""
    return Path(tempfile.mkdtemp(prefix="lookalike-test-pg-"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL (pgvector, fsync off) for the whole run, stopped and deleted at
    its end (a watchdog process stops it even if pytest is killed). The PostgreSQL pass runs
    every test on it; tests/test_postgres.py uses it in the SQLite pass too."""
    from db.embedded_pg import EmbeddedPostgres

    scratch = server_scratch_dir()
    started = time.perf_counter()
    server = EmbeddedPostgres(scratch / "data", fsync=False, max_connections=200)
    try:
        server.start()
        _Backend.server_start_seconds = time.perf_counter() - started
        yield server
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _session_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.config.getoption("backend") != "postgres":
        yield
        return
    _Backend.postgres = PostgresDatabases(request.getfixturevalue("postgres_server"))
    try:
        yield
    finally:
        _Backend.postgres = None


@pytest.fixture(autouse=True)
def _test_databases() -> Iterator[None]:
    """With PostgreSQL, drop the databases a test created once it is over."""
    databases = _Backend.postgres
    if databases is None:
        yield
        return
    databases.begin_test()
    try:
        yield
    finally:
        databases.end_test()


def make_settings(root: Path, models_dir: Path, **overrides: object) -> Settings:
    """Settings for a test: everything under `root`, no .env file read."""
    values: dict[str, object] = {
        # Created on PostgreSQL, so not asked for when the caller brings its own.
        "database_url": overrides.get("database_url") or database_url_for(root),
        "media_dir": root / "media",
        "models_dir": models_dir,
        "model_weights": "none",
        "model_seed": MODEL_SEED,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a `lookalike` subprocess needs to use the same settings: ours, with
    every setting (Settings.as_env) replaced by the test's."""
    return {**os.environ, **settings.as_env(), "TF_CPP_MIN_LOG_LEVEL": "2"}


def open_test_engine(settings: Settings, extractor: Featurizer) -> SearchEngine:
    """The real engine, wired like the application, sharing the session's model."""
    return open_engine(settings, featurizer=lambda _backbone: extractor)


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return make_settings(tmp_path, models_dir)


@pytest.fixture
def engine(settings: Settings, extractor: Featurizer) -> SearchEngine:
    """An empty catalogue in a fresh SQLite file with migrations applied."""
    return open_test_engine(settings, extractor)


@pytest.fixture(scope="session")
def imported_catalog(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    extractor: Featurizer,
    footwear: Path,
) -> Path:
    """A folder holding lookalike.db and media/ after importing all 300 catalogue photos.
    Built once; tests copy it (catalog_settings) before changing anything."""
    from search.importer import import_directory

    root = tmp_path_factory.mktemp("imported")
    if _Backend.postgres is not None:
        _Backend.postgres.url_for(root, keep=True)  # lives for the session, not the first test
    engine = open_test_engine(make_settings(root, models_dir), extractor)
    summary = import_directory(engine, footwear / "catalog")
    assert len(summary.added) == 300, summary.skipped
    engine.close()  # checkpoints the WAL: the folder can be copied as it is
    if _Backend.postgres is not None:
        _Backend.postgres.freeze_as_template(root)
    return root


@pytest.fixture
def catalog_settings(imported_catalog: Path, tmp_path: Path, models_dir: Path) -> Settings:
    """Settings for a private copy of the imported 300-product catalogue."""
    root = tmp_path / "catalog"
    shutil.copytree(imported_catalog, root)  # the media folder (and the SQLite file)
    if _Backend.postgres is not None:
        _Backend.postgres.url_for(root, copy_of=imported_catalog)
    return make_settings(root, models_dir)


@pytest.fixture
def catalog_engine(catalog_settings: Settings, extractor: Featurizer) -> Iterator[SearchEngine]:
    yield open_test_engine(catalog_settings, extractor)


@pytest.fixture
def media(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


# ---- the bot token never appears in a log line, over the whole test run -----------------------

FAKE_TOKENS = ("123456:TEST-TOKEN",)  # tests.fakebotapi's default token
_LOG_SCAN: dict[str, Path] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Record every log line of the run (Telegram and HTTP clients at DEBUG) to one file."""
    import logging

    backend = config.getoption("backend")
    if backend not in BACKENDS:  # LOOKALIKE_TEST_BACKEND bypasses the option's own check
        raise pytest.UsageError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    _Backend.name = backend
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): about SQLite itself (its files, pragmas, backup API); skipped on "
        "PostgreSQL",
    )

    path = Path(tempfile.mkdtemp(prefix="lookalike-logscan-")) / "all.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    for name in ("telegram", "httpx", "httpcore", "bot", "lookalike", "search", "db"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    _LOG_SCAN["path"] = path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _Backend.name == "sqlite":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}".rstrip(": ")))


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {config.getoption('backend')}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _Backend.server_start_seconds is None:
        return
    line = f"embedded PostgreSQL: started in {_Backend.server_start_seconds:.2f} s"
    for kind, seconds in _Backend.create_seconds.items():
        line += f"; {len(seconds)} {kind}, {1000 * sum(seconds) / len(seconds):.0f} ms each"
    terminalreporter.write_line(line)


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
