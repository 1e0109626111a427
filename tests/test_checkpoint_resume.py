"""GNN checkpoints resume only on the data and config they were written for.

A checkpoint records a fingerprint of the training data the trainer saw (sizes, content dims and
SHA-256 digests of the interaction/edge and content tensors). Resuming on other data or another
config is refused with an error naming the checkpoint, unless a fresh start is asked for.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from data_builders.filters import implicit_positives
from hybridrec import HybridRecommender
from hybridrec.cli import main
from hybridrec.errors import HybridRecError
from hybridrec.models.hybrid_gnn import HybridGNN, normalized_adjacency
from training.checkpoints import load_checkpoint
from training.config import TrainConfig
from training.trainer import LAST_CHECKPOINT, GraphTrainingData, Trainer

SLICE_USERS = 60


def tiny_model(**overrides) -> HybridRecommender:
    """GNN only, a few epochs: enough to write and resume checkpoints in about a second."""
    params = dict(dim=8, epochs=2, eval_every=1, use_cf=False, seed=0, progress=False, device="cpu")
    params.update(overrides)
    return HybridRecommender(**params)


@pytest.fixture(scope="module")
def ratings(movielens):
    """Ratings of users ``1..SLICE_USERS`` of MovieLens-100K."""
    interactions = movielens.interactions
    return interactions.loc[interactions["user_id"] <= SLICE_USERS].reset_index(drop=True)


@pytest.fixture(scope="module")
def liked(ratings):
    return implicit_positives(ratings, min_rating=4)[0]


@pytest.fixture(scope="module")
def watched(ratings):
    return implicit_positives(ratings, min_rating=3)[0]


def scores(model: HybridRecommender) -> torch.Tensor:
    return model.score_users(np.arange(10))


def test_same_data_resumes_to_the_same_model(liked, tmp_path, caplog):
    first = tiny_model().fit(liked, checkpoint_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="training.trainer"):
        again = tiny_model().fit(liked, checkpoint_dir=tmp_path)
    assert "resuming from epoch 2" in caplog.text
    assert again.train_result_.history == first.train_result_.history
    torch.testing.assert_close(scores(again), scores(first))


def test_other_data_is_refused_naming_the_checkpoint(liked, watched, tmp_path):
    tiny_model().fit(liked, checkpoint_dir=tmp_path)
    before = (tmp_path / LAST_CHECKPOINT).read_bytes()
    with pytest.raises(HybridRecError) as caught:
        tiny_model().fit(watched, checkpoint_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / LAST_CHECKPOINT) in message and "checkpoint" in message
    assert "training interactions" in message and "fresh-checkpoint" in message
    assert (tmp_path / LAST_CHECKPOINT).read_bytes() == before          # left as it was


def test_fresh_checkpoint_trains_afresh_and_replaces_it(liked, watched, tmp_path):
    tiny_model().fit(liked, checkpoint_dir=tmp_path)
    fresh = tiny_model().fit(watched, checkpoint_dir=tmp_path, fresh_checkpoint=True)
    clean = tiny_model().fit(watched)
    assert [entry["epoch"] for entry in fresh.train_result_.history] == [1, 2]
    torch.testing.assert_close(scores(fresh), scores(clean))
    resumed = tiny_model().fit(watched, checkpoint_dir=tmp_path)        # now written for `watched`
    torch.testing.assert_close(scores(resumed), scores(clean))
    with pytest.raises(HybridRecError, match="checkpoint"):
        tiny_model().fit(liked, checkpoint_dir=tmp_path)


def test_another_config_is_refused_not_overwritten(liked, tmp_path):
    tiny_model().fit(liked, checkpoint_dir=tmp_path)
    with pytest.raises(HybridRecError, match=r"another training config \(lr 0.005 -> 0.01\)"):
        tiny_model(lr=1e-2).fit(liked, checkpoint_dir=tmp_path)
    tiny_model(lr=1e-2).fit(liked, checkpoint_dir=tmp_path, fresh_checkpoint=True)
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT)["config"]["lr"] == 1e-2


# -- the fingerprint itself ------------------------------------------------------------------------
def synthetic_data(seed: int = 0, content_dim: int = 4) -> GraphTrainingData:
    """20 users x 30 items, random interactions, one content block; a validation hold-out."""
    rng = np.random.default_rng(seed)
    matrix = sp.csr_matrix((rng.random((20, 30)) < 0.3).astype(np.float32))
    coo = matrix.tocoo()
    valid_mask = rng.random(coo.nnz) < 0.2
    train = sp.csr_matrix((coo.data[~valid_mask], (coo.row[~valid_mask], coo.col[~valid_mask])), shape=matrix.shape)
    valid = sp.csr_matrix((coo.data[valid_mask], (coo.row[valid_mask], coo.col[valid_mask])), shape=matrix.shape)
    edges = train.tocoo()
    pairs = torch.from_numpy(np.stack([edges.row, edges.col + 20]).astype(np.int64))
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    edge_weight = torch.ones(edge_index.shape[1])
    content = {"text": torch.from_numpy(rng.standard_normal((30, content_dim)).astype(np.float32))}
    return GraphTrainingData(adjacency=normalized_adjacency(edge_index, edge_weight, 50), content=content,
                             present={"text": torch.ones(30, dtype=torch.bool)},
                             user_has_id=torch.from_numpy(np.diff(train.indptr) > 0),
                             item_has_id=torch.from_numpy(np.asarray(train.sum(0)).ravel() > 0),
                             train=train, valid=valid, edge_index=edge_index, edge_weight=edge_weight)


FINGERPRINT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_checkpoint_resume import synthetic_data
print(json.dumps(synthetic_data().fingerprint(), sort_keys=True))
"""


def test_fingerprint_is_the_same_in_another_process():
    import json

    script = FINGERPRINT_SCRIPT.format(tests=os.path.dirname(__file__))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == synthetic_data().fingerprint()


def test_fingerprint_tells_same_sized_data_and_content_apart():
    base = synthetic_data().fingerprint()
    assert synthetic_data().fingerprint() == base
    other = synthetic_data(seed=1).fingerprint()
    assert other["interactions_sha256"] != base["interactions_sha256"]
    data = synthetic_data()
    data.content["text"] = data.content["text"] + 1e-3
    changed = data.fingerprint()
    assert changed["interactions_sha256"] == base["interactions_sha256"]
    assert changed["content_sha256"] != base["content_sha256"]
    assert synthetic_data(content_dim=5).fingerprint()["content_dims"] == {"text": 5}


def test_trainer_refuses_other_content_and_old_checkpoints(tmp_path):
    config = TrainConfig(dim=8, epochs=2, eval_every=1, device="cpu")

    def fit(data: GraphTrainingData, **options):
        model = HybridGNN(20, 30, 0, {"text": data.content["text"].shape[1]}, dim=8)
        return Trainer(config, checkpoint_dir=tmp_path, progress=False, **options).fit(model, data)

    fit(synthetic_data())
    changed = synthetic_data()
    changed.content["text"] = changed.content["text"] * 2
    with pytest.raises(HybridRecError, match="content feature values"):
        fit(changed)
    state = load_checkpoint(tmp_path / LAST_CHECKPOINT)
    del state["data_fingerprint"]
    torch.save(state, tmp_path / LAST_CHECKPOINT)
    with pytest.raises(HybridRecError, match="no training-data fingerprint"):
        fit(synthetic_data())
    assert fit(synthetic_data(), fresh_checkpoint=True).history[0]["epoch"] == 1


# -- the command line ------------------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "hybridrec.cli", "-v", "train", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_refuses_a_checkpoint_of_other_data(ratings, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('[train]\ndim = 8\nepochs = 2\neval_every = 1\ndevice = "cpu"\n\n[model]\nuse_cf = false\n'
                      "progress = false\n")
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    ratings.loc[ratings["user_id"] <= 40, ["user_id", "item_id", "rating"]].to_csv(first, index=False)
    ratings.loc[ratings["user_id"] > 20, ["user_id", "item_id", "rating"]].to_csv(second, index=False)
    checkpoints = tmp_path / "checkpoints"
    common = ["--rating-col", "rating", "--min-rating", "4", "--no-images", "--config", str(config),
              "--checkpoint-dir", str(checkpoints)]
    assert main(["train", "--interactions", str(first), "--out", str(tmp_path / "model"), *common]) == 0
    again = run_cli("--interactions", str(first), "--out", str(tmp_path / "again"), *common)
    assert again.returncode == 0, again.stderr
    assert "resuming from epoch 2" in again.stderr                     # same data, another process
    refused = run_cli("--interactions", str(second), "--out", str(tmp_path / "other"), *common)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert f"hybridrec train: error: {checkpoints / LAST_CHECKPOINT}: checkpoint was written for" in refused.stderr
    assert "--fresh-checkpoint" in refused.stderr
    assert not (tmp_path / "other").exists()
    assert main(["train", "--interactions", str(second), "--out", str(tmp_path / "other"), *common,
                 "--fresh-checkpoint"]) == 0
    assert (tmp_path / "other" / "train_summary.json").is_file()
