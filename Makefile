# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install, migrate, start the gateway on ws://127.0.0.1:18789
#   make test   create .venv, install (with test tools), run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench conformance clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.test: requirements-test.txt requirements.txt $(VENV)/.runtime
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py gateway serve

test: $(VENV)/.test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test
	$(PY) manage.py bench

conformance: $(VENV)/.test
	PYTHON=$(PY) ../shared/conformance/run -k "$$(grep -v '^#' .ci/conformance-selection | tr '\n' ' ')"

clean:
	rm -rf $(VENV)
