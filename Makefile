# Two commands for a newcomer: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test test-gateway test-ha lint bench ha-env browser-env clean

$(BIN)/athena: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/athena

run: install
	$(BIN)/athena serve

ha-env:
	./scripts/ha-env

browser-env:
	./scripts/browser-env

lint: install
	$(BIN)/ruff check src tests bench custom_components tests_ha
	$(BIN)/mypy

test-gateway: install ha-env browser-env
	$(BIN)/pytest -q

test-ha: install ha-env
	ATHENA_PYTHON=$(abspath $(BIN)/python) .venv-ha/bin/pytest -q -c tests_ha/pytest.ini tests_ha

test: lint test-gateway test-ha

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .venv-ha data
