# luminary: what the README tells users to run.
#   make demo   create .venv if missing, install, run the main job
#   make test   create .venv if missing, install, run the whole suite
#   make bench  run the CPU benchmarks (each prints one JSON object)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned: the CPU build on this kind of machine (a bare
	# "torch" would pull a CUDA build of several GB)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	# torchao, the float8 peer, in a folder of its own that only its test puts on sys.path:
	# installed, transformers imports it in every process that loads a model (seconds each)
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/float8-peer "torchao>=0.18,<0.19"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/luminary pretrain examples/crystal-tiny.yaml --out runs/crystal-tiny --resume

test: setup
	$(BIN)/python -m pytest

$(VENV)/.bench-stamp: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	touch $@

bench: $(VENV)/.bench-stamp
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
