# cl_toolkit — the README's two commands are `make demo` and `make test`.
# Every target honours CLT_HOME (the workspace): `make demo CLT_HOME=/tmp/ws`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLT_HOME ?= $(CURDIR)/workspace
export CLT_HOME
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export AXOLOTL_DO_NOT_TRACK := 1
export DO_NOT_TRACK := 1
export WANDB_MODE := disabled
# Pin torch to the local CPU build everywhere pip runs, isolated builds included.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per core; whole files go to one worker (module fixtures
# that train are built once). Each worker and its training processes run one thread.
PYTEST_WORKERS ?= auto
# two one-thread trainings side by side on 2 cores (clt bench cl --jobs)
BENCH_CL_JOBS ?= 2
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: setup demo test test-fast lint bench bench-cl quarter dry-run clean help

help:
	@echo "make demo       two quarters of the firefighter model: cycles, feedback, gate, report (sets up .venv first)"
	@echo "make test       the whole test suite, slow end-to-end training tests included (what CI runs)"
	@echo "make test-fast  the suite without tests marked slow"
	@echo "make lint       ruff"
	@echo "make bench      every benchmarks/bench_*.py, printed as tables"
	@echo "make bench-cl   the continual-learning benchmark: benchmarks/streams/firefighter-3q.yml, 3 seeds, 2 jobs (BENCH_CL_ARGS=--stream ..., BENCH_CL_JOBS=1)"
	@echo "make quarter RECIPE=recipes/<model>/<version>.yml   one resumable cycle (clt cycle)"
	@echo "make dry-run    the CI path: 1.0.0 then 1.1.0 cycles on the tiny model, short epochs, in CLT_HOME/dry-run"
	@echo "make setup      create .venv with everything installed (idempotent)"
	@echo "workspace: CLT_HOME=$(CLT_HOME)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $@

demo: $(STAMP)
	@$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check cl_toolkit tests scripts benchmarks

bench: $(STAMP)
	@failed=""; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "missed a target:$$failed"; exit 1; fi

bench-cl: $(STAMP)
	@start=$$(date +%s); $(BIN)/clt bench cl --jobs $(BENCH_CL_JOBS) $(BENCH_CL_ARGS); code=$$?; t=$$(( $$(date +%s) - start )); \
	echo "make bench-cl: $$(( t / 60 )) min $$(( t % 60 )) s"; exit $$code

quarter: $(STAMP)
	@test -n "$(RECIPE)" || { echo "usage: make quarter RECIPE=recipes/<model>/<version>.yml"; exit 2; }
	$(BIN)/clt cycle $(RECIPE) $(CYCLE_ARGS)

dry-run: $(STAMP)
	rm -rf $(CLT_HOME)/dry-run
	$(BIN)/clt --workspace $(CLT_HOME)/dry-run cycle recipes/firefighter/1.0.0.yml --set train.num_epochs=2
	$(BIN)/clt --workspace $(CLT_HOME)/dry-run cycle recipes/firefighter/1.1.0.yml --set train.num_epochs=2 \
	  || test $$? -eq 3  # a gate that blocks is a valid outcome of the path

clean:
	rm -rf $(CLT_HOME)
