# Two commands for a fresh machine with Python 3.11+, Java 17+ and Maven:
#   make run   - install everything, start the local stack (real Kafka + embedded ClickHouse) and run the demo
#   make test  - install everything and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt caliper_pipeline/kafka/pom.xml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/caliper-pipeline kafka --install-only
	touch $@

run: install
	$(BIN)/caliper-pipeline up --demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS) || { status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest ran no test: that is a failure" >&2; fi; exit $$status; }

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy gateway schemas streams sinks caliper_pipeline

check: lint typecheck test

clean:
	rm -rf $(VENV) .cache var .pytest_cache .mypy_cache .ruff_cache
