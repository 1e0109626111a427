"""GNN training under torch.distributed (DDP, gloo on CPU) on a MovieLens-100K slice.

Two processes (``torch.multiprocessing`` spawn, torchrun's variables set) train the GNN of
:class:`HybridRecommender`: each rank scores a disjoint shard of every global batch and the shards
cover the epoch, both ranks end with the same weights, those weights equal a single-process fit's
within float noise (the same seed and global batch), the model beats popularity, only rank 0
writes checkpoints and the model, and an interrupted run resumes on both ranks from rank 0's
checkpoint (rank 1's checkpoint folder stays empty: no shared file system needed), neighbour-sampled
steps keep the ranks in step, and ``hybridrec train`` fits the CF head and writes on rank 0 only.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.multiprocessing as mp

from evaluation.popularity import PopularityRecommender
from evaluation.protocol import EvaluationConfig, dataset_summary, evaluate_model
from evaluation.splitters import SplitConfig, make_split
from hybridrec import HybridRecommender
from training import distributed
from hybridrec.models.hybrid_gnn import HybridGNN, normalized_adjacency
from training.config import TrainConfig
from training.distributed import DistributedContext, padded_shard, shard_positions
from training.trainer import LAST_CHECKPOINT, GraphTrainingData, Trainer

SLICE_USERS = 300
WORLD = 2
#: The GNN alone (the CF head would be fitted on rank 0 only), small and fast.
FIELDS = dict(dim=16, epochs=4, eval_every=2, batch_size=64, lr=0.05, use_cf=False, seed=0, progress=False, device="cpu")
#: Neighbour-sampled steps (PyG LinkLoader): each rank its padded shard of the interactions.
NEIGHBOR_SAMPLED = dict(training_mode="neighbor_sampled", num_neighbors=[5, 3], batch_size=512, num_negatives=128,
                        epochs=1, eval_every=1)
REPO_ROOT = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    """Raised on every rank after the first checkpoint, to stand for a killed job."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def movielens_split(data_dir: str):
    from data_builders.movielens import load_movielens_100k

    movielens = load_movielens_100k(data_dir)
    ratings = movielens.interactions
    sliced = ratings.loc[ratings["user_id"] <= SLICE_USERS].reset_index(drop=True)
    return movielens, make_split(sliced, SplitConfig(kind="random", seed=0, min_rating=4.0, min_positives=5))


def warm_recall(model, split) -> float:
    report = evaluate_model(model, split, dataset=dataset_summary(split.train, "movielens-slice"),
                            config=EvaluationConfig(ks=(20,), segments=("warm",)))
    return report.segments["warm"]["recall@20"]


def gnn_state(model: HybridRecommender) -> dict[str, torch.Tensor]:
    return {"users": model.user_embeddings_, "items": model.item_embeddings_}


def train_rank(rank: int, port: int, data_dir: str, out: str, fields: dict) -> None:
    """One rank: fit the GNN on the split's training interactions, stopped after its first checkpoint
    (epoch 2) and fitted again (resumed), recording the users each step trained on."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from training import trainer

    seen, rows_dense, save = [], trainer._rows_dense, trainer.Trainer._save

    def recording_rows_dense(matrix, rows, device):        # the full softmax's rows of this rank's shard
        seen.append(np.asarray(rows).copy())
        return rows_dense(matrix, rows, device)

    def save_then_stop(self, *args):
        save(self, *args)
        raise Interrupted

    trainer._rows_dense = recording_rows_dense
    _, split = movielens_split(data_dir)
    folder = Path(out) / f"checkpoints-rank{rank}"             # one folder per rank: nothing shared
    trainer.Trainer._save = save_then_stop
    with pytest.raises(Interrupted):
        HybridRecommender(**fields).fit(split.train, checkpoint_dir=folder)
    trainer.Trainer._save = save
    steps_before_resume = len(seen)
    model = HybridRecommender(**fields).fit(split.train, checkpoint_dir=folder)
    main_seen = list(seen)                                     # this fit's steps only
    if distributed.is_main_process():
        model.save(Path(out) / "model")
    subgraph_steps, subgraph_loss = [], trainer.Trainer._subgraph_loss

    def counting_subgraph_loss(self, *args, **kwargs):
        subgraph_steps.append(1)
        return subgraph_loss(self, *args, **kwargs)

    trainer.Trainer._subgraph_loss = counting_subgraph_loss
    few = split.train.loc[split.train["user_id"] <= 100]                # a third of the users: fewer subgraphs
    sampled = HybridRecommender(**{**fields, **NEIGHBOR_SAMPLED}).fit(few)
    train_with_the_cli(Path(out) / f"cli-rank{rank}", split)       # last: the command leaves the group
    torch.save({"state": gnn_state(model), "history": model.train_result_.history, "seen": [torch.from_numpy(rows) for rows in main_seen],
                "resumed_at_step": steps_before_resume, "result": vars(model.train_result_),
                "neighbor_sampled": {"state": gnn_state(sampled), "steps": len(subgraph_steps), "interactions": len(few),
                                     "history": sampled.train_result_.history}}, Path(out) / f"rank{rank}.pt")


def train_with_the_cli(folder: Path, split) -> None:
    """``hybridrec train`` as torchrun starts it on each rank (the variables are set): rank 0 alone
    writes --out, --json and the checkpoint."""
    from hybridrec.cli import main

    folder.mkdir(parents=True)
    log, config = folder / "liked.csv", folder / "model.toml"
    split.train.loc[split.train["user_id"] <= 150, ["user_id", "item_id"]].to_csv(log, index=False)
    config.write_text("[train]\nepochs = 2\ndim = 8\neval_every = 1\ndevice = \"cpu\"\n\n"
                      "[model]\ntune_ease_l2 = false\nprogress = false\n")
    code = main(["train", "--interactions", str(log), "--config", str(config), "--out", str(folder / "model"),
                 "--json", str(folder / "summary.json"), "--checkpoint-dir", str(folder / "checkpoints")])
    assert code == 0


def spawn(tmp: Path, data_dir, fields=FIELDS) -> list[dict]:
    mp.spawn(train_rank, args=(free_port(), str(data_dir), str(tmp), fields), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{rank}.pt", weights_only=True) | {"out": tmp} for rank in range(WORLD)]


@pytest.fixture(scope="module")
def split(data_dir):
    return movielens_split(str(data_dir))[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, data_dir):
    return spawn(tmp_path_factory.mktemp("ddp"), data_dir)


@pytest.fixture(scope="module")
def single(split):
    torch.manual_seed(0)
    return HybridRecommender(**FIELDS).fit(split.train)


# -- sharding ------------------------------------------------------------------------------------
def test_shards_are_disjoint_cover_the_batch_and_keep_groups_whole():
    for rows, unit in ((10, 1), (10, 3), (3, 4), (0, 1)):
        shards = [shard_positions(rows, rank, 3, unit) for rank in range(3)]
        assert sorted(np.concatenate(shards).tolist()) == list(range(rows))
        for shard in shards:                                  # whole units of `unit` consecutive rows
            assert all(position // unit * unit in shard for position in shard)
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    padded = [padded_shard(order, rank, 4) for rank in range(4)]
    assert {len(part) for part in padded} == {3}                # the same number of steps on every rank
    assert set(torch.cat(padded).tolist()) == set(range(11))


@pytest.fixture(scope="module")
def graph(split) -> GraphTrainingData:
    """The split's training users x items as the trainer's data (no content)."""
    users, user_index = np.unique(split.train["user_id"], return_inverse=True)
    items, item_index = np.unique(split.train["item_id"], return_inverse=True)
    binary = sp.csr_matrix((np.ones(len(user_index), np.float32), (user_index, item_index)),
                           shape=(len(users), len(items)))
    binary.sum_duplicates()
    binary.data[:] = 1.0
    coo = binary.tocoo()
    forward = torch.from_numpy(np.stack([coo.row, coo.col + len(users)]).astype(np.int64))
    edge_index = torch.cat([forward, forward.flip(0)], dim=1)
    edge_weight = torch.ones(edge_index.shape[1])
    num_nodes = len(users) + len(items)
    return GraphTrainingData(adjacency=normalized_adjacency(edge_index, edge_weight, num_nodes), content={}, present={},
                             user_has_id=torch.ones(len(users), dtype=torch.bool),
                             item_has_id=torch.ones(len(items), dtype=torch.bool), train=binary, valid=None,
                             edge_index=edge_index, edge_weight=edge_weight)


@pytest.mark.parametrize("fields", [{}, {"negatives": "sampled", "num_negatives": 32, "batch_size": 16},
                                    {"loss": "bpr", "batch_size": 4}], ids=["full_softmax", "sampled_softmax", "bpr"])
def test_rank_losses_average_to_the_one_process_loss_and_gradient(graph, fields):
    """What DDP averages over 3 ranks (a short last batch: one rank's shard may be empty) is the
    single process's loss and gradient on the same global batch."""
    trainer = Trainer(TrainConfig(dim=8, device="cpu", **fields), progress=False)
    plan = trainer.plan(graph)
    torch.manual_seed(0)
    model = HybridGNN(*graph.train.shape, 0, {}, dim=8, num_layers=2, id_dropout=0.0)
    last_batch = trainer._batches(graph, torch.Generator().manual_seed(0), plan)[-1]
    for batch in (trainer._batches(graph, torch.Generator().manual_seed(0), plan)[0], last_batch[:2]):
        def loss_and_gradient(context, batch=batch):
            trainer.context = context
            model.zero_grad()
            loss = trainer._loss(model, graph, batch, torch.Generator().manual_seed(1), plan)
            loss.backward()
            return loss.detach(), model.user_id.weight.grad.clone()

        single_loss, single_gradient = loss_and_gradient(None)
        ranks = [loss_and_gradient(DistributedContext(rank, 3, rank, "gloo", torch.device("cpu"))) for rank in range(3)]
        assert all(torch.isfinite(loss) for loss, _ in ranks)
        torch.testing.assert_close(sum(loss for loss, _ in ranks) / 3, single_loss)
        torch.testing.assert_close(sum(gradient for _, gradient in ranks) / 3, single_gradient)


# -- two processes -------------------------------------------------------------------------------
def test_ranks_train_disjoint_shards_that_cover_every_epoch(ranks, split):
    first, second = (rank["seen"] for rank in ranks)           # per step: the users each rank scored
    assert len(first) == len(second) > 0                       # the same number of steps on both ranks
    for mine, theirs in zip(first, second):
        assert len(mine) and not set(mine.tolist()) & set(theirs.tolist())
    users = np.unique(np.concatenate(first + second))
    assert len(users) == split.train["user_id"].nunique()
    per_epoch = len(first) // FIELDS["epochs"]
    for epoch in range(FIELDS["epochs"]):                       # together: every user exactly once per epoch
        steps = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        rows = np.concatenate(first[steps] + second[steps])
        assert sorted(rows.tolist()) == users.tolist()
    result = ranks[0]["result"]
    assert result["world_size"] == 2 and len(result["memory_mb_per_rank"]) == 2
    assert all(seconds > 0 for seconds in result["step_seconds_per_rank"])


def test_both_ranks_end_with_the_same_weights(ranks):
    first, second = ranks
    for name in first["state"]:
        assert torch.equal(first["state"][name], second["state"][name])
    assert first["history"] == second["history"]


def test_two_processes_equal_one_within_float_noise(ranks, single):
    # Same seed, same global batch: only the order of the float reductions differs.
    for name, tensor in gnn_state(single).items():
        torch.testing.assert_close(ranks[0]["state"][name], tensor, atol=1e-4, rtol=1e-4)
    for ours, theirs in zip(ranks[0]["history"], single.train_result_.history):
        assert ours.keys() == theirs.keys()
        assert all(abs(ours[key] - theirs[key]) < 1e-4 for key in ours)


def test_distributed_model_beats_popularity(ranks, split):
    from hybridrec.recommender_base import RecommenderBase

    model = RecommenderBase.load(ranks[0]["out"] / "model")     # written by rank 0
    torch.testing.assert_close(model.item_embeddings_, ranks[0]["state"]["items"])
    popularity = warm_recall(PopularityRecommender().fit(split.train), split)
    assert warm_recall(model, split) > 1.3 * popularity


def test_interrupted_run_resumes_on_every_rank_from_rank0_checkpoint(ranks):
    out = ranks[0]["out"]
    assert (out / "checkpoints-rank0" / LAST_CHECKPOINT).is_file()
    assert not (out / "checkpoints-rank1" / LAST_CHECKPOINT).exists()   # rank 0 alone writes, and rank 1 resumed
    for rank in ranks:                                                  # epochs 3-4 after the resume (2 of 4) ...
        assert rank["resumed_at_step"] * 2 == len(rank["seen"])
    # ... and yet the single process's 4 epochs (test_two_processes_equal_one_within_float_noise)


def test_neighbor_sampled_steps_keep_the_ranks_in_step(ranks):
    first, second = (rank["neighbor_sampled"] for rank in ranks)
    trained = 0.9 * first["interactions"]                 # less the 10% validation hold-out
    assert first["steps"] == second["steps"]              # padded shards: the same number of steps
    assert first["steps"] > 1 and abs(first["steps"] - trained / 512) <= 1   # a rank's batch: half the global 512
    for name in first["state"]:
        assert torch.equal(first["state"][name], second["state"][name])
    assert first["history"] == second["history"] and first["history"][0]["valid_recall@20"] > 0


def test_cli_on_two_ranks_fits_the_cf_head_and_writes_on_rank0_only(ranks):
    from hybridrec.recommender_base import RecommenderBase

    first, second = (ranks[0]["out"] / f"cli-rank{rank}" for rank in range(WORLD))
    assert not any((second / name).exists() for name in ("model", "summary.json", "checkpoints"))
    assert (first / "checkpoints" / LAST_CHECKPOINT).is_file()
    fit = json.loads((first / "summary.json").read_text())["fit_summary"]
    assert fit["gnn_processes"] == 2 and len(fit["gnn_memory_mb_per_rank"]) == 2
    assert all(megabytes > 0 for megabytes in fit["gnn_memory_mb_per_rank"])
    assert fit["cf_head"] == "dense_ease"                        # fitted on rank 0, which saved it
    model = RecommenderBase.load(first / "model")
    assert model.item_weights_ is not None and model.item_embeddings_ is not None
