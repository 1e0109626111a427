"""Items added after fitting vs. the same items known as cold at fit time (MovieLens-100K).

The protocol of ``model_vs_peers.py``'s cold-item split (ratings >= 4 positives, users with >= 5,
a seeded 20% of the items hidden with all their rows, each test user ranking the cold items only,
metrics @20). Per seed, two fits of the same estimator on the same training rows:

* **cold at fit**: the hidden items are in the catalog given to ``fit`` (cold items);
* **added after fit**: the catalog given to ``fit`` lacks them; ``model.add_items`` then adds them
  (content encoded, CF columns from the content map, GNN embeddings from the content path).

The table gives both recall@20 / NDCG@20 on the cold segment, their relative difference and the
time ``add_items`` took per 1,000 items (content already in the feature cache, as after a fit).

    python benchmarks/add_items.py --seeds 0 1 2
    python benchmarks/add_items.py --seeds 0 --cf-head sparse
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_builders.movielens import load_movielens_100k  # noqa: E402
from evaluation.protocol import catalog_tables, evaluate_model  # noqa: E402
from evaluation.splitters import SplitConfig, make_split  # noqa: E402
from hybridrec.recommender import HybridRecommender  # noqa: E402

FIT = {"item_text_cols": ["title", "overview"], "item_attr_cols": ["genres", "year"],
       "user_attr_cols": ["age", "gender", "occupation"]}


def cold_split(interactions: pd.DataFrame, seed: int):
    return make_split(interactions, SplitConfig(kind="cold-item", cold_share=0.2, test_ratio=0.0, seed=seed,
                                                min_rating=4.0, min_positives=5))


def run(data_dir: str, seeds: list[int], params: dict) -> pd.DataFrame:
    """One row per (seed, variant): cold-segment recall@20 / NDCG@20, fit and add seconds."""
    dataset = load_movielens_100k(data_dir)
    rows = []
    for seed in seeds:
        split = cold_split(dataset.interactions, seed)
        items, users = catalog_tables(split, dataset.items, dataset.users)
        cold_ids = pd.Index(split.cold_item_ids)
        provenance = {"name": "ml-100k"}

        model = HybridRecommender(seed=seed, progress=False, **params)
        started = time.perf_counter()
        model.fit(split.train, items=items, users=users, **FIT)
        fit_seconds = time.perf_counter() - started
        cold = evaluate_model(model, split, dataset=provenance).segments["cold_item"]
        rows.append({"seed": seed, "variant": "cold at fit", "recall@20": cold["recall@20"],
                     "ndcg@20": cold["ndcg@20"], "fit_s": fit_seconds, "items_added": 0, "add_s": None})

        model = HybridRecommender(seed=seed, progress=False, **params)
        started = time.perf_counter()
        model.fit(split.train, items=items.loc[~items["item_id"].isin(cold_ids)], users=users, **FIT)
        fit_seconds = time.perf_counter() - started
        new_items = items.loc[items["item_id"].isin(cold_ids)]
        started = time.perf_counter()
        model.add_items(new_items)
        add_seconds = time.perf_counter() - started
        added = evaluate_model(model, split, dataset=provenance).segments["cold_item"]
        rows.append({"seed": seed, "variant": "added after fit", "recall@20": added["recall@20"],
                     "ndcg@20": added["ndcg@20"], "fit_s": fit_seconds, "items_added": len(new_items),
                     "add_s": add_seconds})
    return pd.DataFrame(rows)


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per variant, the added/cold ratio of recall@20 and seconds per 1,000 added items."""
    table = results.groupby("variant", sort=False)[["recall@20", "ndcg@20", "fit_s", "items_added", "add_s"]].mean()
    table["recall_vs_cold_at_fit"] = table["recall@20"] / table.loc["cold at fit", "recall@20"] - 1.0
    table["add_s_per_1000_items"] = 1000.0 * table["add_s"] / table["items_added"].where(table["items_added"] > 0)
    return table.drop(columns=["add_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder holding ml-100k/ (default $HYBRIDREC_DATA_DIR)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cf-head", default="auto", choices=["auto", "dense", "sparse"])
    parser.add_argument("--epochs", type=int, default=None, help="GNN epochs (default: the estimator's)")
    parser.add_argument("--dim", type=int, default=None, help="GNN dimension (default: the estimator's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import os

    data_dir = args.data_dir or os.environ.get("HYBRIDREC_DATA_DIR") or str(Path(__file__).resolve().parents[2] /
                                                                              "shared" / "data")
    params = {"cf_head": args.cf_head}
    params.update({k: v for k, v in (("epochs", args.epochs), ("dim", args.dim)) if v is not None})
    results = run(data_dir, args.seeds, params)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(results.to_string(index=False))
        print()
        print(summary_table(results).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
