# Lookalike: `make run` sets up and runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOOKALIKE := $(VENV)/bin/lookalike
CATALOG_DIR ?= ../shared/footwear/catalog
# Product data for those photos (sku,name,price,currency,url,category,image); empty: photos only,
# each product named after its file.
CATALOG_CSV ?= ../shared/footwear/products.csv
QUERY ?= ../shared/footwear/queries/search_image_01.jpg
PYTEST_ARGS ?=
# The tests that touch the database, run a second time on PostgreSQL (an embedded server the
# tests start and stop themselves) once the whole suite has passed on SQLite. Left out: tests
# that never open a database, and tests/test_pgindex*.py, which run on PostgreSQL in both passes.
PG_TESTS ?= tests/test_bench.py tests/test_catalog.py tests/test_cli.py tests/test_live_quality.py \
	tests/test_migrations.py tests/test_postgres.py tests/test_postgres_copy.py tests/test_privacy.py \
	tests/test_quality.py tests/test_reindex.py tests/test_vector_identity.py tests/bot tests/reliability \
	$(wildcard tests/web tests/feed)

.PHONY: setup catalog run serve demo test test-fast lint bench bench-quick translations clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The model built and its runtime chosen before the first import (so the import never measures
# on its own), the catalogue imported with its product data (a no-op when it is already there),
# then the runtime measured on those photos (once; later runs reuse it) and, if that chose
# another runtime than the import ran on, the catalogue featurised again on it: the catalogue's
# vectors and the customers' queries come from the same model and runtime.
catalog: setup
	$(LOOKALIKE) db upgrade
	$(LOOKALIKE) model build
	$(LOOKALIKE) catalog import $(CATALOG_DIR) $(if $(CATALOG_CSV),--csv $(CATALOG_CSV))
	$(LOOKALIKE) model build

# The main job: the Telegram bot over the imported catalogue.
run: catalog
	$(LOOKALIKE) bot

# The website and HTTP API over the imported catalogue: http://127.0.0.1:8080/ (WEB_PORT).
serve: catalog
	$(LOOKALIKE) serve

# Without Telegram: one search from the command line, saved as a picture too.
demo: catalog
	$(LOOKALIKE) search $(QUERY) --plot data/last-search.png

# The two passes run at the same time: one after the other they left a core idle much of the
# time (waiting on subprocesses, servers and timeouts). The PostgreSQL pass writes to a file,
# shown after the SQLite pass's output; make fails if either pass fails. Whichever pass needs
# the model first builds it, the other waits and copies it (tests/model_cache.py). Stopping
# make (Ctrl-C, SIGTERM, or make's own death, even by kill -9) stops both and everything they
# started (tests/passes.py). test-fast: the quick tests, one pass after the other.
test: setup
	exec $(PY) -m tests.passes $(PG_TESTS) -- $(PYTEST_ARGS)

test-fast: setup
	exec $(PY) -m tests.passes --one-by-one $(PG_TESTS) -- -m "not slow" $(PYTEST_ARGS)

# Benchmarks (docs/benchmarks.md): the quick run took 4 min 31 s on 2 quiet cores (model built).
bench: setup
	$(LOOKALIKE) bench --json bench-results/bench.json

bench-quick: setup
	$(LOOKALIKE) bench --quick --json bench-results/quick.json

# The messages marked in bot/ and web/ merged into each language's .po (new ones empty, changed
# ones fuzzy: translate them), then compiled to the .mo files the repository ships, so a fresh
# clone and a wheel need no build step. tests/test_i18n.py fails while a catalogue is incomplete.
translations: setup
	$(PY) -m lookalike.i18n.catalogues update
	$(PY) -m lookalike.i18n.catalogues check

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .test_models_cache
