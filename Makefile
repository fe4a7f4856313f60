# Tessera: the two commands of the quick start are `make demo` and `make test`.
# Both install what they need inside the repository first (idempotent): a virtual environment with
# pinned packages, the CPU torch wheel when the venv has no torch yet, and anvil from npm.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
TOOLS := .tools
ANVIL_VERSION := 1.7.1
ANVIL_DIR := $(CURDIR)/$(TOOLS)/node_modules/@foundry-rs/anvil-linux-amd64/bin
STAMP := $(VENV)/.tessera-installed
export PATH := $(CURDIR)/$(VENV)/bin:$(ANVIL_DIR):$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench abi compile clean

$(STAMP): requirements.txt requirements-test.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade "pip<25" wheel
	# torch: keep one that is already there (a CUDA build on a GPU host); otherwise the pinned release.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(ANVIL_DIR)/anvil:
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error @foundry-rs/anvil@$(ANVIL_VERSION)
	test -x $@

install: $(STAMP) $(ANVIL_DIR)/anvil

# `ape compile` rebuilds a contract when its own source changes, not when a module it imports from
# contracts/lib/ does: a changed library forces one full rebuild.
LIB_STAMP := .build/.lib-sources
$(LIB_STAMP): $(wildcard contracts/lib/*.vy) | install
	$(VENV)/bin/ape compile --force
	touch $@

# The stamp tells the contract tests that .build holds every contract compiled from the sources in the checkout,
# so they deploy that instead of compiling each again (tests/unit/contracts/vyper_harness.py `compiled`).
compile: install $(LIB_STAMP)
	$(VENV)/bin/ape compile
	$(PY) -m tests.unit.contracts.vyper_harness stamp

# Regenerate the ABIs and bytecode shipped in protocol/abi/ from `ape compile`.
abi: compile
	$(PY) -m protocol.abi.export

# Two pytest workers (pytest-xdist): the end-to-end tests mostly wait on chain windows, so on two cores
# the suite takes about two thirds of its serial time. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
test: install compile
	$(PY) -m pytest tests $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))

demo: install compile
	$(PY) -m demo

bench: install compile
	$(PY) -m bench.run_all

clean:
	rm -rf .build .devnet demo-summary.json
