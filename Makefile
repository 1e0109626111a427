# Two entry points for a fresh clone (see README.md):
#   make demo   set everything up and run the main job on MovieLens-100K
#   make test   set everything up and run the test suite
PYTHON ?= python3
# Public datasets are looked up here first (then the user cache, then downloaded when online).
HYBRIDREC_DATA_DIR ?= $(abspath ../shared/data)
export HYBRIDREC_DATA_DIR
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test benchmarks

# torch/torchvision are pinned in pyproject.toml to the builds on this machine's disk.
install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[test]"

demo: install
	$(PYTHON) -m hybridrec.cli build-graph --dataset movielens-100k --json runs/movielens-100k/graph_summary.json --out runs/movielens-100k/graph

test: install
	$(PYTHON) -m pytest -q tests
