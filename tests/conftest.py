"""Shared fixtures: where the real datasets live, and small real slices of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path:
    """``$HYBRIDREC_DATA_DIR`` or ``../shared/data`` beside the repository."""
    candidates = [os.environ.get("HYBRIDREC_DATA_DIR"), REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ml-100k" / "u.data").is_file():
            return Path(candidate)
    raise RuntimeError("real test data not found: set HYBRIDREC_DATA_DIR to the folder holding ml-100k/")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return find_data_dir()


@pytest.fixture(scope="session")
def movielens(data_dir):
    """The full MovieLens-100K dataset with TMDB content (loads in about a second)."""
    from data_builders.movielens import load_movielens_100k

    return load_movielens_100k(data_dir)
