# Each target creates or reuses .venv (Python 3.12 via .python-version) and installs the
# locked dependencies itself, so `make run` and `make test` work on a bare machine.
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow test-all test-system lint format conf lock bench clean sysdeps app

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements.lock -e '.[dev,launchers,discovery,viz]'
	touch $(STAMP)

# The main job: the default experiment set (scenarios, paradox curve, regime map, policy grid)
# with figures, tables and report.md in results/reports/<date>/<time>/ (a few minutes).
run: $(STAMP)
	$(BIN)/paradox report

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow and not system"

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

test-all: $(STAMP)
	$(BIN)/pytest

# Tests that need a program or service of the machine (marker `system`: the app in Debian's
# headless chromium, ...); they skip with the reason when it is absent (see `make sysdeps`).
test-system: $(STAMP)
	$(BIN)/pytest -m system

# The live app: Mesa's SolaraViz page on 127.0.0.1 (prints its URL; works offline).
app: $(STAMP)
	$(BIN)/paradox app

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
	/tmp/paradox-lock/bin/python -m pip install --quiet --disable-pip-version-check '.[dev,launchers,discovery,viz]'
	( echo '# Exact versions used by `make` (pip install -c requirements.lock). Regenerate with `make lock`.'; \
	  /tmp/paradox-lock/bin/python -m pip freeze --exclude-editable | grep -v -i '^alignment-paradox-sim' ) > requirements.lock
	rm -rf build  # left by the non-editable install above

# System packages some features need: Debian's chromium and chromium-driver (browser tests of
# the app) and slurm-wlm and munge (the single-node SLURM test). Installed through apt when this
# runs as root on a Debian machine; otherwise it says what is missing and the tests that need
# them skip with that reason. .ci/run calls it before `make test`.
SYSDEPS := chromium chromium-driver slurm-wlm munge
sysdeps:
	@missing=$$(for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "sysdeps: all present ($(SYSDEPS))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "sysdeps: installing $$missing"; \
		( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null ) \
		|| echo "sysdeps: apt-get failed; tests needing $$missing will skip"; \
	else echo "sysdeps: cannot install $$missing (needs root and apt-get); tests needing them will skip"; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
