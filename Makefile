# Two commands for a fresh machine with Python 3.11+, Java 17+ and Maven:
#   make run   - install everything, start the local stack (real Kafka + embedded ClickHouse) and run the demo
#   make test  - install everything and run the whole test suite
# and, while developing, make test-fast: the tests that need neither the Kafka broker nor a running stack, with
# the dev Hypothesis profile (few examples per property)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# worker processes of make test-fast (pytest-xdist; 0: the tests run in pytest's own process), each running whole
# modules (--dist loadfile: a module's shared fixtures, such as its loaded database, are set up once)
TEST_FAST_WORKERS ?= 2

# pytest's exit 5 ("no test ran") is a failure, and says so
PYTEST_NONE_RAN = { status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest ran no test: that is a failure" >&2; fi; exit $$status; }

.PHONY: install run test test-fast lint typecheck check clean

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
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest $(PYTEST_ARGS) || $(PYTEST_NONE_RAN)

# PYTHONDONTWRITEBYTECODE emptied: pytest caches the test modules it rewrote (their asserts) in __pycache__, so a
# run after the first compiles only what changed
test-fast: install
	PYTHONDONTWRITEBYTECODE= HYPOTHESIS_PROFILE=dev $(BIN)/python -m pytest -m "not kafka and not stack" \
	  -n $(TEST_FAST_WORKERS) --dist loadfile $(PYTEST_ARGS) || $(PYTEST_NONE_RAN)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy gateway schemas streams sinks caliper_pipeline

check: lint typecheck test

clean:
	rm -rf $(VENV) .cache var .pytest_cache .mypy_cache .ruff_cache
