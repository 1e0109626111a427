"""Preliminary modality probe for MovieLens-100K (title, TMDB overview, poster): hybridrec warm and
cold-item, 3 split seeds, same protocol as ``model_vs_peers.py``. Not yet the full ablation with peers.

    HYBRIDREC_DATA_DIR=../shared/data python benchmarks/modality_probe.py
"""

import os

from data_builders.movielens import load_movielens_100k
from evaluation.protocol import EvaluationConfig, catalog_tables, dataset_summary, evaluate_model
from evaluation.splitters import SplitConfig, make_split
from hybridrec.recommender import HybridRecommender
import numpy as np

d = load_movielens_100k(os.environ.get('HYBRIDREC_DATA_DIR')); prov = dataset_summary(d.interactions, d.name)
configs = {
  "title": ({"item_text_cols": ["title"]}, {}),
  "title+overview": ({"item_text_cols": ["title", "overview"]}, {}),
  "title+poster": ({"item_text_cols": ["title"], "item_image_col": "image_path"}, {}),
  "title+overview+poster": ({"item_text_cols": ["title", "overview"], "item_image_col": "image_path"}, {}),
  "title+overview+poster w.5": ({"item_text_cols": ["title", "overview"], "item_image_col": "image_path"}, {"block_weights": {"image": 0.5, "text:overview": 0.5}}),
}
res = {}
for seed in [0, 1, 2]:
    for kind in ["warm", "cold"]:
        sp = make_split(d.interactions, SplitConfig(kind="random" if kind == "warm" else "cold-item", cold_share=0.2, test_ratio=0.2 if kind == "warm" else 0.0, seed=seed, min_rating=4.0, min_positives=5))
        items, users = catalog_tables(sp, d.items, d.users)
        seg = "warm" if kind == "warm" else "cold_item"
        for name, (fit, params) in configs.items():
            m = HybridRecommender(seed=seed, progress=False, **params).fit(
                sp.train, items=items, users=users, item_attr_cols=["genres"], user_attr_cols=["age", "gender", "occupation"], **fit)
            r = evaluate_model(m, sp, dataset=prov, config=EvaluationConfig(ks=(20,), segments=(seg,))).segments[seg]
            res.setdefault((kind, name), []).append((r["recall@20"], r["ndcg@20"]))
            print(seed, kind, name, round(r["recall@20"], 4), round(r["ndcg@20"], 4), m.modality_gates_, flush=True)
for k, v in res.items():
    print(k, np.round(np.mean(v, 0), 4))
