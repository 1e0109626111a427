"""Shared fixtures: where the real datasets live, and small real slices of them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

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


@pytest.fixture(scope="session")
def positives(movielens):
    """MovieLens-100K positives (rating >= 4) as a seeded 80/20 split of binary matrices."""
    frame = movielens.interactions.loc[movielens.interactions["rating"] >= 4]
    users = frame["user_id"].astype("category").cat.codes.to_numpy()
    items = frame["item_id"].astype("category").cat.codes.to_numpy()
    test = np.random.default_rng(0).random(len(frame)) < 0.2
    shape = (users.max() + 1, items.max() + 1)

    def matrix(rows):
        return sp.csr_matrix((np.ones(rows.sum(), np.float32), (users[rows], items[rows])), shape=shape)

    return matrix(~test), matrix(test)
