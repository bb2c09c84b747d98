# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv and installs the project on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean gpu-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/naflow-aug demo --out runs/demo --resume

test: $(STAMP)
	$(PY) -m pytest -q

# The one-call GPU check (issue 19): the machine's own python3 and torch, the project from the tree, the
# wheels of benchmarks/gpu_wheels.sh from .whl/. On a CPU: make gpu-check GPU_CHECK_ARGS="--device cpu --quick"
GPU_OUT ?= runs/gpu-check
GPU_CHECK_ARGS ?=
gpu-check:
	bash benchmarks/gpu_check.sh --out $(GPU_OUT) --wheels .whl $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs build *.egg-info
