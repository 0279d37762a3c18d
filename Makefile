# The README's two commands: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install run test lint typecheck unit bench clean serve stop hooks security audit dist wheel-check

install: $(STAMP)

# Bytecode is compiled at install (--compile-bytecode, compileall): where Python may not
# write it (PYTHONDONTWRITEBYTECODE, a read-only site-packages) every command would
# otherwise compile Prefect, Pandera and pandas from source: ~20 s of CPU per `adjudicate
# run` on this machine, two thirds of an empty run's time (docs/benchmarks.md).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --python $(BIN)/python -c constraints.txt --compile-bytecode \
		-e '.[dev]' --config-settings editable_mode=compat
	$(BIN)/python -m compileall -q claimsflow schemas tasks flows adjudicate
	touch $(STAMP)

# The nightly run, then the examiners' review files of data/reviews/ in name order
# (the sample's decides some of the cases the run pends; a file seen before is SKIPPED).
# Exit 0 or 1 (something rejected) is a run that worked; anything else stops here.
run: install
	$(BIN)/adjudicate generate --out data --if-empty
	$(BIN)/adjudicate run --quiet-seconds 0; status=$$?; [ $$status -le 1 ] || exit $$status
	for review in data/reviews/*.csv; do \
		[ -e "$$review" ] || continue; \
		$(BIN)/adjudicate review "$$review"; status=$$?; [ $$status -le 1 ] || exit $$status; \
	done; \
	$(BIN)/adjudicate pended

# The pre-commit hooks over every tracked file, without installing git hooks:
# ruff (lint with security rules, format check), mypy strict, detect-secrets,
# workflow schema validation, whitespace, YAML and large-file checks.
lint: install
	$(BIN)/pre-commit run --all-files --show-diff-on-failure

typecheck: install
	$(BIN)/mypy

# Every test, with the coverage gate (fail_under in pyproject.toml); the 15 slowest
# are listed, to keep the suite within its ten minutes.
unit: install
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=15 --cov --cov-report=term --cov-report=xml:reports/coverage.xml

test: lint unit

hooks: install
	$(BIN)/pre-commit install

security: install
	$(BIN)/ruff check --select S .
	$(BIN)/pre-commit run detect-secrets --all-files

# Needs network access to the vulnerability database (not part of make test).
audit: install
	$(UV) pip install --quiet --python $(BIN)/python pip-audit
	$(BIN)/pip-audit --strict -r constraints.txt

dist: install
	$(UV) build --out-dir dist

# The wheel in a fresh venv outside the checkout: generate + run (CI runs it too).
wheel-check: install
	.ci/wheel-check

bench: install
	$(BIN)/python -m bench

# A real Prefect server (SQLite in .prefect/, or PREFECT_API_DATABASE_CONNECTION_URL),
# the claims-process work pool, the deployments of prefect.yaml and a worker.
# `make serve PORT=4300` for another port; `make stop` ends what it started.
HOST ?= 127.0.0.1
PORT ?= 4200

serve: install
	$(BIN)/adjudicate generate --out data --if-empty
	$(BIN)/python -m adjudicate.serving start --host $(HOST) --port $(PORT)

stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m adjudicate.serving stop; fi

clean:
	rm -rf $(VENV) .prefect .mypy_cache .ruff_cache .pytest_cache
