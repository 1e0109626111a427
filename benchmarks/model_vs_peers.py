"""hybridrec vs. its peers on MovieLens-100K, warm and cold-item, on the same splits.

Protocol (issue "Hybrid GNN + CF model"): ratings >= 4 are positives; users with >= 5 positives;
seeded random 80/20 split per user (warm); a seeded 20% of items hidden from training with all
their rows (cold-item: each test user ranks the cold items only); full ranking over non-training
items; metrics @20 (and P@10). Fit time and peak resident memory (sampled) are measured per fit.

    python benchmarks/model_vs_peers.py --seeds 0 1 2 --markdown benchmarks/results/model_vs_peers.md

Peers need ``pip install implicit`` and LightFM (``pip install "setuptools<70" cython wheel &&
pip install --no-build-isolation lightfm``); missing ones are reported and skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_builders.movielens import load_movielens_100k  # noqa: E402
from evaluation.ease import EASERecommender  # noqa: E402
from evaluation.protocol import EvaluationConfig, catalog_tables, dataset_summary, evaluate_model  # noqa: E402
from evaluation.splitters import SplitConfig, make_split  # noqa: E402
from hybridrec.recommender import HybridRecommender  # noqa: E402

HYBRID_FIT = {"item_text_cols": ["title", "overview"], "item_attr_cols": ["genres", "year"], "user_attr_cols": ["age", "gender", "occupation"]}


def methods(cache_dir: str) -> dict:
    """Name -> (factory(seed) -> model, fit keyword arguments, splits it runs on)."""
    import peers

    both, warm_only = ("warm", "cold-item"), ("warm",)
    return {
        "hybridrec (fused)": (lambda s: HybridRecommender(seed=s, progress=False, feature_cache_dir=cache_dir), HYBRID_FIT, both),
        "hybridrec (fused, gnn_weight 1.5 fixed)": (lambda s: HybridRecommender(seed=s, tune_gnn_weight=False,
                                                                                progress=False, feature_cache_dir=cache_dir),
                                                    HYBRID_FIT, both),
        "hybridrec CF head alone": (lambda s: HybridRecommender(seed=s, use_gnn=False, progress=False,
                                                                feature_cache_dir=cache_dir), HYBRID_FIT, both),
        "hybridrec GNN alone": (lambda s: HybridRecommender(seed=s, use_cf=False, progress=False,
                                                            feature_cache_dir=cache_dir), HYBRID_FIT, both),
        "EASE (lambda 250)": (lambda s: EASERecommender(l2=250.0), {}, warm_only),
        "ridge content->EASE (lambda 3)": (lambda s: peers.RidgeContentEASE(cache_dir=cache_dir), {}, ("cold-item",)),
        "implicit ALS": (lambda s: peers.ImplicitALS(seed=s), {}, warm_only),
        "implicit cosine item-kNN": (lambda s: peers.ImplicitItemKNN(), {}, warm_only),
        "LightFM WARP + genres": (lambda s: peers.LightFMWarp(seed=s), {}, both),
        "PyG LightGCN (3 layers, 100 epochs)": (lambda s: peers.PyGLightGCN(seed=s), {}, warm_only),
    }


def protocol_splits(interactions: pd.DataFrame, seed: int) -> dict:
    """The issue's two splits of the positives (rating >= 4, users with >= 5): ``"warm"`` (random
    80/20 per user) and ``"cold-item"`` (20% of the items hidden with all their rows)."""
    return {
        "warm": make_split(interactions, SplitConfig(kind="random", test_ratio=0.2, seed=seed, min_rating=4.0,
                                                     min_positives=5)),
        "cold-item": make_split(interactions, SplitConfig(kind="cold-item", cold_share=0.2, test_ratio=0.0, seed=seed,
                                                          min_rating=4.0, min_positives=5)),
    }


class PeakMemory:
    """Samples this process's resident memory in a thread; ``peak_mb`` is the rise over the start."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.process = interval, psutil.Process(os.getpid())

    def __enter__(self) -> "PeakMemory":
        self.start = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def fit_and_score(factory, seed: int, split, split_name: str, dataset, provenance: dict,
                  config: EvaluationConfig, fit_kwargs: dict) -> tuple | None:
    """Fit ``factory(seed)`` on one protocol split and score its segment (``warm`` or ``cold_item``).

    Returns:
        ``(model, segment metrics, fit seconds, peak MB)``, or None when the model's package is missing.
    """
    items, users = catalog_tables(split, dataset.items, dataset.users)
    try:
        model = factory(seed)
        started = time.perf_counter()
        with PeakMemory() as memory:
            model.fit(split.train, items=items, users=users, **fit_kwargs)
    except ImportError as err:
        logging.warning("skipped, a package is missing: %s", err)
        return None
    fit_seconds = time.perf_counter() - started
    result = evaluate_model(model, split, dataset=provenance, config=config, fit_seconds=fit_seconds)
    return model, result.segments["warm" if split_name == "warm" else "cold_item"], fit_seconds, memory.peak_mb


def fit_and_score_splits(factory, seed: int, splits: dict, split_names, dataset, provenance: dict,
                         config: EvaluationConfig, fit_kwargs: dict):
    """:func:`fit_and_score` on each of ``split_names``; stops at the first whose package is missing.

    Yields:
        ``(split name, model, segment metrics, fit seconds, peak MB)``.
    """
    for split_name in split_names:
        measured = fit_and_score(factory, seed, splits[split_name], split_name, dataset, provenance, config,
                                 fit_kwargs)
        if measured is None:
            return
        yield (split_name, *measured)


def run(seeds: list[int], selected: list[str] | None, data_dir: str | None, cache_dir: str) -> pd.DataFrame:
    dataset = load_movielens_100k(data_dir)
    provenance = dataset_summary(dataset.interactions, dataset.name)
    config = EvaluationConfig(ks=(10, 20))
    rows = []
    table = methods(cache_dir)
    for name in selected or list(table):
        if name not in table:
            raise SystemExit(f"unknown method {name!r}; choose from {list(table)}")
    for seed in seeds:
        splits = protocol_splits(dataset.interactions, seed)
        for name, (factory, fit_kwargs, split_names) in table.items():
            if selected and name not in selected:
                continue
            for split_name, model, metrics, fit_seconds, peak_mb in fit_and_score_splits(
                    factory, seed, splits, split_names, dataset, provenance, config, fit_kwargs):
                rows.append({"method": name, "split": split_name, "seed": seed,
                             "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"],
                             "precision@10": metrics["precision@10"], "fit_s": fit_seconds,
                             "peak_mb": peak_mb, "users": metrics["n_users"]})
                print(f"seed {seed} {split_name:9s} {name:38s} recall@20 {metrics['recall@20']:.4f} "
                      f"ndcg@20 {metrics['ndcg@20']:.4f} P@10 {metrics['precision@10']:.4f} "
                      f"fit {fit_seconds:6.1f} s peak +{peak_mb:6.0f} MB", flush=True)
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (split, method), best first within each split."""
    summary = (results.groupby(["split", "method"], sort=False)
               .agg(**{"recall@20": ("recall@20", "mean"), "ndcg@20": ("ndcg@20", "mean"),
                       "P@10": ("precision@10", "mean"), "fit s": ("fit_s", "mean"),
                       "peak MB": ("peak_mb", "max"), "seeds": ("seed", "nunique")})
               .reset_index())
    return summary.sort_values(["split", "recall@20"], ascending=[False, False], kind="stable")


def to_markdown(summary: pd.DataFrame) -> str:
    lines = ["| split | method | recall@20 | NDCG@20 | P@10 | fit s | peak MB | seeds |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in summary.itertuples(index=False):
        lines.append(f"| {row.split} | {row.method} | {row[2]:.4f} | {row[3]:.4f} | {row[4]:.4f} | "
                     f"{row[5]:.1f} | {row[6]:.0f} | {row[7]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", help="subset of method names (default: all)")
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDREC_DATA_DIR"))
    parser.add_argument("--cache-dir", default="runs/feature-cache")
    parser.add_argument("--markdown", help="also write the summary table to this file")
    parser.add_argument("--csv", help="also write per-seed rows to this CSV")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = run(args.seeds, args.methods, args.data_dir, args.cache_dir)
    summary = summarise(results)
    table = to_markdown(summary)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    if args.csv:
        results.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
