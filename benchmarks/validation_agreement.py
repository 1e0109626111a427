"""Do the fit's validation hold-out and the test split rank settings alike? The published split vs a random re-split.

On the LightGCN Gowalla split, settings of the sparse head that the validation hold-out preferred
lost on the test split (rank 1024 with a sharpening step, see ``benchmarks/README.md``), and
``split_cohesion.py`` finds that split's test items closer to each other and farther from the
users' training items than a random hold-out's. This script checks whether that is the cause: for
each split it fits the sparse head (:class:`hybridrec.models.graph_filter.GraphFilterHead`) at each
setting twice,

* on the training part less the fit's validation hold-out (``validation_holdout``, 10%, seed 0),
  scored on that hold-out as the fit's searches score it (recall@20, capped denominator, at most
  10,000 seeded users);
* on the whole training part, scored on the test part as published (recall@20 = hits / the
  user's test items, NDCG@20, at most ``--test-users`` seeded users);

for the published split and for a seeded random re-split of the same interactions (the same share
per interaction). If validation and test agree on the re-split and disagree on the published
split, the disagreement comes from how the published test part was drawn.

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/validation_agreement.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from split_cohesion import add_folder_arguments, folder_matrices, random_resplit  # noqa: E402

from evaluation.metrics import hits_at_k, ndcg_at_k, recall_at_k  # noqa: E402
from hybridrec.models.graph_filter import GraphFilterHead  # noqa: E402
from hybridrec.topk import select_top_k  # noqa: E402
from hybridrec.tuning import FILTER_SCORE_BLOCK, scored_users, validation_holdout  # noqa: E402

#: (label, GraphFilterHead keyword arguments): what the default search picks on Gowalla, and the
#: settings the validation hold-out preferred there.
SETTINGS = (
    ("rank 512, alpha 0.5, tilt 0.05 (the defaults' choice)", dict(rank=512, alpha=0.5, tilt=0.05)),
    ("rank 1024, alpha 0.3, tilt 0.05", dict(rank=1024, alpha=0.3, tilt=0.05)),
    ("rank 1024, alpha 0.3, tilt 0.05, sharpen 0.75", dict(rank=1024, alpha=0.3, tilt=0.05, sharpen=0.75)),
)
K = 20


def ranking_figures(head: GraphFilterHead, history: sp.csr_matrix, truth: sp.csr_matrix, users: np.ndarray,
                    denominator: str) -> tuple[float, float]:
    """Mean recall@20 (``denominator`` of :func:`evaluation.metrics.recall_at_k`) and NDCG@20 of
    ``head`` over ``users``, training items filtered, in blocks of ``FILTER_SCORE_BLOCK`` users."""
    recalls, ndcgs = [], []
    for start in range(0, len(users), FILTER_SCORE_BLOCK):
        block = users[start:start + FILTER_SCORE_BLOCK]
        rows = history[block]
        scores = head.score(rows).masked_fill(torch.from_numpy(rows.toarray() > 0), -torch.inf)
        relevant = torch.from_numpy(truth[block].toarray() > 0)
        _, top_items = select_top_k(scores, K, ties="backend")
        hits = hits_at_k(torch.from_numpy(top_items), relevant)
        n_relevant = relevant.sum(1)
        recalls.append(recall_at_k(hits, n_relevant, K, denominator=denominator))
        ndcgs.append(ndcg_at_k(hits, n_relevant, K))
    return float(torch.cat(recalls).mean()), float(torch.cat(ndcgs).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_folder_arguments(parser)
    parser.add_argument("--test-users", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test = folder_matrices(args)
    share = test.nnz / (train.nnz + test.nnz)
    splits = {"published": (train, test), f"random re-split ({share:.0%}, seed {args.seed})":
              random_resplit(train, test, share, args.seed)}
    print("| split | sparse head | validation recall@20 | test recall@20 | test NDCG@20 | fit s (both) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for split_label, (fit_part, test_part) in splits.items():
        rest, valid = validation_holdout(fit_part, 0.1, 0)
        valid_users = scored_users(rest, valid, 0)
        test_users = np.flatnonzero((np.diff(test_part.indptr) > 0) & (np.diff(fit_part.indptr) > 0))
        if len(test_users) > args.test_users:
            test_users = np.sort(np.random.default_rng(args.seed).choice(test_users, args.test_users, replace=False))
        for label, settings in SETTINGS:
            tick = time.perf_counter()
            on_rest = GraphFilterHead(seed=0, **settings).fit(rest)
            valid_recall, _ = ranking_figures(on_rest, rest, valid, valid_users, "capped")
            del on_rest
            on_train = GraphFilterHead(seed=0, **settings).fit(fit_part)
            seconds = time.perf_counter() - tick
            test_recall, test_ndcg = ranking_figures(on_train, fit_part, test_part, test_users, "relevant")
            del on_train
            print(f"| {split_label} | {label} | {valid_recall:.4f} | {test_recall:.4f} | {test_ndcg:.4f} | {seconds:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
