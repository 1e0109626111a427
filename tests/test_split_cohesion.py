"""``benchmarks/split_cohesion.py`` on the real Gowalla files: a random re-split's held-out items look
like its training items, the published test items do not (closer to each other, farther from the
user's history), and the fit's validation hold-out looks like a random one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from split_cohesion import cohesion, interaction_matrices, random_resplit  # noqa: E402

from hybridrec.tuning import validation_holdout  # noqa: E402

USERS = 1500


@pytest.fixture(scope="module")
def gowalla_matrices(data_dir):
    return interaction_matrices(data_dir, "gowalla")


def ratios(result: dict) -> tuple[float, float]:
    return result["held/held"] / result["subset/subset"], result["held/history"] / result["subset/history"]


def test_the_matrices_hold_the_published_counts(gowalla_matrices):
    train, test = gowalla_matrices
    assert train.shape == (29858, 40981)
    assert (train.nnz, test.nnz) == (810128, 217242)
    assert train.multiply(test).nnz == 0


def test_a_random_resplit_holds_out_items_like_its_training_items(gowalla_matrices):
    train, test = gowalla_matrices
    resplit_train, resplit_test = random_resplit(train, test, 0.21, seed=0)
    assert resplit_train.nnz + resplit_test.nnz == train.nnz + test.nnz
    within, history = ratios(cohesion(resplit_train, resplit_test, users=USERS, min_train=10, min_test=3, seed=0))
    assert abs(within - 1) < 0.05 and abs(history - 1) < 0.05


def test_the_published_test_items_cohere_and_sit_away_from_the_history(gowalla_matrices):
    within, history = ratios(cohesion(*gowalla_matrices, users=USERS, min_train=10, min_test=3, seed=0))
    assert within > 1.08
    assert history < 0.85


def test_the_fits_validation_holdout_looks_random(gowalla_matrices):
    rest, valid = validation_holdout(gowalla_matrices[0], 0.1, 0)
    within, history = ratios(cohesion(rest, valid, users=USERS, min_train=10, min_test=2, seed=0))
    assert abs(within - 1) < 0.06 and abs(history - 1) < 0.05
