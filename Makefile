# Each target creates or reuses .venv (Python 3.12 via .python-version) and installs the
# locked dependencies itself, so `make run` and `make test` work on a bare machine.
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow test-all lint format conf lock bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements.lock -e '.[dev,launchers,discovery]'
	touch $(STAMP)

# The main job: the default experiment set (scenarios, paradox curve, regime map, policy grid)
# with figures, tables and report.md in results/reports/<date>/<time>/ (a few minutes).
run: $(STAMP)
	$(BIN)/paradox report

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

test-all: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Engine against the plain-Mesa reference (issue 6): writes benchmarks/results.json and the
# table in benchmarks/README.md. Takes 6 to 20 minutes, with the machine's load; `.venv/bin/python -m benchmarks.bench
# --quick` is a one-minute smoke run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench

# Regenerate conf/ value files and the ODD parameter table from sim/config.py.
conf: $(STAMP)
	$(BIN)/python -m experiments.genconf

# Re-resolve the lock from pyproject.toml's ranges in a throwaway venv.
lock:
	rm -rf /tmp/paradox-lock && $(PYTHON) -m venv /tmp/paradox-lock
	/tmp/paradox-lock/bin/python -m pip install --quiet --disable-pip-version-check '.[dev,launchers,discovery]'
	( echo '# Exact versions used by `make` (pip install -c requirements.lock). Regenerate with `make lock`.'; \
	  /tmp/paradox-lock/bin/python -m pip freeze --exclude-editable | grep -v -i '^alignment-paradox-sim' ) > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
