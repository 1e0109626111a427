# Two entry points for a fresh clone (see README.md):
#   make demo   set everything up and run the main job on MovieLens-100K
#   make test   set everything up and run the test suite
# Everything runs in a project virtualenv (.venv/), so a stock Debian/Ubuntu python3, which refuses
# `pip install` outside one (PEP 668), works too. It sees the system's site-packages, so torch
# builds already installed there are reused rather than installed again.
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
# Optional extras the demo and the tests use (see pyproject.toml).
EXTRAS ?= test,images,ann,distributed,serve
# Public datasets are looked up here first (then the user cache, then downloaded when online).
HYBRIDREC_DATA_DIR ?= $(abspath ../shared/data)
export HYBRIDREC_DATA_DIR
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test

$(VENV_PYTHON):
	$(PYTHON) -m venv --system-site-packages $(VENV)

# torch/torchvision have lower bounds in pyproject.toml; a pip constraint file picks the build.
install: $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"

RUN_DIR := runs/movielens-100k

# The main job: graph summary, the hybrid model against EASE and popularity on a seeded 80/20
# split of the positives (rating >= 4), then a model trained on all positives, saved.
demo: install
	$(VENV_PYTHON) -m hybridrec.cli build-graph --dataset movielens-100k --json $(RUN_DIR)/graph_summary.json --out $(RUN_DIR)/graph --overwrite
	$(VENV_PYTHON) -m hybridrec.cli evaluate --dataset movielens-100k --hybrid --baseline ease popularity \
		--min-rating 4 --k 10 20 --json $(RUN_DIR)/evaluation.json --report $(RUN_DIR)/report --overwrite
	$(VENV_PYTHON) -m hybridrec.cli train --dataset movielens-100k --min-rating 4 --out $(RUN_DIR)/model --overwrite

test: install
	$(VENV_PYTHON) -m pytest -q tests
