"""How much cold-item recall the pseudo-cold choice of block weights leaves on the table.

On the cold-item split of ``model_vs_peers.py`` (MovieLens-100K, genres + year + title + overview
+ aligned poster), hybridrec's CF head is fitted once with its default, validation-chosen block
weights and once per fixed weighting of a grid; every fit is scored on the test cold items. The
best grid row is picked on the test split itself, so it is an upper bound for any weight choice,
not a result: the gap between it and the default says how much better weight tuning could do.
The GNN is left out (``use_gnn=False``): the block weights act on the CF head's cold columns
only, and fits stay a few seconds long.

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/cold_weight_headroom.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_builders.movielens import load_movielens_100k  # noqa: E402
from evaluation.protocol import EvaluationConfig, dataset_summary  # noqa: E402
from hybridrec.recommender import HybridRecommender  # noqa: E402
from model_vs_peers import fit_and_score, protocol_splits  # noqa: E402

FIT = {"item_text_cols": ["title", "overview"], "item_image_col": "image_path", "item_attr_cols": ["genres", "year"],
       "user_attr_cols": ["age", "gender", "occupation"]}
GRID = {"text:overview": (0.0, 0.25, 0.5), "image:aligned": (0.25, 0.5, 1.0), "attributes": (0.25, 0.5)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDREC_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache-dir", default="runs/feature-cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    dataset = load_movielens_100k(args.data_dir)
    provenance, config = dataset_summary(dataset.interactions, dataset.name), EvaluationConfig(ks=(10, 20))
    rows = []
    for seed in args.seeds:
        split = protocol_splits(dataset.interactions, seed)["cold-item"]

        def score(**kwargs) -> tuple:
            model, metrics, _, _ = fit_and_score(
                lambda s: HybridRecommender(seed=s, progress=False, use_gnn=False, feature_cache_dir=args.cache_dir,
                                            **kwargs), seed, split, "cold-item", dataset, provenance, config, FIT)
            return model.cold_block_weights_, metrics["recall@20"], metrics["ndcg@20"]

        weights, recall, ndcg = score()
        rows.append({"seed": seed, "weights": "validation-chosen (default)", "recall@20": recall, "ndcg@20": ndcg,
                     "chosen": str({k: v for k, v in weights.items() if k != "text:title"})})
        for values in itertools.product(*GRID.values()):
            fixed = dict(zip(GRID, values))
            _, recall, ndcg = score(tune_block_weights=False, attribute_weight=fixed["attributes"],
                                    block_weights={"text:title": 1.0, **{k: v for k, v in fixed.items()
                                                                          if k != "attributes"}})
            rows.append({"seed": seed, "weights": str(fixed), "recall@20": recall, "ndcg@20": ndcg, "chosen": ""})
        print(f"seed {seed}: {len(rows)} fits so far", file=sys.stderr, flush=True)

    table = pd.DataFrame(rows)
    means = table.groupby("weights", sort=False)[["recall@20", "ndcg@20"]].mean()
    default = means.loc["validation-chosen (default)"]
    best = means.drop("validation-chosen (default)").sort_values("recall@20", ascending=False)
    print("| block weights (title 1.0) | recall@20 | NDCG@20 |\n| --- | ---: | ---: |")
    print(f"| validation-chosen (default) | {default['recall@20']:.4f} | {default['ndcg@20']:.4f} |")
    for name, row in best.head(3).iterrows():
        print(f"| {name} (picked on test) | {row['recall@20']:.4f} | {row['ndcg@20']:.4f} |")
    worst = best.iloc[-1]
    print(f"| worst grid row: {best.index[-1]} | {worst['recall@20']:.4f} | {worst['ndcg@20']:.4f} |")
    print(f"\nmeans over seeds {args.seeds}; {len(best)} grid rows; test-picked best is "
          f"{100 * (best['recall@20'].iloc[0] / default['recall@20'] - 1):+.1f}% recall@20 over the default")
    chosen = table.loc[table["chosen"] != "", ["seed", "chosen", "recall@20"]]
    print("\nvalidation-chosen weights per seed:\n" + chosen.to_string(index=False))
    print("\nper-seed recall@20 of the test-picked row: "
          + ", ".join(f"{r:.4f}" for r in table.loc[table["weights"] == best.index[0], "recall@20"]))


if __name__ == "__main__":
    main()
