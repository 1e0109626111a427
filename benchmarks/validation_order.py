"""The fit's validation hold-out drawn at random or by time, against test splits drawn at random or by time (MovieLens-100K).

Each of the fit's choices (the GNN's early stopping, the CF head's ridge strength, the cold block
weights, the GNN's weight) is made on one validation hold-out
(``hybridrec.tuning.validation_holdout``). ``HybridRecommender(validation_order="random")``, the
default, holds out each interaction at random; ``"latest"`` holds out each user's latest ones by
timestamp. This script fits the defaults both ways on two splits of the positives (rating >= 4,
users with >= 5, the protocol of ``model_vs_peers.py``, with its content) and scores the warm test
users: ``random`` (seeded 80/20 per user, seed = the model seed) and ``user-temporal`` (each user's
latest 20%; the same split for every seed, only the model seed changes).

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/validation_order.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_vs_peers import HYBRID_FIT  # noqa: E402

from data_builders.movielens import load_movielens_100k  # noqa: E402
from evaluation.protocol import EvaluationConfig, catalog_tables, dataset_summary, evaluate_model  # noqa: E402
from evaluation.splitters import SplitConfig, make_split  # noqa: E402
from hybridrec.recommender import HybridRecommender  # noqa: E402

SPLIT_KINDS = ("random", "user-temporal")
ORDERS = ("random", "latest")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default="runs/feature-cache", help="text embedding cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    dataset = load_movielens_100k(args.data_dir)
    provenance = dataset_summary(dataset.interactions, dataset.name)
    config = EvaluationConfig(ks=(10, 20))
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for kind in SPLIT_KINDS:
        for seed in args.seeds:
            split = make_split(dataset.interactions, SplitConfig(kind=kind, test_ratio=0.2, seed=seed, min_rating=4.0,
                                                                 min_positives=5))
            items, users = catalog_tables(split, dataset.items, dataset.users)
            for order in ORDERS:
                model = HybridRecommender(seed=seed, validation_order=order, progress=False,
                                          feature_cache_dir=args.cache_dir)
                started = time.perf_counter()
                model.fit(split.train, items=items, users=users, **HYBRID_FIT)
                seconds = time.perf_counter() - started
                warm = evaluate_model(model, split, dataset=provenance, config=config, fit_seconds=seconds).segments["warm"]
                figures.setdefault((kind, order), []).append((warm["recall@20"], warm["ndcg@20"]))
                print(f"{kind:13s} seed {seed} validation {order:6s} recall@20 {warm['recall@20']:.4f} "
                      f"NDCG@20 {warm['ndcg@20']:.4f} fit {seconds:5.1f} s (GNN epochs "
                      f"{model.fit_summary_.get('gnn_epochs_run')}, GNN weight {model.gnn_weight_:g})", flush=True)
    print(f"\n| test split | validation hold-out | recall@20 | NDCG@20 | seeds |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (kind, order), values in figures.items():
        mean = np.mean(values, axis=0)
        print(f"| {kind} | {order} | {mean[0]:.4f} | {mean[1]:.4f} | {len(values)} |")


if __name__ == "__main__":
    main()
