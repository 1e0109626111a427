"""``hybridrec export-similar`` and ``hybridrec recommend`` on saved models fitted to MovieLens-100K."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.decomposition import TruncatedSVD

from hybridrec.cli import id_files
from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap
from hybridrec.recommender_base import RecommenderBase
from hybridrec.topk import exact_top_k
from hybridrec.topk_table import read_table, read_table_metadata

from cli_runner import export, recommend_cli, run_cli  # noqa: E402


class SimilarityOnlyRecommender(RecommenderBase):
    """Truncated-SVD factors; item–item similarity through ``item_similarity`` only."""

    def __init__(self, *, n_factors: int = 16, seed: int = 0) -> None:
        self.n_factors = n_factors
        self.seed = seed

    def _fit(self, interactions, items, users, **fit_options) -> None:
        svd = TruncatedSVD(n_components=self.n_factors, random_state=self.seed).fit(self.user_items_)
        self.item_factors_ = torch.from_numpy(np.ascontiguousarray(svd.components_.T, dtype=np.float32))
        self.user_factors_ = torch.from_numpy(svd.transform(self.user_items_).astype(np.float32))

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        return self.user_factors_[torch.from_numpy(np.asarray(user_index))] @ self.item_factors_.T

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        unit = torch.nn.functional.normalize(self.item_factors_, dim=1)
        return unit[torch.from_numpy(np.asarray(item_index))] @ unit.T

    def _state(self) -> dict[str, torch.Tensor]:
        return {"item_factors": self.item_factors_, "user_factors": self.user_factors_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.item_factors_, self.user_factors_ = state["item_factors"], state["user_factors"]


class VectorRecommender(SimilarityOnlyRecommender):
    """Also exposes ``item_vectors()``."""

    def item_vectors(self) -> torch.Tensor:
        return self.item_factors_


class HistoryRecommender(VectorRecommender):
    """Also ranks for new users: the mean of their items' vectors against every item."""

    def recommend_for_history(self, item_ids, k: int = 10, filter_seen: bool = True,
                              candidates=None) -> pd.DataFrame:
        """The same contract as ``HybridRecommender.recommend_for_history``: one new user's items."""
        seen = self.item_ids_.to_index(list(item_ids))
        scores = self.item_factors_ @ self.item_factors_[torch.from_numpy(seen)].mean(dim=0)
        if filter_seen:
            scores[torch.from_numpy(seen)] = -torch.inf
        top = torch.topk(scores, k)
        return pd.DataFrame({"item_id": self.item_ids_.to_ids(top.indices.numpy()),
                             "score": top.values.numpy(), "rank": np.arange(1, k + 1)})


@pytest.fixture(scope="module")
def saved_models(movielens, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for model_class in (SimilarityOnlyRecommender, VectorRecommender, HistoryRecommender):
        path = folder / model_class.__name__
        model_class().fit(movielens.interactions).save(path)
        paths[model_class.__name__] = str(path)
    return paths


def test_export_from_item_vectors_is_exact(saved_models, tmp_path):
    out = tmp_path / "similar.parquet"
    assert export(["--model", saved_models["VectorRecommender"], "--k", "5", "--out", str(out)]) == 0
    model = RecommenderBase.load(saved_models["VectorRecommender"])
    scores, neighbours = exact_top_k(model.item_vectors(), 5, device="cpu")
    table = read_table(out)
    assert table.columns.tolist() == ["item_id", "similar_item_id", "score", "rank"]
    np.testing.assert_array_equal(table["similar_item_id"].to_numpy(), model.item_ids_.to_ids(neighbours.ravel()))
    np.testing.assert_allclose(table["score"].to_numpy(), scores.ravel(), atol=1e-6)
    assert (table["item_id"] != table["similar_item_id"]).all()


def test_export_from_item_similarity_matches_the_models_similar_items(saved_models, tmp_path):
    out = tmp_path / "similar.csv"
    assert export(["--model", saved_models["SimilarityOnlyRecommender"], "--k", "7", "--out", str(out)]) == 0
    model = RecommenderBase.load(saved_models["SimilarityOnlyRecommender"])
    expected = model.similar_items(model.item_ids_.ids, k=7)
    table = read_table(out)
    pd.testing.assert_frame_equal(table[["item_id", "similar_item_id", "rank"]],
                                  expected[["item_id", "similar_item_id", "rank"]], check_dtype=False)
    np.testing.assert_allclose(table["score"], expected["score"], atol=1e-6)
    assert read_table_metadata(out)["settings"]["metric"] == "model"


def test_metric_does_not_apply_to_a_similarity_only_model(saved_models, tmp_path):
    with pytest.raises(HybridRecError, match="no item_vectors"):
        export(["--model", saved_models["SimilarityOnlyRecommender"], "--metric", "dot", "--out",
                str(tmp_path / "t.parquet")])


def test_shards_then_merge_flag_give_the_full_table(saved_models, tmp_path):
    model_dir = saved_models["VectorRecommender"]
    export(["--model", model_dir, "--k", "4", "--out", str(tmp_path / "full.parquet")])
    shards = [str(tmp_path / f"part{i}.csv") for i in range(3)]
    for index, path in enumerate(shards):
        export(["--model", model_dir, "--k", "4", "--shard", f"{index}/3", "--out", path])
    assert export(["--merge", *shards, "--out", str(tmp_path / "merged.parquet")]) == 0
    pd.testing.assert_frame_equal(read_table(tmp_path / "merged.parquet"), read_table(tmp_path / "full.parquet"))
    with pytest.raises(HybridRecError, match=r"missing shard.*\(shard 2/3\)"):
        export(["--merge", *shards[:2], "--out", str(tmp_path / "incomplete.parquet")])
    assert not (tmp_path / "incomplete.parquet").exists()


def test_candidates_items_list_and_min_score_files(saved_models, movielens, tmp_path):
    model_dir = saved_models["VectorRecommender"]
    in_stock = movielens.items["item_id"].to_numpy()[::4]
    pd.DataFrame({"item_id": in_stock}).to_csv(tmp_path / "stock.csv", index=False)
    (tmp_path / "queries.txt").write_text("1\n50\n181\n", encoding="utf-8")
    out = tmp_path / "t.parquet"
    export(["--model", model_dir, "--k", "20", "--out", str(out), "--candidates", str(tmp_path / "stock.csv"),
            "--items-list", str(tmp_path / "queries.txt"), "--min-score", "0.3"])
    table = read_table(out)
    assert table["item_id"].unique().tolist() == [1, 50, 181]
    assert table["similar_item_id"].isin(in_stock).all()
    assert (table["score"] >= 0.3).all()


def test_an_id_file_with_a_bad_id_names_the_line(saved_models, tmp_path):
    (tmp_path / "queries.csv").write_text("item_id\n1\n2\nabc\n", encoding="utf-8")
    with pytest.raises(HybridRecError, match=r"queries\.csv:4.*'abc' is not an integer"):
        export(["--model", saved_models["VectorRecommender"], "--items-list", str(tmp_path / "queries.csv"),
                "--out", str(tmp_path / "t.parquet")])


def test_approx_faiss_reports_recall(saved_models, tmp_path, capsys):
    pytest.importorskip("faiss")
    export(["--model", saved_models["VectorRecommender"], "--k", "10", "--approx", "faiss", "--recall-sample", "200",
            "--out", str(tmp_path / "t.parquet")])
    recall = read_table_metadata(tmp_path / "t.parquet")["stats"]["recall_at_k"]
    assert recall > 0.9
    assert f"{recall:.4f}" in capsys.readouterr().out


def test_recommend_all_users_matches_model_recommend(saved_models, tmp_path):
    model_dir = saved_models["VectorRecommender"]
    out = tmp_path / "recs.parquet"
    assert recommend_cli(["--model", model_dir, "--k", "20", "--out", str(out), "--batch-size", "300"]) == 0
    model = RecommenderBase.load(model_dir)
    expected = model.recommend(model.user_ids_.ids, k=20)
    table = read_table(out)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert len(table) == 20 * len(model.user_ids_)


def test_recommend_for_listed_users_in_shards(saved_models, tmp_path):
    model_dir = saved_models["VectorRecommender"]
    pd.DataFrame({"user_id": [5, 3, 900]}).to_csv(tmp_path / "users.csv", index=False)
    recommend_cli(["--model", model_dir, "--k", "3", "--users", str(tmp_path / "users.csv"), "--out",
                   str(tmp_path / "from_file.csv")])
    parts = []
    for index in range(2):
        parts.append(str(tmp_path / f"part{index}.parquet"))
        recommend_cli(["--model", model_dir, "--k", "3", "--user-ids", "5", "3", "900", "--shard", f"{index}/2",
                       "--out", parts[-1]])
    recommend_cli(["--merge", *parts, "--out", str(tmp_path / "merged.parquet")])
    table = read_table(tmp_path / "from_file.csv")
    assert table["user_id"].tolist() == [5] * 3 + [3] * 3 + [900] * 3
    pd.testing.assert_frame_equal(read_table(tmp_path / "merged.parquet"), table)


def test_recommend_from_history_needs_recommend_for_history(saved_models, tmp_path):
    pd.DataFrame({"user_id": ["new-a", "new-a", "new-b"], "item_id": [1, 2, 50]}).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(HybridRecError, match="no recommend_for_history"):
        recommend_cli(["--model", saved_models["VectorRecommender"], "--history", str(tmp_path / "h.csv"),
                       "--out", str(tmp_path / "r.parquet")])
    assert not (tmp_path / "r.parquet").exists()


def test_recommend_from_history_for_new_users(saved_models, tmp_path):
    pd.DataFrame({"user_id": [5001, 5001, 5002], "item_id": [1, 2, 50]}).to_csv(tmp_path / "h.csv", index=False)
    recommend_cli(["--model", saved_models["HistoryRecommender"], "--history", str(tmp_path / "h.csv"), "--k", "5",
                   "--out", str(tmp_path / "r.parquet")])
    table = read_table(tmp_path / "r.parquet")
    assert table["user_id"].tolist() == [5001] * 5 + [5002] * 5
    assert not table.loc[table["user_id"] == 5001, "item_id"].isin([1, 2]).any()


def test_unknown_users_are_named(saved_models, tmp_path):
    with pytest.raises(HybridRecError, match="unknown user id.*99999"):
        recommend_cli(["--model", saved_models["VectorRecommender"], "--user-ids", "1", "99999",
                       "--out", str(tmp_path / "r.parquet")])


def test_read_id_file_plain_text_strings(tmp_path):
    (tmp_path / "ids.txt").write_text("sku-1\n\nsku-2\n", encoding="utf-8")
    ids = id_files.read_id_file(tmp_path / "ids.txt", IdMap(["sku-1", "sku-2"]))
    assert ids.tolist() == ["sku-1", "sku-2"]


def test_content_only_export_gives_neighbours_to_items_without_a_photo(data_dir, tmp_path):
    pytest.importorskip("hybridrec.features.feature_cache")
    root = data_dir / "fashion-products"
    styles = pd.read_csv(root / "styles.csv", usecols=["id", "articleType", "productDisplayName"], nrows=400)
    has_photo = styles["id"].map(lambda item_id: (root / "images" / f"{item_id}.jpg").is_file())
    catalog = pd.concat([styles[has_photo].head(24), styles[~has_photo].head(6)], ignore_index=True)
    catalog.to_csv(tmp_path / "items.csv", index=False)
    out = tmp_path / "similar.csv"
    assert export(["--items", str(tmp_path / "items.csv"), "--item-id-col", "id", "--text-cols", "productDisplayName",
                   "--attr-cols", "articleType", "--image-dir", str(root / "images"), "--k", "5",
                   "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--out", str(out)]) == 0
    table = read_table(out)
    assert (table.groupby("item_id").size() == 5).all()
    assert set(table["item_id"]) == set(catalog["id"])  # the 6 items without a photo included
    assert (table["item_id"] != table["similar_item_id"]).all()


def test_content_only_export_checks_the_shared_dimension(tmp_path):
    pd.DataFrame({"id": [1, 2], "title": ["red shirt", "blue jeans"]}).to_csv(tmp_path / "items.csv", index=False)
    with pytest.raises(HybridRecError, match="--cca-components must be >= 1"):
        export(["--items", str(tmp_path / "items.csv"), "--item-id-col", "id", "--text-cols", "title",
                "--cca-components", "0", "--out", str(tmp_path / "s.parquet")])


def test_recommend_exclude_file_and_json_summary(saved_models, tmp_path, capsys):
    model_dir = saved_models["VectorRecommender"]
    model = RecommenderBase.load(model_dir)
    users = model.user_ids_.ids[:30]
    expected_full = model.recommend(users, k=30)
    excluded = expected_full.groupby("user_id")["item_id"].first().unique()
    (tmp_path / "users.txt").write_text("\n".join(map(str, users)) + "\n")
    (tmp_path / "out_of_stock.txt").write_text("\n".join(map(str, excluded)) + "\n")
    out = tmp_path / "recs.parquet"
    assert recommend_cli(["--model", model_dir, "--users", str(tmp_path / "users.txt"), "--k", "10",
                          "--exclude", str(tmp_path / "out_of_stock.txt"), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_rows"] == 10 * len(users) and summary["n_queries"] == len(users)
    table = read_table(out)
    assert not set(table["item_id"]) & set(excluded)
    pd.testing.assert_frame_equal(table, model.recommend(users, k=10, exclude=excluded), check_dtype=False)


def test_export_similar_json_summary_on_stdout(saved_models, tmp_path, capsys):
    out = tmp_path / "similar.parquet"
    assert export(["--model", saved_models["VectorRecommender"], "--k", "5", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["n_rows"] == 5 * summary["n_queries"] and summary["method"] == "exact"
    assert "wrote" in captured.err
