"""Is a given train/test split exchangeable with a random hold-out? Co-occurrence cohesion of held-out items.

The fit's validation searches (``hybridrec.tuning``) hold out a random share of each user's
training interactions. They can only predict the test split if the test split looks like such a
hold-out. This script measures that on a LightGCN-format folder (default: Gowalla), for sampled
users with at least ``--min-train`` training and ``--min-test`` test items:

* **held / held**: mean co-occurrence cosine between two held-out items of the same user;
* **subset / subset**: the same for a random subset of the user's training items of the same size
  (the control a random split would match);
* **held / history**: held-out items against the rest of the user's training items;
* **subset / history**: the subset against the rest (its control).

Cosines are ``C_ij / sqrt(d_i d_j)`` on the split's own training matrix, leaving the user out
(``C_ij`` and ``d`` lose the user's own contribution where the user holds the item in training),
so a held-out item and a training item are compared on equal terms.

Rows: the published split, a seeded random 80/20 re-split of the same interactions per user (the
control: its held-out items should match its subsets), and the fit's own validation hold-out
(``hybridrec.tuning.validation_holdout``, 10% of the training interactions, seed 0).

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/split_cohesion.py
    python benchmarks/split_cohesion.py --data-dir /path/to/yelp2018
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_builders.lightgcn import load_lightgcn  # noqa: E402
from hybridrec.tuning import validation_holdout  # noqa: E402


def interaction_matrices(data_dir: str | None, name: str | None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(train, test)`` binary ``[n_users, n_items]`` matrices of the folder's given split."""
    dataset = load_lightgcn(data_dir, name=name)
    table = dataset.interactions
    users = table["user_id"].astype("category")
    items = table["item_id"].astype("category")
    shape = (len(users.cat.categories), len(items.cat.categories))
    rows, cols = users.cat.codes.to_numpy(), items.cat.codes.to_numpy()
    parts = []
    for split in ("train", "test"):
        mask = (table["split"] == split).to_numpy()
        values = np.ones(int(mask.sum()), dtype=np.float32)
        parts.append(sp.csr_matrix((values, (rows[mask], cols[mask])), shape=shape))
    return parts[0], parts[1]


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` / ``--name``: which LightGCN-format folder :func:`folder_matrices` reads."""
    parser.add_argument("--data-dir", default=None, help="a LightGCN-format folder, or one holding <name>/")
    parser.add_argument("--name", default="gowalla", help="the dataset folder's name ('' for --data-dir itself)")


def folder_matrices(args: argparse.Namespace) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """:func:`interaction_matrices` of the folder :func:`add_folder_arguments` named."""
    return interaction_matrices(args.data_dir, args.name or None)


def random_resplit(train: sp.csr_matrix, test: sp.csr_matrix, test_share: float,
                   seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """A seeded per-interaction ``test_share`` re-split of ``train + test`` ``[n_users, n_items]``."""
    both = (train + test).tocoo()
    held = np.random.default_rng(seed).random(both.nnz) < test_share
    make = lambda mask: sp.csr_matrix((np.ones(int(mask.sum()), np.float32), (both.row[mask], both.col[mask])),  # noqa: E731
                                      shape=train.shape)
    return make(~held), make(held)


def cohesion(train: sp.csr_matrix, held: sp.csr_matrix, *, users: int, min_train: int, min_test: int,
             seed: int) -> dict[str, float]:
    """The four mean cosines of the module docstring over up to ``users`` seeded users.

    Args:
        train: ``[n_users, n_items]`` training interactions (the co-occurrence comes from it).
        held: ``[n_users, n_items]`` held-out interactions (disjoint from ``train``).
        users, min_train, min_test: how many users at most, and the smallest histories they need (a user
            also needs 2 training items more than held-out ones).
        seed: seeds the user sample and each user's control subset.

    Returns:
        ``{"held/held", "subset/subset", "held/history", "subset/history", "users"}``.
    """
    cooccurrence = (train.T @ train).tocsr()
    degree = np.asarray(train.sum(axis=0)).ravel()
    rng = np.random.default_rng(seed)
    train_counts, held_counts = np.diff(train.indptr), np.diff(held.indptr)
    # The control subset has as many items as the held-out part, and leaves some history beside it.
    eligible = np.flatnonzero((train_counts >= min_train) & (held_counts >= min_test) & (train_counts >= held_counts + 2))
    chosen = np.sort(rng.choice(eligible, min(users, len(eligible)), replace=False))
    sums = {"held/held": [], "subset/subset": [], "held/history": [], "subset/history": []}

    def mean_cosine(left: np.ndarray, right: np.ndarray, own_left: int, own_right: int, same: bool) -> float:
        counts = cooccurrence[left][:, right].toarray() - own_left * own_right
        norms = np.sqrt(np.outer(np.maximum(degree[left] - own_left, 1), np.maximum(degree[right] - own_right, 1)))
        cosines = counts / norms
        if same:
            return float(cosines[~np.eye(len(left), dtype=bool)].mean())
        return float(cosines.mean())

    for user in chosen:
        history, held_items = train[user].indices, held[user].indices
        subset = rng.choice(history, len(held_items), replace=False)
        rest = np.setdiff1d(history, subset)
        sums["held/held"].append(mean_cosine(held_items, held_items, 0, 0, True))
        sums["subset/subset"].append(mean_cosine(subset, subset, 1, 1, True))
        sums["held/history"].append(mean_cosine(held_items, rest, 0, 1, False))
        sums["subset/history"].append(mean_cosine(subset, rest, 1, 1, False))
    return {**{key: float(np.mean(values)) for key, values in sums.items()}, "users": len(chosen)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_folder_arguments(parser)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--min-train", type=int, default=10)
    parser.add_argument("--min-test", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test = folder_matrices(args)
    share = test.nnz / (train.nnz + test.nnz)
    splits = {
        "published split (train / test)": (train, test),
        f"random re-split of the same interactions ({share:.0%} per interaction, seed {args.seed})":
            random_resplit(train, test, share, args.seed),
        "the fit's validation hold-out (10% of train, seed 0)": validation_holdout(train, 0.1, 0),
    }
    print("| split | users | held / held | subset / subset | ratio | held / history | subset / history | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, (fit_part, held_part) in splits.items():
        # The validation hold-out keeps fewer items per user: ask for at least 2 of them.
        min_test = args.min_test if "validation" not in label else 2
        result = cohesion(fit_part, held_part, users=args.users, min_train=args.min_train, min_test=min_test,
                          seed=args.seed)
        print(f"| {label} | {result['users']:,} | {result['held/held']:.4f} | {result['subset/subset']:.4f} "
              f"| {result['held/held'] / result['subset/subset']:.2f} | {result['held/history']:.4f} "
              f"| {result['subset/history']:.4f} | {result['held/history'] / result['subset/history']:.2f} |")


if __name__ == "__main__":
    main()
