"""Sampled GNN training: the sampled softmax, neighbour-sampled subgraphs and the size rules.

On real MovieLens-100K slices: each sampled mode trains a model that beats popularity, ``"auto"``
resolves by the size thresholds, no ``[batch, n_items]`` tensor appears on the sampled path, the
logQ-corrected loss is the full softmax when every item is a negative (and unbiased otherwise),
checkpoints resume in every mode, and every new ``TrainConfig`` field is checked by name.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from evaluation.popularity import PopularityRecommender
from evaluation.protocol import EvaluationConfig, dataset_summary, fit_and_evaluate
from evaluation.splitters import SplitConfig, make_split
from hybridrec import HybridRecommender
from hybridrec.errors import HybridRecError
from hybridrec.models.hybrid_gnn import HybridGNN, normalized_adjacency, sampled_softmax_loss, softmax_loss
from hybridrec.tuning import validation_holdout
from training.checkpoints import load_checkpoint
from training.config import TrainConfig
from training.sampling import NegativeSampler, full_graph_pairs_per_step, subgraph_loader
from training.trainer import LAST_CHECKPOINT, GraphTrainingData, Trainer
from training.validation import MAX_VALIDATION_USERS, validation_users

SLICE_USERS = 300


# -- data ----------------------------------------------------------------------------------------
def graph_data(interactions: pd.DataFrame, genres: pd.Series | None = None) -> GraphTrainingData:
    """Training data for the trainer from liked ratings (users x items, optional genre nodes)."""
    users, user_index = np.unique(interactions["user_id"], return_inverse=True)
    items, item_index = np.unique(interactions["item_id"], return_inverse=True)
    binary = sp.csr_matrix((np.ones(len(user_index), np.float32), (user_index, item_index)),
                           shape=(len(users), len(items)))
    binary.sum_duplicates()
    binary.data[:] = 1.0
    train, valid = validation_holdout(binary, 0.1, 0)
    num_users, num_items = binary.shape
    coo = train.tocoo()
    pairs = [np.stack([coo.row, coo.col + num_users])]
    num_nodes = num_users + num_items
    if genres is not None:
        names = sorted({g for values in genres for g in values})
        rows = [(i, names.index(g)) for i, item in enumerate(items) for g in genres.get(item, [])]
        pairs.append(np.array([[i + num_users, num_nodes + g] for i, g in rows]).T)
        num_nodes += len(names)
    forward = torch.from_numpy(np.concatenate(pairs, axis=1).astype(np.int64))
    edge_index = torch.cat([forward, forward.flip(0)], dim=1)
    edge_weight = torch.ones(edge_index.shape[1])
    return GraphTrainingData(adjacency=normalized_adjacency(edge_index, edge_weight, num_nodes), content={}, present={},
                             user_has_id=torch.from_numpy(np.diff(binary.indptr) > 0),
                             item_has_id=torch.from_numpy(np.asarray(binary.sum(0)).ravel() > 0),
                             train=train, valid=valid, edge_index=edge_index, edge_weight=edge_weight)


@pytest.fixture(scope="module")
def liked(movielens) -> pd.DataFrame:
    ratings = movielens.interactions
    return ratings.loc[(ratings["user_id"] <= SLICE_USERS) & (ratings["rating"] >= 4)].reset_index(drop=True)


@pytest.fixture(scope="module")
def data(liked, movielens) -> GraphTrainingData:
    return graph_data(liked, movielens.items.set_index("item_id")["genres"])


def model_for(data: GraphTrainingData, config: TrainConfig) -> HybridGNN:
    num_users, num_items = data.train.shape
    attributes = data.adjacency.shape[0] - num_users - num_items
    torch.manual_seed(config.seed)
    return HybridGNN(num_users, num_items, attributes, {}, dim=config.dim, num_layers=config.num_layers,
                     id_dropout=config.id_dropout)


SAMPLED = dict(dim=16, epochs=2, eval_every=1, device="cpu", negatives="sampled", num_negatives=64, batch_size=512)
NEIGHBOR = dict(SAMPLED, training_mode="neighbor_sampled", num_neighbors=[5, 3], batch_size=512)


def fit(data: GraphTrainingData, **fields):
    config = TrainConfig(**fields)
    model = model_for(data, config)
    return model, Trainer(config, progress=False).fit(model, data)


# -- the loss and its correction -----------------------------------------------------------------
def test_sampled_loss_with_every_item_as_negative_is_the_full_softmax():
    generator = torch.Generator().manual_seed(0)
    users, items = torch.randn(6, 8, generator=generator), torch.randn(40, 8, generator=generator)
    targets = (torch.rand(6, 40, generator=generator) < 0.2).float()
    targets[:, 0] = 1.0
    full = softmax_loss(users, items, targets, temperature=0.2)
    pair_users, pair_items = torch.nonzero(targets, as_tuple=True)
    sampler = NegativeSampler(targets.sum(0), num_negatives=40, group_size=16)
    negatives = sampler.draw(generator)
    assert sampler.covers_catalog and torch.equal(negatives, torch.arange(40)) and sampler.log_counts(negatives) is None
    sampled = sampled_softmax_loss(users[pair_users], items[pair_items], items[negatives], 0.2,
                                   group_size=sampler.group_size or None)
    torch.testing.assert_close(sampled * len(pair_users) / len(users), full)  # mean over pairs vs sum per user


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_log_q_correction_makes_the_partition_estimate_unbiased(distribution):
    """``Σ_c exp(s_c - log E_c)`` over a group's in-batch positives and the drawn items averages to
    the full catalog's ``Σ_j exp(s_j)``; uncorrected it does not."""
    generator = torch.Generator().manual_seed(1)
    counts = torch.randint(1, 50, (300,), generator=generator).float() ** 1.5
    scores = torch.randn(300, generator=generator, dtype=torch.float64)
    sampler = NegativeSampler(counts, num_negatives=32, group_size=64, distribution=distribution)
    corrected, plain = [], []
    for _ in range(4000):
        candidates = torch.cat([torch.multinomial(counts, 64, replacement=True, generator=generator),
                                sampler.draw(generator)])
        corrected.append(torch.exp(scores[candidates] - sampler.log_counts(candidates).double()).sum())
        plain.append(torch.exp(scores[candidates]).sum())
    truth = torch.exp(scores).sum()
    assert abs(torch.stack(corrected).mean() / truth - 1) < 0.03
    assert abs(torch.stack(plain).mean() / truth - 1) > 0.3


def test_popularity_draws_follow_count_plus_one_to_the_three_quarters():
    counts = torch.tensor([1.0, 15.0, 0.0, 80.0])
    draws = NegativeSampler(counts, 2, 0, "popularity").draw(torch.Generator().manual_seed(0), 40000)
    share = torch.bincount(draws, minlength=4).double() / len(draws)
    weights = torch.tensor([2.0, 16.0, 1.0, 81.0], dtype=torch.float64) ** 0.75               # 1.68, 8, 1, 27
    torch.testing.assert_close(share, weights / weights.sum(), atol=0.01, rtol=0)


class ShapeRecorder(TorchDispatchMode):
    """Records the shape of every tensor an op produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(value, torch.Tensor):
                self.shapes.add(tuple(value.shape))
        return out


def spans_catalog(shapes: set[tuple[int, ...]], num_items: int) -> list[tuple[int, ...]]:
    """Shapes with ``num_items`` in any dimension but the first: a ``[batch, n_items]`` tensor or its transpose."""
    return sorted(shape for shape in shapes if len(shape) >= 2 and num_items in shape[1:])


def test_sampled_loss_shapes_grow_with_the_candidates_not_the_catalog():
    users, positives, negatives = torch.randn(300, 8), torch.randn(300, 8), torch.randn(50, 8)
    with ShapeRecorder() as recorder:
        sampled_softmax_loss(users.requires_grad_(), positives, negatives, 0.2, group_size=128,
                             positive_log_counts=torch.zeros(300), negative_log_counts=torch.zeros(50)).backward()
    assert max(max(shape, default=0) for shape in recorder.shapes) <= 384          # 3 groups of 128 pairs
    assert (300, 128 + 50) in recorder.shapes                                   # each pair: its group + the negatives


@pytest.mark.parametrize("mode", ["full_graph", "neighbor_sampled"])
def test_no_batch_by_catalog_tensor_on_the_sampled_path(data, mode):
    """A whole fit (steps, backward, Adam) on a catalog above ``full_softmax_max_items`` builds no
    tensor with the catalog in a trailing dimension; the full softmax does (the recorder sees it)."""
    num_items = data.train.shape[1]
    assert num_items not in (*data.train.shape[:1], data.adjacency.shape[0], 16, 64, 512)
    no_validation = dataclasses.replace(data, valid=None)
    fields = dict(SAMPLED, negatives="auto", full_softmax_max_items=num_items - 1, epochs=1, training_mode=mode,
                  **({"num_neighbors": [5, 3], "batch_size": 512} if mode == "neighbor_sampled" else {}))
    with ShapeRecorder() as recorder:
        _, result = fit(no_validation, **fields)
    assert result.negatives == "sampled" and result.training_mode == mode
    assert spans_catalog(recorder.shapes, num_items) == []
    with ShapeRecorder() as recorder:
        fit(no_validation, **dict(fields, full_softmax_max_items=num_items, training_mode="full_graph"))
    assert spans_catalog(recorder.shapes, num_items)


# -- the size rules ------------------------------------------------------------------------------
def test_auto_resolves_by_the_size_thresholds(data):
    num_items, num_edges = data.train.shape[1], data.graph_edges()
    assert num_edges == data.edge_index.shape[1] // 2

    def plan(**fields):
        chosen = Trainer(TrainConfig(device="cpu", **fields), progress=False).plan(data)
        return chosen.negatives, chosen.training_mode

    assert plan() == ("full", "full_graph")
    assert plan(full_softmax_max_items=num_items) == ("full", "full_graph")
    assert plan(full_softmax_max_items=num_items - 1) == ("sampled", "full_graph")
    assert plan(full_graph_max_edges=num_edges) == ("full", "full_graph")
    assert plan(full_graph_max_edges=num_edges - 1) == ("sampled", "neighbor_sampled")
    assert plan(full_graph_max_edges=0, negatives="full") == ("full", "full_graph")  # asked for: full graph
    assert plan(loss="bpr") == ("sampled", "full_graph")


def test_train_result_says_what_ran(data):
    _, result = fit(data, dim=8, epochs=1, device="cpu")
    assert (result.negatives, result.training_mode) == ("full", "full_graph")


def test_the_interaction_budget_cuts_the_epochs_and_says_so(data, caplog):
    interactions = data.train.nnz
    with caplog.at_level(logging.INFO, logger="training.trainer"):
        _, result = fit(data, dim=8, epochs=6, eval_every=2, device="cpu", max_trained_interactions=3 * interactions + 1)
    assert (result.epoch_limit, result.epochs_run) == (3, 3)
    assert "GNN epochs cut from 6 to 3" in caplog.text
    # The last allowed epoch is validated, so the best state is chosen among epochs 2 and 3.
    assert [entry["epoch"] for entry in result.history if "valid_recall@20" in entry] == [2, 3]
    _, uncut = fit(data, dim=8, epochs=2, device="cpu", max_trained_interactions=2 * interactions)
    assert (uncut.epoch_limit, uncut.epochs_run) == (2, 2)
    # The default budget keeps MovieLens-100K's positives (55k) at every epoch: 60 x 55k < 10M.
    assert TrainConfig().max_trained_interactions == 10_000_000


def test_full_graph_steps_grow_with_the_graph_so_epochs_stay_linear():
    assert full_graph_pairs_per_step(20_000, 2, 256, 1280) == 256                     # small graph: one group
    steps = []
    for scale in (1, 4, 16):
        interactions = 800_000 * scale
        pairs = full_graph_pairs_per_step(2 * interactions, 2, 256, 1280)
        assert pairs % 256 == 0
        steps.append(interactions / pairs)
    assert max(steps) / min(steps) < 1.1                                             # propagations per epoch ~ constant


def test_validation_on_large_catalogs_samples_a_seeded_bounded_set_of_users():
    valid = sp.random(20_000, 50, density=0.2, format="csr", random_state=0)
    sampled = validation_users(valid, exact=False, seed=0)
    assert len(sampled) == MAX_VALIDATION_USERS and np.all(np.diff(sampled) > 0)
    assert np.array_equal(sampled, validation_users(valid, exact=False, seed=0))
    assert len(validation_users(valid, exact=True, seed=0)) == np.sum(np.diff(valid.indptr) > 0)


# -- subgraphs -----------------------------------------------------------------------------------
def test_subgraph_with_all_neighbours_propagates_like_the_full_graph(data):
    """With fanout -1 the seeds' layer-averaged embeddings are the full graph's, inputs included."""
    model = model_for(data, TrainConfig(dim=8)).eval()
    num_users, num_items = data.train.shape
    full = torch.cat(model(model.node_inputs({}, {}, data.user_has_id, data.item_has_id), data.adjacency))
    coo = data.train.tocoo()
    pairs = torch.from_numpy(np.stack([coo.row, coo.col + num_users]).astype(np.int64))
    num_nodes = data.adjacency.shape[0]
    sampler = NegativeSampler(torch.ones(num_items), 16, 32)
    weights = data.adjacency.to_sparse_coo().coalesce()
    loader = subgraph_loader(weights.indices(), weights.values(), num_nodes, pairs, num_neighbors=[-1, -1],
                             batch_size=32, generator=torch.Generator().manual_seed(0), negatives=sampler,
                             item_offset=num_users)
    batch = next(iter(loader))
    x = model.subgraph_inputs(batch.n_id, {}, {}, data.user_has_id, data.item_has_id)
    torch.testing.assert_close(x, model.node_inputs({}, {}, data.user_has_id, data.item_has_id)[batch.n_id])
    out = model.propagate_subgraph(x, batch.edge_index, batch.edge_weight)
    seeds = torch.cat([batch.src_index, batch.dst_pos_index, batch.dst_neg_index])
    torch.testing.assert_close(out[seeds], full[batch.n_id[seeds]], rtol=1e-4, atol=1e-5)
    assert torch.equal(batch.n_id[batch.src_index], pairs[0, batch.input_id])
    assert torch.equal(batch.n_id[batch.dst_pos_index], pairs[1, batch.input_id])


def test_fanout_bounds_the_subgraph(data):
    num_users, num_items = data.train.shape
    coo = data.train.tocoo()
    pairs = torch.from_numpy(np.stack([coo.row, coo.col + num_users]).astype(np.int64))
    loader = subgraph_loader(data.edge_index, torch.ones(data.edge_index.shape[1]), data.adjacency.shape[0], pairs,
                             num_neighbors=[4, 2], batch_size=16, generator=torch.Generator().manual_seed(0),
                             negatives=NegativeSampler(torch.ones(num_items), 8, 16), item_offset=num_users)
    batch = next(iter(loader))
    seeds = batch.num_sampled_nodes[0]
    assert seeds <= 16 * 2 + 8
    assert batch.num_sampled_edges[0] <= 4 * seeds and batch.num_sampled_edges[1] <= 2 * batch.num_sampled_nodes[1]
    edges = set(map(tuple, data.edge_index.T.tolist()))
    assert all(tuple(edge) in edges for edge in batch.n_id[batch.edge_index].T.tolist())


# -- training ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split(movielens):
    ratings = movielens.interactions
    sliced = ratings.loc[ratings["user_id"] <= SLICE_USERS].reset_index(drop=True)
    return make_split(sliced, SplitConfig(kind="random", seed=0, min_rating=4.0, min_positives=5))


def recall(model, split, movielens) -> float:
    report = fit_and_evaluate(model, split, dataset=dataset_summary(split.train, "movielens-slice"),
                              items=movielens.items, users=movielens.users,
                              config=EvaluationConfig(ks=(20,), segments=("warm",)))
    return report.segments["warm"]["recall@20"]


@pytest.mark.parametrize("fields", [
    dict(negatives="sampled", epochs=6),
    dict(training_mode="neighbor_sampled", num_neighbors=[5, 3], batch_size=512, num_negatives=128, epochs=6),
], ids=["sampled_softmax", "neighbor_sampled"])
def test_sampled_training_beats_popularity(split, movielens, fields):
    popularity = recall(PopularityRecommender(), split, movielens)
    model = HybridRecommender(dim=16, eval_every=3, use_cf=False, seed=0, progress=False, device="cpu", **fields)
    assert recall(model, split, movielens) > 1.3 * popularity
    assert model.train_result_.negatives == "sampled"
    assert model.train_result_.training_mode == fields.get("training_mode", "full_graph")


def test_neighbor_sampled_training_is_seeded(data):
    first, _ = fit(data, **dict(NEIGHBOR, epochs=1))
    again, _ = fit(data, **dict(NEIGHBOR, epochs=1))
    other, _ = fit(data, **dict(NEIGHBOR, epochs=1, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(first.user_id.weight, other.user_id.weight)


@pytest.mark.parametrize("fields", [SAMPLED, NEIGHBOR, dict(NEIGHBOR, loss="bpr", negatives="auto", batch_size=64)],
                         ids=["sampled", "neighbor_sampled", "neighbor_sampled_bpr"])
def test_checkpoint_resume_in_every_mode(data, tmp_path, monkeypatch, caplog, fields):
    """A run stopped after its first checkpoint resumes and ends where an uninterrupted run ends."""
    uninterrupted, result = fit(data, **fields)
    original_save = Trainer._save

    def save_then_stop(self, *args):
        original_save(self, *args)
        raise KeyboardInterrupt

    config = TrainConfig(**fields)
    monkeypatch.setattr(Trainer, "_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, checkpoint_dir=tmp_path, progress=False).fit(model_for(data, config), data)
    monkeypatch.setattr(Trainer, "_save", original_save)
    resumed = model_for(data, config)
    with caplog.at_level(logging.INFO, logger="training.trainer"):
        again = Trainer(config, checkpoint_dir=tmp_path, progress=False).fit(resumed, data)
    assert "resuming from epoch 1" in caplog.text
    assert again.history == result.history and again.training_mode == result.training_mode
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), uninterrupted.state_dict().values()))


def test_checkpoint_config_covers_the_sampling_fields(data, tmp_path):
    config = TrainConfig(**dict(SAMPLED, epochs=1))
    Trainer(config, checkpoint_dir=tmp_path, progress=False).fit(model_for(data, config), data)
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT)["config"]["num_negatives"] == 64
    other = TrainConfig(**dict(SAMPLED, epochs=1, num_negatives=32))
    with pytest.raises(HybridRecError, match=r"another training config \(num_negatives 64 -> 32\)"):
        Trainer(other, checkpoint_dir=tmp_path, progress=False).fit(model_for(data, other), data)


# -- configuration -------------------------------------------------------------------------------
def test_defaults():
    config = TrainConfig()
    assert (config.negatives, config.num_negatives, config.full_softmax_max_items) == ("auto", 1024, 20000)
    assert (config.training_mode, config.full_graph_max_edges, config.num_neighbors) == ("auto", 20_000_000, None)
    assert config.fanouts == [10, 10] and TrainConfig(num_layers=3).fanouts == [10, 10, 10]


@pytest.mark.parametrize("fields, field", [
    (dict(negatives="some"), "negatives"),
    (dict(num_negatives=0), "num_negatives"),
    (dict(num_negatives=2.5), "num_negatives"),
    (dict(full_softmax_max_items=-1), "full_softmax_max_items"),
    (dict(training_mode="minibatch"), "training_mode"),
    (dict(full_graph_max_edges=-5), "full_graph_max_edges"),
    (dict(num_neighbors=[10]), "num_neighbors"),
    (dict(num_neighbors=[10, 0]), "num_neighbors"),
    (dict(num_neighbors=[10, True]), "num_neighbors"),
    (dict(num_neighbors=10), "num_neighbors"),
    (dict(loss="bpr", negatives="full"), "negatives"),
    (dict(negatives="full", training_mode="neighbor_sampled"), "negatives"),
    (dict(max_trained_interactions=0), "max_trained_interactions"),
    (dict(max_trained_interactions=1.5), "max_trained_interactions"),
])
def test_train_config_names_the_bad_field(fields, field):
    with pytest.raises(HybridRecError, match=rf"TrainConfig\.{field}\b"):
        TrainConfig(**fields)


def test_toml_reads_num_neighbors(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('[train]\nnum_neighbors = [10, 5]\nnegatives = "sampled"\ntraining_mode = "neighbor_sampled"\n'
                    "num_negatives = 256\nfull_graph_max_edges = 1_000_000\n")
    config = TrainConfig.from_toml(path)
    assert config.num_neighbors == [10, 5] and config.fanouts == [10, 5]
    assert (config.negatives, config.training_mode, config.num_negatives) == ("sampled", "neighbor_sampled", 256)
    path.write_text('[train]\nnum_neighbors = ["ten", 5]\n')
    with pytest.raises(HybridRecError, match=r"num_neighbors must be a list of integers or nothing"):
        TrainConfig.from_toml(path)
    path.write_text("[train]\nnum_neighbors = [10, 5, 5]\n")
    with pytest.raises(HybridRecError, match=rf"{path}.*TrainConfig\.num_neighbors"):
        TrainConfig.from_toml(path)
