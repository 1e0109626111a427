"""``--engine ray`` of ``export-similar`` and ``recommend`` on a local two-CPU Ray cluster: the same
tables (ids and ranks) as the one-process export, for a hybrid model fitted to MovieLens-100K."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from hybridrec.errors import HybridRecError
from hybridrec.topk_table import read_table, read_table_metadata

from cli_runner import export, recommend_cli, run_cli  # noqa: E402

ray = pytest.importorskip("ray", reason="the Ray engine's tests need hybridrec[distributed]")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """One local Ray cluster of 2 CPUs for the module (the engine uses a session already open)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(movielens, tmp_path_factory) -> str:
    """The hybrid model with its sparse CF head (no GNN: a second's fit), saved."""
    from hybridrec import HybridRecommender

    folder = tmp_path_factory.mktemp("ray-model") / "model"
    HybridRecommender(cf_head="sparse", use_gnn=False, seed=0, progress=False).fit(movielens.interactions).save(folder)
    return str(folder)


def assert_same_table(ray_table: pd.DataFrame, local_table: pd.DataFrame) -> None:
    """Ids and ranks exactly equal; scores equal to float32 rounding."""
    id_columns = [column for column in local_table.columns if column != "score"]
    pd.testing.assert_frame_equal(ray_table[id_columns], local_table[id_columns])
    np.testing.assert_allclose(ray_table["score"], local_table["score"], rtol=1e-6, atol=1e-7)


def test_export_similar_on_ray_equals_local_and_its_parts_equal_hand_made_shards(model_dir, tmp_path):
    common = ["--model", model_dir, "--k", "10"]
    export([*common, "--out", str(tmp_path / "local.parquet")])
    parts = tmp_path / "parts"
    assert export([*common, "--engine", "ray", "--ray-blocks", "3", "--ray-parts", str(parts),
                   "--out", str(tmp_path / "ray.parquet")]) == 0
    local, on_ray = read_table(tmp_path / "local.parquet"), read_table(tmp_path / "ray.parquet")
    assert len(local) == 10 * 1682
    assert_same_table(on_ray, local)
    assert read_table_metadata(tmp_path / "ray.parquet")["settings"] == read_table_metadata(
        tmp_path / "local.parquet")["settings"]
    # Each part is what --shard i/3 writes: the same metadata (but timings) and rows.
    for index in range(3):
        part = parts / f"part-{index:05d}-of-00003.parquet"
        export([*common, "--shard", f"{index}/3", "--out", str(tmp_path / f"shard{index}.parquet")])
        shard_meta, part_meta = (read_table_metadata(path) for path in (tmp_path / f"shard{index}.parquet", part))
        assert (part_meta["settings"], part_meta["shard"]) == (shard_meta["settings"], shard_meta["shard"])
        assert_same_table(read_table(part), read_table(tmp_path / f"shard{index}.parquet"))


def test_export_similar_on_ray_leaves_no_parts_beside_the_output(model_dir, tmp_path):
    export(["--model", model_dir, "--k", "5", "--engine", "ray", "--out", str(tmp_path / "similar.csv")])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["similar.csv", "similar.csv.meta.json"]


def test_recommend_on_ray_equals_local(model_dir, tmp_path):
    common = ["--model", model_dir, "--k", "20"]
    recommend_cli([*common, "--out", str(tmp_path / "local.parquet")])
    assert recommend_cli([*common, "--engine", "ray", "--ray-blocks", "5", "--batch-size", "64",
                          "--out", str(tmp_path / "ray.parquet")]) == 0
    local = read_table(tmp_path / "local.parquet")
    assert len(local) == 20 * 943
    assert_same_table(read_table(tmp_path / "ray.parquet"), local)


def test_recommend_on_ray_for_new_users_from_a_history(model_dir, movielens, tmp_path):
    history = movielens.interactions.iloc[:300][["user_id", "item_id"]].assign(user_id=lambda t: t.user_id + 10_000)
    history.to_csv(tmp_path / "history.csv", index=False)
    common = ["--model", model_dir, "--k", "8", "--history", str(tmp_path / "history.csv")]
    recommend_cli([*common, "--out", str(tmp_path / "local.parquet")])
    recommend_cli([*common, "--engine", "ray", "--ray-blocks", "2", "--out", str(tmp_path / "ray.parquet")])
    local = read_table(tmp_path / "local.parquet")
    assert local["user_id"].nunique() == history["user_id"].nunique()
    assert_same_table(read_table(tmp_path / "ray.parquet"), local)


def test_export_with_ray_of_item_vectors_equals_local(model_dir, tmp_path):
    from hybridrec.ray_engine import RayConfig, export_with_ray
    from hybridrec.recommender_base import RecommenderBase
    from hybridrec.similarity_export import export_similar_items

    model = RecommenderBase.load(model_dir)
    options = dict(item_ids=model.item_ids_, embeddings=model.item_vectors(), k=6, metric="dot",
                   candidate_ids=model.item_ids_.ids[::3], progress=False)
    local = export_similar_items(out=tmp_path / "local.parquet", **options)
    summary = export_with_ray(export_similar_items, tmp_path / "ray.parquet", RayConfig(blocks=4), **options)
    assert (summary.n_rows, summary.n_queries) == (local.n_rows, 1682)
    assert summary.engine == {"name": "ray", "blocks": 4, "cpus": 2}
    assert_same_table(read_table(tmp_path / "ray.parquet"), read_table(tmp_path / "local.parquet"))


def test_content_only_export_on_ray_equals_local(movielens, tmp_path):
    items = pd.DataFrame({"item_id": movielens.items["item_id"],
                          "genre": movielens.items["genres"].map(lambda genres: genres[0] if len(genres) else ""),
                          "decade": (movielens.items["year"].fillna(0) // 10).astype(int).astype(str)})
    items.to_csv(tmp_path / "items.csv", index=False)
    common = ["--items", str(tmp_path / "items.csv"), "--attr-cols", "genre,decade", "--fusion", "concat",
              "--device", "cpu", "--k", "15"]
    export([*common, "--out", str(tmp_path / "local.parquet")])
    export([*common, "--engine", "ray", "--ray-blocks", "3", "--out", str(tmp_path / "ray.parquet")])
    local = read_table(tmp_path / "local.parquet")
    assert len(local) == 15 * len(items)
    assert_same_table(read_table(tmp_path / "ray.parquet"), local)


def test_a_task_error_comes_back_as_the_projects_error(model_dir, tmp_path):
    with pytest.raises(HybridRecError, match="unknown user id.*99999"):
        recommend_cli(["--model", model_dir, "--user-ids", "1", "99999", "--engine", "ray",
                       "--out", str(tmp_path / "r.parquet")])
    assert not (tmp_path / "r.parquet").exists()


def test_without_ray_the_engine_says_how_to_install_it(model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now raises ImportError
    with pytest.raises(HybridRecError, match=r"pip install 'hybridrec\[distributed\]'"):
        export(["--model", model_dir, "--engine", "ray", "--out", str(tmp_path / "s.parquet")])
    assert not (tmp_path / "s.parquet").exists()
    # Said before any work: the model folder is not even read.
    with pytest.raises(HybridRecError, match=r"pip install 'hybridrec\[distributed\]'"):
        recommend_cli(["--model", str(tmp_path / "no-model"), "--engine", "ray", "--out", str(tmp_path / "r.parquet")])


def refuse_connections(monkeypatch) -> list[dict]:
    """``ray.init`` records its options and refuses, as if no Ray session were open yet."""
    calls = []

    def refuse(**options):
        calls.append(options)
        raise ConnectionError("connection refused")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    return calls


def test_ray_address_is_passed_to_ray_init(model_dir, tmp_path, monkeypatch):
    calls = refuse_connections(monkeypatch)
    with pytest.raises(HybridRecError, match=r"cannot connect to the Ray cluster at '10\.1\.2\.3:6379'"):
        recommend_cli(["--model", model_dir, "--engine", "ray", "--ray-address", "10.1.2.3:6379",
                       "--out", str(tmp_path / "r.parquet")])
    assert [call.get("address") for call in calls] == ["10.1.2.3:6379"]
    assert "num_cpus" not in calls[0]


def test_ray_workers_sizes_the_local_cluster(model_dir, tmp_path, monkeypatch):
    calls = refuse_connections(monkeypatch)
    with pytest.raises(HybridRecError, match="cannot connect"):
        export(["--model", model_dir, "--engine", "ray", "--ray-workers", "3", "--out", str(tmp_path / "s.parquet")])
    assert calls[0]["num_cpus"] == 3 and "address" not in calls[0]


@pytest.mark.parametrize("argv, message", [
    (["--ray-workers", "2"], r"--ray-workers applies only with --engine ray"),
    (["--engine", "ray", "--shard", "0/2"], r"--shard does not apply with --engine ray"),
    (["--engine", "ray", "--approx", "faiss"], r"--approx does not apply with --engine ray"),
    (["--engine", "ray", "--ray-blocks", "0"], r"--ray-blocks must be >= 1"),
    (["--engine", "ray", "--ray-workers", "2", "--ray-address", "auto"], r"--ray-workers sizes a local"),
])
def test_engine_flags_are_checked(model_dir, tmp_path, argv, message):
    with pytest.raises(HybridRecError, match=message):
        export(["--model", model_dir, *argv, "--out", str(tmp_path / "s.parquet")])

