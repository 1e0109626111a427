"""Where the cold-item gap lies: how popular a new movie will be, which its content barely tells.

On the cold-item split of ``model_vs_peers.py`` (MovieLens-100K), the default hybridrec (genres +
year + title + overview + aligned poster) is fitted once per split seed and each test user ranks
the cold items, as the protocol does. The script then scores, on the same users and items:

* **oracle popularity**: the cold items ranked by their number of test positives, the same list
  for every user; and hybridrec's z-scored score plus the z-scored log of that count. Both read
  the test labels: they are references for how much a popularity estimate is worth, not methods;
* **predicted popularity**: gradient-boosted trees from item metadata (genre flags, year, release
  date, whether an overview and a poster exist) to the log popularity of the warm items, added to
  hybridrec's score at weight 0.25;
* **a learned cold ranker**: a logistic regression over per-(user, item) signals (CF-head and GNN
  scores, the cosine between the item's text and the mean text of the user's history, the
  predicted popularity, release date against the user's last training activity), fitted on the
  test labels of half of the users and scored on the other half, both ways. It learns from the
  real cold items' labels, which no method has, so it is an optimistic estimate of what stacking
  these signals could add (a pointwise linear model, so not a strict bound).

It also prints how well each popularity estimate correlates with the test popularity, and a second
table scores the multimodal issue's own peer configurations (the ridge content->EASE map on genre
flags plus one block per embedding, no year buckets) beside the figures the issue quotes for them.

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/cold_popularity_headroom.py --seeds 0 1 2

Needs scikit-learn (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
from data_builders.movielens import load_movielens_100k  # noqa: E402
from evaluation.protocol import EvaluationConfig, catalog_tables, dataset_summary, evaluate_model  # noqa: E402
from hybridrec.item_content import encode_item_content  # noqa: E402
from hybridrec.recommender import HybridRecommender  # noqa: E402
from model_vs_peers import protocol_splits  # noqa: E402

FIT = {"item_text_cols": ["title", "overview"], "item_image_col": "image_path", "item_attr_cols": ["genres", "year"],
       "user_attr_cols": ["age", "gender", "occupation"]}
K = 20
#: The issue's ridge peer configurations: (text columns, image column, ridge strength, its quoted figures).
ISSUE_PEERS = {
    "genres + title, lambda 3": (["title"], None, 3.0, "0.345 / 0.292"),
    "genres + title + poster, lambda 3": (["title"], "image_path", 3.0, "0.368 / 0.302"),
    "genres + title + overview + poster, lambda 10": (["title", "overview"], "image_path", 10.0, "0.351 / 0.299"),
}


def _zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Standardise each row of ``[users, items]``."""
    return (scores - scores.mean(1, keepdims=True)) / np.maximum(scores.std(1, keepdims=True), 1e-12)


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / max(float(values.std()), 1e-12)


def ranking_metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """recall@20 and NDCG@20 (``evaluation.metrics`` definitions) of ``scores`` ``[users, items]``
    against boolean ``truth`` of the same shape."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    hits = np.take_along_axis(truth, top, axis=1)
    relevant = truth.sum(1)
    gains = 1.0 / np.log2(np.arange(2, K + 2))
    ideal = np.cumsum(gains)[np.minimum(relevant, K) - 1]
    return {"recall@20": float(np.mean(hits.sum(1) / relevant)),
            "ndcg@20": float(np.mean((hits * gains).sum(1) / ideal))}


def metadata_features(items: pd.DataFrame) -> np.ndarray:
    """``[n_items, F]`` per-item metadata the popularity model reads (in ``items`` row order)."""
    genres = items["genres"].map(lambda g: list(g) if isinstance(g, (list, tuple, np.ndarray)) else [])
    names = sorted({name for row in genres for name in row})
    flags = np.array([[name in row for name in names] for row in genres], dtype=np.float32)
    released = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce")
    days = (released - pd.Timestamp("1990-01-01")).dt.days.to_numpy(dtype=float)   # NaN where unknown
    has_overview = items["overview"].fillna("").astype(str).str.strip().str.len().to_numpy() > 0
    has_poster = items["image_path"].map(lambda p: isinstance(p, str) and os.path.exists(p)).to_numpy()
    return np.column_stack([flags, items["year"].to_numpy(dtype=float), days, has_overview, has_poster])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDREC_DATA_DIR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache-dir", default="runs/feature-cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression

    dataset = load_movielens_100k(args.data_dir)
    if "overview" not in dataset.items:
        raise SystemExit("ml-100k-tmdb/ (overviews and posters) was not found beside ml-100k/")
    provenance = dataset_summary(dataset.interactions, dataset.name)
    rows, peer_rows, correlations = [], [], []
    for seed in args.seeds:
        split = protocol_splits(dataset.interactions, seed)["cold-item"]
        items, users = catalog_tables(split, dataset.items, dataset.users)
        model = HybridRecommender(seed=seed, progress=False, feature_cache_dir=args.cache_dir)
        model.fit(split.train, items=items, users=users, **FIT)
        protocol = evaluate_model(model, split, dataset=provenance, config=EvaluationConfig(ks=(K,)))
        protocol = protocol.segments["cold_item"]

        # The protocol's cold-item segment: users with training history rank the held-out items.
        cold_ids = np.asarray(split.cold_item_ids)
        test = split.test[split.test["item_id"].isin(cold_ids) & split.test["user_id"].isin(split.train["user_id"])]
        user_ids = np.unique(test["user_id"])
        user_index, cold = model.user_ids_.to_index(user_ids), model.item_ids_.to_index(cold_ids)
        truth = np.zeros((len(user_ids), len(cold_ids)), dtype=bool)
        truth[np.searchsorted(user_ids, test["user_id"]), pd.Index(cold_ids).get_indexer(test["item_id"])] = True

        fused = model.score_users(user_index).numpy()[:, cold]
        history = (model.user_items_[user_index] > 0).astype(np.float32)
        cf = _zscore_rows(np.asarray(history @ model.item_weights_.numpy()))[:, cold]
        gnn = _zscore_rows((model.user_embeddings_[torch.from_numpy(user_index)] @ model.item_embeddings_.T).numpy())[:, cold]

        # Popularity: the test count (oracle) and one predicted from metadata, trained on warm items.
        log_popularity = np.log1p(truth.sum(0))
        table = items.set_index("item_id").reindex(model.item_ids_.ids)
        features = metadata_features(table.reset_index())
        counts = np.asarray((model.user_items_ > 0).sum(axis=0)).ravel()
        warm = np.flatnonzero(counts > 0)
        booster = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                                min_samples_leaf=20, l2_regularization=1.0, random_state=seed)
        predicted = booster.fit(features[warm], np.log1p(counts[warm])).predict(features[cold])

        # Text profile: the cosine between an item's text and the mean text of the user's history.
        content = encode_item_content(items, model.item_ids_, text_cols=FIT["item_text_cols"], image_col=None,
                                      cache_dir=args.cache_dir, progress=False)
        text = np.hstack(list(content.blocks.values()))
        text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
        profile = np.asarray(history @ text)
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        text_profile = _zscore_rows(profile @ text[cold].T)

        released = pd.to_datetime(table["release_date"], format="%d-%b-%Y", errors="coerce").to_numpy()[cold]
        last_active = pd.to_datetime(split.train.groupby("user_id")["timestamp"].max().reindex(user_ids), unit="s")
        gap_days = (released[None, :] - last_active.to_numpy()[:, None]) / np.timedelta64(1, "D")
        gap_days = np.nan_to_num(gap_days, nan=-3650.0)

        signals = np.stack([cf, gnn, text_profile, np.broadcast_to(_standardise(predicted), cf.shape),
                            (gap_days > -30).astype(np.float64), np.clip(gap_days, -3650, 100) / 1000], axis=-1)
        half = np.random.default_rng(seed).random(len(user_ids)) < 0.5
        stacked = np.zeros_like(fused)
        for fitted in (half, ~half):
            ranker = LogisticRegression(C=1.0, max_iter=1000).fit(signals[fitted].reshape(-1, signals.shape[-1]),
                                                                  truth[fitted].ravel())
            stacked[~fitted] = ranker.decision_function(
                signals[~fitted].reshape(-1, signals.shape[-1])).reshape(-1, len(cold))

        base = _zscore_rows(fused)
        candidates = {
            "hybridrec (default)": fused,
            "oracle popularity alone (test labels)": np.broadcast_to(log_popularity, fused.shape),
            "hybridrec + oracle log-popularity, weight 1 (test labels)": base + _standardise(log_popularity),
            "hybridrec + popularity predicted from metadata, weight 0.25": base + 0.25 * _standardise(predicted),
            "logistic regression over all signals (test labels of the other half of users)": stacked,
        }
        for name, scores in candidates.items():
            rows.append({"seed": seed, "method": name, **ranking_metrics(scores, truth)})
        for name, (text_cols, image_col, content_l2, _) in ISSUE_PEERS.items():
            peer = peers.RidgeContentEASE(content_l2=content_l2, cache_dir=args.cache_dir, text_cols=text_cols,
                                          image_col=image_col, with_year=False).fit(split.train, items=items, users=users)
            peer_scores = peer.score_users(peer.user_ids_.to_index(user_ids)).numpy()[:, peer.item_ids_.to_index(cold_ids)]
            peer_rows.append({"seed": seed, "method": name, **ranking_metrics(peer_scores, truth)})
        mine = ranking_metrics(fused, truth)["recall@20"]
        if abs(mine - protocol["recall@20"]) > 1e-3:
            raise SystemExit(f"seed {seed}: this script's recall@20 {mine:.4f} differs from the protocol's "
                             f"{protocol['recall@20']:.4f}")
        correlations.append({"seed": seed,
                             "hybridrec mean cold score": np.corrcoef(fused.mean(0), log_popularity)[0, 1],
                             "popularity predicted from metadata": np.corrcoef(predicted, log_popularity)[0, 1]})
        print(f"seed {seed}: " + ", ".join(f"{r['method']} {r['recall@20']:.4f}" for r in rows[-len(candidates):]),
              flush=True)

    table = pd.DataFrame(rows).groupby("method", sort=False)[["recall@20", "ndcg@20"]].mean()
    print(f"\nmeans over seeds {args.seeds} ({len(args.seeds)} cold-item splits)")
    print("| cold items | recall@20 | NDCG@20 |\n| --- | ---: | ---: |")
    for name, values in table.iterrows():
        print(f"| {name} | {values['recall@20']:.4f} | {values['ndcg@20']:.4f} |")
    table = pd.DataFrame(peer_rows).groupby("method", sort=False)[["recall@20", "ndcg@20"]].mean()
    print("\n| the issue's ridge peer configurations | recall@20 | NDCG@20 | the issue's figures |"
          "\n| --- | ---: | ---: | ---: |")
    for name, values in table.iterrows():
        print(f"| {name} | {values['recall@20']:.4f} | {values['ndcg@20']:.4f} | {ISSUE_PEERS[name][3]} |")
    correlation = pd.DataFrame(correlations).drop(columns="seed").mean()
    print("\nPearson correlation with the log test popularity of the cold items: "
          + "; ".join(f"{name} {value:.3f}" for name, value in correlation.items()))


if __name__ == "__main__":
    main()
