# Two commands for a newcomer: `make run` and `make test`.
# `make test` needs Python >= 3.11, make, and for Home Assistant a Python 3.13 (2025.4.4) plus either a Python 3.14
# or root (the current HA in a Debian sid chroot, built once outside the repo). Redis: the tests start their own.
BIN := .venv/bin
HA_PYTEST := ATHENA_PYTHON=$(abspath $(BIN)/python) .venv-ha/bin/pytest -q -ra -c tests_ha/pytest.ini

.PHONY: install run test test-gateway test-ha test-ha-current lint bench ha-env ha-current clean clean-data browser-env \
	clean-ha-current

install:
	@./scripts/gateway-env

run: install
	$(BIN)/athena serve

ha-env:
	@./scripts/ha-env

# Exit 3: the current HA cannot be had on this machine (no Python 3.14, not root); its tests are skipped then.
ha-current:
	@./scripts/ha-current || [ $$? = 3 ]

browser-env:
	./scripts/browser-env

lint: install
	$(BIN)/ruff check src tests bench custom_components tests_ha
	$(BIN)/mypy

# The gateway's own suite; its live-HA tests on HA 2025.4.
test-gateway: install ha-env browser-env
	ATHENA_HASS_VERSIONS=2025.4 $(BIN)/pytest -q -ra

# The integration's suite (pytest-homeassistant-custom-component, in-process HA 2025.4.4) and the real-hass e2e.
test-ha: install ha-env
	ATHENA_HASS_VERSIONS=2025.4 $(HA_PYTEST) tests_ha

# Everything that runs against a real hass, on the current HA (2026.11): the gateway's live-HA tests and the e2e.
test-ha-current: install ha-env
	@rc=0; ./scripts/ha-current || rc=$$?; \
	if [ $$rc = 3 ]; then exit 0; elif [ $$rc != 0 ]; then exit $$rc; fi; \
	set -x; \
	ATHENA_HASS_VERSIONS=current $(HA_PYTEST) tests_ha/test_e2e_hass.py && \
	ATHENA_HASS_VERSIONS=current $(BIN)/pytest -q -ra -k ha-current tests

test: lint test-gateway test-ha test-ha-current

bench: install
	$(BIN)/python -m bench

# Venvs and caches only; data/ (your API token and sessions) stays: that is `make clean-data`.
clean:
	rm -rf .venv .venv-ha .venv-ha-current .pytest_cache .ruff_cache .test-logs src/*.egg-info
	find . -path ./data -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

clean-data:
	@echo "clean-data: deleting data/ (the gateway's API token data/api_token and every stored session, data/athena.db)"
	rm -rf data

# The current HA's sid chroot lives outside the repo and is shared by every clone; this removes it (and .venv-ha-current).
clean-ha-current:
	./scripts/ha-current clean
