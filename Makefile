# One command each: `make demo` sets everything up and runs the demo; `make test` runs the tests
# (what CI runs); `make test-fast` runs the unit tests and one small end-to-end run (< 5 min).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# pytest-xdist workers: on 2 cores, one mostly waits on the Slurm cluster while two compute
TEST_WORKERS ?= 3
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: setup demo test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[workflow,test,viewer]"
	# the lean Embedding Atlas: it serves our precomputed atlas without torch/CUDA/litellm
	$(PY) -m pip install -q --no-deps embedding-atlas==0.26.0
	# only its data: the real NIH and CheXpert manifests the preset tests read in full
	$(PY) -m pip install -q --no-deps torchxrayvision==1.5.7
	touch $@

demo: setup
	$(VENV)/bin/snakemake --profile profiles/local
	@echo "Atlas: results/atlas/atlas.parquet  (open it: .venv/bin/cxr-atlas view)"

test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not workflow or smoke"

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check .
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results resources logs .snakemake
