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

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pwb demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
