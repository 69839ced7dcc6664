# Pacing CDS: `make run` serves the service, `make test` runs the whole suite. Both bootstrap .venv.
SHELL := /bin/bash
VENV := .venv
# The first interpreter that durable-rules and the project support (3.11 or 3.12).
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not ((3,11) <= sys.version_info[:2] < (3,13)))'; \
	then echo $$p; break; fi; done)

.PHONY: run test check lint venv clean screenshot fuzz record
# Byte code is cached even where the environment asks otherwise: without it every test process (a worker, a server,
# a command) compiles the package and pytest rewrites every test module again, some seconds each time.
unexport PYTHONDONTWRITEBYTECODE

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.11 or 3.12 is required (none found on PATH)"; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

run: venv
	$(VENV)/bin/pacing-cds serve

lint: venv
	$(VENV)/bin/ruff check cds tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# The tests run in parallel, a module per worker at a time (--dist loadscope: a module's servers, image or wheel are
# made once), in collection order (tests/conftest.py puts the longest modules first; xdist would otherwise start the
# modules with the most tests first). Most of a slow test is waiting for a server, a build or a timeout, so there are
# more workers than cores.
TEST_WORKERS ?= 4
test: lint
	$(VENV)/bin/pacing-cds rules check
	$(VENV)/bin/pacing-cds rules test
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

# The inner loop: lint, the layer contracts, the rules, and every test that starts no process (no server, cluster,
# browser or command: those are marked slow and left to make test). The clinical invariants run 10 derandomized
# cases per example instead of the 30 of make test (CHECK_CASES).
CHECK_CASES ?= 10
check: lint
	$(VENV)/bin/pacing-cds rules check
	$(VENV)/bin/pacing-cds rules test
	PACING_CDS_INVARIANT_CASES=$(CHECK_CASES) $(VENV)/bin/python -m pytest -q -m "not slow" -n auto $(PYTEST_ARGS)

# Every recorded output, written again after a reviewed change to rules/ (a threshold, a rule, a card text): the rules
# checked first, then the examples' requests and answers (fhir_examples/*/request.json, response.json and
# evaluate.txt), then the README blocks made from those answers (the evaluate output and the examples table). The
# golden and README tests compare against these files; `git diff` shows what the change did to the answers.
record: venv
	$(VENV)/bin/python -m cds.cli rules check
	$(VENV)/bin/python scripts/generate_examples.py --answers
	$(VENV)/bin/python scripts/update_readme.py

# The invariants of docs/clinical.md on many more generated cases than `make test` runs, at random (the examples
# hypothesis finds failing are kept in .hypothesis/ and tried first next time). FUZZ_CASES per example and test.
FUZZ_CASES ?= 1500
fuzz: venv
	PACING_CDS_FUZZ=1 PACING_CDS_FUZZ_CASES=$(FUZZ_CASES) $(VENV)/bin/python -m pytest tests/invariants $(PYTEST_ARGS)

# The README's screenshots, taken by headless Chromium from real card links: the chart (docs/chart.png) and the
# take-home plan in English and in Spanish side by side (docs/plans.png).
screenshot: venv
	$(VENV)/bin/python -m tests.support.screenshot docs/chart.png docs/plans.png

clean:
	rm -rf $(VENV) .venv-fhir var .pytest_cache .hypothesis
