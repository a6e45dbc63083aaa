# edgeseg developer commands. Python 3.11; everything installs into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned: on this project's CPU machines 2.13.0 is a local CPU build; an unpinned
# torch would pull several GB of CUDA packages. For CUDA elsewhere see README.
TORCH ?= torch==2.13.0

# Optional integrations the test suite also covers (their tests skip where a package is missing).
EXTRAS ?= export,dev,quantize,openvino,openvino-export,ros,ray
TEST_ONLY ?= "tritonclient[grpc]" transformers

.PHONY: install install-extras quickstart test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[export,dev]"

install-extras: install
	$(BIN)/pip install -q -e ".[$(EXTRAS)]" $(TEST_ONLY)

quickstart: install
	$(BIN)/edgeseg quickstart --out runs/quickstart

# Two passes: most tests on both cores (pytest-xdist), then the wall-clock ones (marker `timing`:
# latency, timeouts, frame drops) alone, so no parallel export competes with them for the cores.
test: install-extras
	$(BIN)/python -m pytest -q -n 2 -m "not timing"
	$(BIN)/python -m pytest -q -m timing

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) runs/quickstart .pytest_cache
