# The README's two commands: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install run test lint typecheck unit bench clean serve stop

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --python $(BIN)/python -c constraints.txt \
		-e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

run: install
	$(BIN)/adjudicate generate --out data --if-empty
	$(BIN)/adjudicate run; status=$$?; [ $$status -le 1 ] || exit $$status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

bench: install
	$(BIN)/python -m bench

# A real Prefect server (SQLite in .prefect/, or PREFECT_API_DATABASE_CONNECTION_URL),
# the claims-process work pool, the deployments of prefect.yaml and a worker.
# `make serve PORT=4300` for another port; `make stop` ends what it started.
HOST ?= 127.0.0.1
PORT ?= 4200

serve: install
	$(BIN)/adjudicate generate --out data --if-empty
	$(BIN)/python -m flows.serving start --host $(HOST) --port $(PORT)

stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m flows.serving stop; fi

clean:
	rm -rf $(VENV) .prefect .mypy_cache .ruff_cache .pytest_cache
