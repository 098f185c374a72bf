# Two commands on a fresh machine: `make demo` and `make test`. Both create the virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo test lint bench services sync-conformance clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,faust]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/eventweir demo

services:
	bash tests/setup/system-deps.sh

# ruff (style and likely bugs), mypy (types), import-linter (the layers and the processors rule)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint services
	$(PY) -m pytest -q -p no:randomly

bench: install
	for b in tests/bench/*.py; do $(PY) $$b || exit 1; done

# the AWS-recorded cases are vendored in tests/data/conformance; the workplace's shared/ is the source
sync-conformance:
	cp ../shared/conformance/*.json tests/data/conformance/

clean:
	rm -rf $(VENV) build *.egg-info
