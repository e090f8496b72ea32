PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit tools bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(TOOLS)/helm $(TOOLS)/kubectl: tools/install-k8s-tools.sh | $(STAMP)
	PYTHON=$(BIN)/python tools/install-k8s-tools.sh $(TOOLS)

tools: $(TOOLS)/helm $(TOOLS)/kubectl

## run: the webhook on its embedded default (self-signed TLS in certs/, https://127.0.0.1:8443)
run: $(STAMP)
	$(BIN)/logaas-webhook serve

## test: lint, type-check and the whole test suite
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check webhook tests bench examples
	$(BIN)/ruff format --check webhook tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) tools
	PATH="$(CURDIR)/$(TOOLS):$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -n 2 -q

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

## bench: webhook vs bare ASGI baseline on 2 cores (table + bench/results/*.json, < 5 min)
bench: $(STAMP)
	$(BIN)/python bench/run.py

## bench-smoke: every benchmark phase in ~15 s (results in bench/results/smoke-*.json)
bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke
