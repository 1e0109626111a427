"""``hybridrec train`` and ``hybridrec evaluate --hybrid`` end to end on MovieLens-100K."""

from __future__ import annotations

import json

import pytest

from hybridrec.cli import main
from hybridrec.errors import HybridRecError
from hybridrec.recommender import HybridRecommender
from hybridrec.recommender_config import hybrid_from_config
from hybridrec.recommender_base import RecommenderBase


def test_train_writes_a_loadable_model(data_dir, tmp_path, capsys):
    config = tmp_path / "model.toml"
    config.write_text("[train]\nepochs = 5\ndim = 16\n\n[model]\ngnn_weight = 1.0\n")
    out = tmp_path / "model"
    code = main(["train", "--dataset", "movielens-100k", "--data-dir", str(data_dir), "--text-cols", "",
                 "--no-images", "--min-rating", "4", "--config", str(config), "--out", str(out),
                 "--json", str(tmp_path / "train.json"), "--validation-order", "latest"])
    assert code == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert json.loads((tmp_path / "train.json").read_text()) == summary
    assert summary["fit_summary"]["cf_head"] == "dense_ease"  # 1,682 items: the dense head fits
    assert summary["fit_summary"]["gnn_training_mode"] == "full_graph"
    assert summary["fit_summary"]["peak_rss_mb"] > 0
    assert summary["fit_summary"]["validation_order"] == "latest"  # the flag reaches the fit
    assert summary["interactions"] == 55_375  # ratings >= 4 in MovieLens-100K
    model = RecommenderBase.load(out)
    assert isinstance(model, HybridRecommender)
    assert model.dim == 16 and model.epochs == 5 and model.gnn_weight == 1.0 and model.validation_order == "latest"
    assert len(model.recommend([1], k=10)) == 10


def test_unknown_model_key_in_config_is_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[model]\ngnn_wieght = 1.0\n")
    with pytest.raises(HybridRecError, match="gnn_wieght"):
        hybrid_from_config(config)


def test_evaluate_hybrid_against_ease(data_dir, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(["evaluate", "--dataset", "movielens-100k", "--data-dir", str(data_dir), "--hybrid",
                 "--baseline", "ease", "--text-cols", "", "--no-images", "--min-rating", "4",
                 "--k", "20", "--json", str(report)])
    assert code == 0
    models = json.loads(report.read_text())["models"]
    hybrid = models["hybridrec"]["segments"]["warm"]["recall@20"]
    ease = models["ease"]["segments"]["warm"]["recall@20"]
    # IDs, genres, years and user attributes, default training: ahead of EASE on the same split.
    assert hybrid > ease > 0.3
