# `make run`: set up the environment and run the default pipeline (offline) + its report.
# `make test`: set up the environment and run the test suite.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
# CPU build of PyTorch (a plain `torch` may pull a multi-GB CUDA build). Override for a GPU box,
# e.g. make TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126' install
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.geovae-installed

.PHONY: install run report test lint clean docs browser conda-pins

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores $(CORES) --report results/report.html
	@echo "Done: results/metrics.tsv, results/<dataset>/<model>/<seed>/, report in results/report.html"

test: install browser
	$(BIN)/python -m pytest -q --durations=15

# Headless Chromium for the report's browser test (Debian's package; installed when run as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and not root: the report browser test will be skipped"; fi; }

docs: install
	$(BIN)/sphinx-build -W -b html docs docs/_build/html
	@echo "Docs: docs/_build/html/index.html"

lint: install
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs .snakemake

# Lock files for `snakemake --use-conda` (Snakemake uses envs/<env>.linux-64.pin.txt when present).
# Needs conda (>= 24.7.1) or mamba and the conda-forge/bioconda channels; scvi.yaml is skipped (pip part).
CONDA ?= conda
conda-pins:
	@for env in acquire preprocess train analysis; do \
	  prefix=$$(mktemp -d)/$$env; \
	  $(CONDA) env create --yes --quiet -p $$prefix -f envs/$$env.yaml && \
	  $(CONDA) list -p $$prefix --explicit --md5 > envs/$$env.linux-64.pin.txt && \
	  echo "envs/$$env.linux-64.pin.txt" && rm -rf $$prefix; \
	done
