# Two entry points: `make run` (a ~10-minute search, final training and report) and `make test` (lint + tests).
# Each builds .venv from pyproject.toml on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CIFAR-10: DATA=..., else $HYPERCNN_DATA, else the shared JPEG zip where it exists, else Keras's download.
DATA ?= $(or $(HYPERCNN_DATA),$(wildcard ../shared/data/cifar10-train-jpeg.zip),cifar10)
RUN ?= results/quickstart
# About ten minutes for everything: `hypercnn run` splits the budget itself, from the pace of its
# first trial (the default configuration), between searching the fast space on a 5,000-image subset
# and training the final model; on a slow machine it searches little or not at all.
RUN_FLAGS ?= --space fast --train-size 5000 --val-size 1000 --test-size 2000 \
	--max-epochs 9 --factor 3 --seed 0 --time-budget 10m

.PHONY: run test lint format clean

$(VENV)/.run-deps: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[onnx]'
	touch $@

# The report's browser test drives Debian's Chromium (Playwright's own browser download cannot work
# on machines without the internet); installed here when missing, which needs root (CI runs as root).
$(VENV)/.test-deps: $(VENV)/.run-deps
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

run: $(VENV)/.run-deps
	$(BIN)/hypercnn run --data $(DATA) --out $(RUN) $(RUN_FLAGS)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The tests that run on every Keras backend, run again on JAX (TensorFlow made unimportable there).
BACKEND_NEUTRAL_TESTS := tests/spaces/test_augment_ops.py tests/spaces/test_batch_stats.py \
	tests/spaces/test_device_loop.py tests/spaces/test_spaces.py tests/search/test_jax_backend.py

# Two test processes at a time (pytest-xdist), then the tests that measure wall time against a
# budget, alone, then the backend-neutral ones on JAX. Every part runs; any failing fails.
# The parts share the end-to-end run the tests read (tests/conftest.py: finished_run), built once.
test: lint
	export HYPERCNN_TEST_SHARED=$$(mktemp -d); \
	$(BIN)/pytest -n 2 -m "not serial"; parallel=$$?; \
	$(BIN)/pytest -m serial; serial=$$?; \
	KERAS_BACKEND=jax $(BIN)/pytest -n 2 -m backend_neutral $(BACKEND_NEUTRAL_TESTS); jax=$$?; \
	rm -rf "$$HYPERCNN_TEST_SHARED"; \
	[ $$parallel -eq 0 ] && [ $$serial -eq 0 ] && [ $$jax -eq 0 ]

format: $(VENV)/.test-deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
