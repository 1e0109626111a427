"""Mini-batch trainer for the graph part of the hybrid model.

Adam with weight decay, full-catalog or sampled softmax or BPR with sampled negatives, early
stopping on validation recall@K (:mod:`training.validation`), best-state keeping, resumable
checkpoints (resumed only on the config and training data they were written for), seed control,
CPU or GPU (AMP on GPU), progress bars and per-epoch logs. Each epoch a seeded share of the warm
items is trained as cold (``TrainConfig.cold_item_share``).

How a step trains is resolved once per fit from the config and the data's sizes, logged, and
recorded in :class:`TrainResult` (``negatives``, ``training_mode``):

* full graph, full softmax (small catalogs): a batch of ``batch_size`` users, each scored against
  every item, after one propagation over the whole graph;
* full graph, sampled softmax: a batch of interactions (user, positive item), several in-batch
  groups of ``batch_size`` (:func:`training.sampling.full_graph_pairs_per_step`: the propagation
  costs at most about the scoring, so an epoch is about linear in the interactions), each scored
  against its group's positives and ``num_negatives`` drawn items with the logQ correction;
* neighbour-sampled (large graphs): a batch of ``batch_size`` interactions (``16 x`` for BPR)
  propagated over the subgraph sampled around its users, positives and negatives
  (:func:`training.sampling.subgraph_loader`), the loss on those seed nodes.

Measured on Gowalla's train.txt less a 10% validation hold-out (29,858 users x 40,981 items,
728,931 training interactions, no content; dim 64; 2 shared CPU cores whose load changed epoch
times 2-5x): the full softmax took 117 steps and 39-93 s per epoch, validation recall@20 0.126,
0.150, 0.166 after epochs 1-3; the sampled softmax 80 steps of 9,216 interactions and 29-155 s
per epoch, 0.119, 0.144, 0.161 with uniform draws (0.119, 0.145, 0.163 with popularity draws, the
default). At 41k items both cost about the same per epoch (a user's ~24 interactions share one
full-catalog row); only the full softmax's step grows with the catalog.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from hybridrec.device import resolve_device
from hybridrec.models.hybrid_gnn import (HybridGNN, bpr_loss, normalized_adjacency, normalized_edge_weight,
                                        sampled_negatives, sampled_softmax_loss, softmax_loss)
from training.checkpoints import check_resumable, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.sampling import NegativeSampler, full_graph_pairs_per_step, subgraph_loader
from training.training_data import GraphTrainingData
from training.validation import validation_recall, validation_users

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"


@dataclass
class TrainResult:
    """What a training run did.

    ``negatives`` (``"full"`` or ``"sampled"``) and ``training_mode`` (``"full_graph"`` or
    ``"neighbor_sampled"``) are the resolved values of the config's ``"auto"`` choices.
    """

    best_epoch: int = 0
    best_score: float = -math.inf
    epochs_run: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    stopped_early: bool = False
    negatives: str = "full"
    training_mode: str = "full_graph"


@dataclass(frozen=True)
class StepPlan:
    """How every step of one fit trains, resolved from the config and the data's sizes.

    Attributes:
        negatives: ``"full"`` or ``"sampled"``.
        training_mode: ``"full_graph"`` or ``"neighbor_sampled"``.
        pairs_per_step: interactions per step (sampled softmax and BPR; 0 for the full softmax).
        sampler: the sampled softmax's negatives (None otherwise).
        pair_users, pair_items: ``[N]`` the training interactions (user, item) in CSR order.
    """

    negatives: str
    training_mode: str
    pairs_per_step: int = 0
    sampler: NegativeSampler | None = None
    pair_users: np.ndarray | None = None
    pair_items: np.ndarray | None = None


def training_device(name: str) -> torch.device:
    """:func:`hybridrec.device.resolve_device`, except that training asked for on a missing GPU
    falls back to the CPU with a warning (a config written for a GPU machine still trains)."""
    if name == "cuda" and not torch.cuda.is_available():
        logger.warning("CUDA requested but not available: training on CPU")
        return torch.device("cpu")
    return resolve_device(name)


def _rows_dense(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """``[len(rows), n_items]`` dense rows: the full softmax's targets only."""
    return torch.from_numpy(matrix[rows].toarray()).to(device)


class Trainer:
    """Trains a :class:`HybridGNN` on :class:`GraphTrainingData`.

    Args:
        config: hyper-parameters and seed.
        checkpoint_dir: where ``last.pt`` is written after every validation run, with the config
            and the training data's :meth:`GraphTrainingData.fingerprint`. If it already holds
            one, training resumes from it when both match, and refuses (:class:`HybridRecError`
            naming the file and what differs) when they do not.
        progress: show a tqdm progress bar.
        fresh_checkpoint: ignore a checkpoint already in ``checkpoint_dir`` and train from the
            start; it is replaced at the first validation run.
    """

    def __init__(self, config: TrainConfig, checkpoint_dir: str | Path | None = None, progress: bool = True, *,
                 fresh_checkpoint: bool = False) -> None:
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress
        self.fresh_checkpoint = fresh_checkpoint
        self.device = training_device(config.device)

    # -- the plan -----------------------------------------------------------------------------
    def plan(self, data: GraphTrainingData) -> StepPlan:
        """Resolve ``training_mode`` and ``negatives`` for ``data`` (logged) and size the steps."""
        config = self.config
        num_items = data.train.shape[1]
        num_edges = data.graph_edges()
        mode = config.resolved_training_mode(num_edges)
        negatives = config.resolved_negatives(num_items, mode)
        logger.info("training: %s (%s edges, full_graph_max_edges=%s), %s negatives (%s items, "
                    "full_softmax_max_items=%s)", mode, f"{num_edges:,}", f"{config.full_graph_max_edges:,}",
                    negatives, f"{num_items:,}", f"{config.full_softmax_max_items:,}")
        if config.loss == "softmax" and negatives == "full":
            return StepPlan(negatives, mode)
        coo = data.train.tocoo()
        users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        if config.loss == "bpr":
            return StepPlan(negatives, mode, config.batch_size * 16, None, users, items)
        item_counts = torch.from_numpy(np.bincount(items, minlength=num_items))
        sampler = NegativeSampler(item_counts, config.num_negatives, config.batch_size)
        pairs = config.batch_size
        if mode == "full_graph":
            candidates = num_items if sampler.covers_catalog else config.batch_size + config.num_negatives
            pairs = full_graph_pairs_per_step(2 * num_edges, config.num_layers, config.batch_size, candidates)
        logger.info("sampled softmax: %d interactions per step, in-batch groups of %d, %d drawn negatives (%s)",
                    pairs, sampler.group_size, config.num_negatives, sampler.distribution)
        return StepPlan(negatives, mode, pairs, sampler, users, items)

    # -- one step ------------------------------------------------------------------------------
    def _loss(self, model: HybridGNN, data: GraphTrainingData, batch: np.ndarray, generator: torch.Generator,
              plan: StepPlan) -> torch.Tensor:
        """One full-graph step's loss over ``batch`` (users for the full softmax, else interactions)."""
        config = self.config
        x = model.node_inputs(data.content, data.present, data.user_has_id, data.item_has_id)
        user_embeddings, item_embeddings = model(x, data.adjacency)
        if config.loss == "softmax" and plan.negatives == "full":
            targets = _rows_dense(data.train, batch, self.device)
            return softmax_loss(user_embeddings[torch.from_numpy(batch).to(self.device)], item_embeddings,
                                targets, config.temperature)
        users = torch.from_numpy(plan.pair_users[batch]).to(self.device)
        positives = torch.from_numpy(plan.pair_items[batch]).to(self.device)
        if config.loss == "bpr":
            negatives = sampled_negatives(len(batch), model.num_items, generator).to(self.device)
            return bpr_loss(user_embeddings[users], item_embeddings[positives], item_embeddings[negatives])
        negatives = plan.sampler.draw(generator).to(self.device)
        return sampled_softmax_loss(user_embeddings[users], item_embeddings[positives], item_embeddings[negatives],
                                    config.temperature, positive_log_counts=plan.sampler.log_counts(positives),
                                    negative_log_counts=plan.sampler.log_counts(negatives),
                                    group_size=plan.sampler.group_size)

    def _subgraph_loss(self, model: HybridGNN, data: GraphTrainingData, item_has_id: torch.Tensor, batch,
                       plan: StepPlan) -> torch.Tensor:
        """One neighbour-sampled step's loss on the seed nodes of ``batch`` (a subgraph, see
        :func:`training.sampling.subgraph_loader`)."""
        batch = batch.to(self.device)
        x = model.subgraph_inputs(batch.n_id, data.content, data.present, data.user_has_id, item_has_id)
        out = model.propagate_subgraph(x, batch.edge_index, batch.edge_weight)
        users, positives, negatives = out[batch.src_index], out[batch.dst_pos_index], out[batch.dst_neg_index]
        if self.config.loss == "bpr":
            return bpr_loss(users, positives, negatives)
        positive_items = batch.n_id[batch.dst_pos_index] - model.num_users
        negative_items = batch.n_id[batch.dst_neg_index] - model.num_users
        group = None if plan.sampler.covers_catalog else len(users)
        return sampled_softmax_loss(users, positives, negatives, self.config.temperature,
                                    positive_log_counts=plan.sampler.log_counts(positive_items),
                                    negative_log_counts=plan.sampler.log_counts(negative_items), group_size=group)

    def _batches(self, data: GraphTrainingData, generator: torch.Generator, plan: StepPlan) -> list[np.ndarray]:
        if self.config.loss == "softmax" and plan.negatives == "full":
            pool = np.flatnonzero(np.diff(data.train.indptr) > 0)
        else:
            pool = np.arange(data.train.nnz)
        order = pool[torch.randperm(len(pool), generator=generator).numpy()]
        size = plan.pairs_per_step or self.config.batch_size
        return [order[start:start + size] for start in range(0, len(order), size)]

    def _epoch_steps(self, model: HybridGNN, data: GraphTrainingData, generator: torch.Generator,
                     plan: StepPlan) -> Iterator[Callable[[], torch.Tensor]]:
        """One epoch: a function computing each step's loss, in order (drawn as they come)."""
        if plan.training_mode == "neighbor_sampled":
            yield from self._subgraph_steps(model, data, generator, plan)
            return
        epoch_data = self._with_cold_items(data, generator)
        for batch in self._batches(data, generator, plan):
            yield functools.partial(self._loss, model, epoch_data, batch, generator, plan)

    def _subgraph_steps(self, model: HybridGNN, data: GraphTrainingData, generator: torch.Generator,
                        plan: StepPlan) -> Iterator[Callable[[], torch.Tensor]]:
        num_nodes = data.adjacency.shape[0]
        item_has_id = data.item_has_id
        if data.edge_index is None:                         # only the normalised adjacency: no cold items
            coo = data.adjacency.detach().cpu().to_sparse_coo().coalesce()
            edge_index, normalized = coo.indices(), coo.values()
        else:
            edge_index, edge_weight = data.edge_index, data.edge_weight
            chosen = self._draw_cold_items(data, generator)
            if chosen is not None:
                kept = ~self._interaction_edges_of(data, chosen)
                edge_index, edge_weight = edge_index[:, kept], edge_weight[kept]
                item_has_id = item_has_id.clone()
                item_has_id[chosen.to(item_has_id.device)] = False
            normalized = normalized_edge_weight(edge_index, edge_weight, num_nodes)
        pairs = torch.from_numpy(np.stack([plan.pair_users, plan.pair_items + model.num_users]))
        sampler = plan.sampler
        if self.config.loss == "bpr":
            sampler = NegativeSampler(torch.ones(model.num_items), 1, 0, "uniform")
        loader = subgraph_loader(edge_index, normalized, num_nodes, pairs, num_neighbors=self.config.fanouts,
                                 batch_size=plan.pairs_per_step, generator=generator, negatives=sampler,
                                 item_offset=model.num_users, negatives_per_pair=self.config.loss == "bpr")
        for batch in loader:
            yield functools.partial(self._subgraph_loss, model, data, item_has_id, batch, plan)

    def _draw_cold_items(self, data: GraphTrainingData, generator: torch.Generator) -> torch.Tensor | None:
        """The warm items trained as cold this epoch (None: no cold-item simulation)."""
        share = self.config.cold_item_share
        if share <= 0 or data.edge_index is None:
            return None
        warm = torch.nonzero(data.item_has_id.cpu()).squeeze(1)
        return warm[torch.randperm(len(warm), generator=generator)[: int(share * len(warm))]]

    @staticmethod
    def _interaction_edges_of(data: GraphTrainingData, chosen: torch.Tensor) -> torch.Tensor:
        """``[E]`` bool: the user–item edges (both directions) of the items ``chosen``."""
        num_users, num_nodes = len(data.user_has_id), data.adjacency.shape[0]
        cold_node = torch.zeros(num_nodes, dtype=torch.bool)
        cold_node[chosen + num_users] = True
        source, target = data.edge_index
        return ((source < num_users) & cold_node[target]) | ((target < num_users) & cold_node[source])

    def _with_cold_items(self, data: GraphTrainingData, generator: torch.Generator) -> GraphTrainingData:
        """``data`` for one epoch in which ``cold_item_share`` of the warm items are cold: no ID
        embedding and no interaction edges (their interactions stay in the loss targets)."""
        chosen = self._draw_cold_items(data, generator)
        if chosen is None:
            return data
        interaction = self._interaction_edges_of(data, chosen)
        num_nodes = data.adjacency.shape[0]
        adjacency = normalized_adjacency(data.edge_index[:, ~interaction], data.edge_weight[~interaction], num_nodes)
        item_has_id = data.item_has_id.clone()
        item_has_id[chosen.to(item_has_id.device)] = False
        return dataclasses.replace(data, adjacency=adjacency.to(self.device), item_has_id=item_has_id)

    # -- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, model: HybridGNN, data: GraphTrainingData) -> float:
        """Recall@``eval_k`` on ``data.valid`` ranking all items not in ``data.train``, after a
        full-graph propagation (:mod:`training.validation`).

        Every validation user up to ``full_softmax_max_items`` items (exact); a seeded sample of
        users above, scored in memory-bounded blocks.
        """
        model.eval()
        x = model.node_inputs(data.content, data.present, data.user_has_id, data.item_has_id)
        user_embeddings, item_embeddings = model(x, data.adjacency)
        exact = model.num_items <= self.config.full_softmax_max_items
        users = validation_users(data.valid, exact=exact, seed=self.config.seed)
        score = validation_recall(user_embeddings, item_embeddings, data.train, data.valid, users,
                                  self.config.eval_k, exact=exact)
        model.train()
        return score

    # -- loop ----------------------------------------------------------------------------------
    def fit(self, model: HybridGNN, data: GraphTrainingData) -> TrainResult:
        """Train ``model`` in place; on return it holds the best validated state (or the last).

        Raises:
            HybridRecError: ``checkpoint_dir`` holds a checkpoint of another config or other data
                (and ``fresh_checkpoint`` is off).
        """
        config = self.config
        fingerprint = self._fingerprint(data)
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model.to(self.device).train()
        data = data.to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        use_amp = config.amp and self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        plan = self.plan(data)
        result = TrainResult()
        best_state = None
        start_epoch, stale = 0, 0
        resumed = self._resume(model, optimizer, generator, fingerprint)
        if resumed is not None:
            start_epoch, result, best_state, stale = resumed
        result.negatives, result.training_mode = plan.negatives, plan.training_mode
        started = time.perf_counter()
        epochs = range(start_epoch, config.epochs)
        bar = tqdm(epochs, desc="train", unit="epoch", disable=not self.progress, leave=False)
        for epoch in bar:
            total, steps, epoch_started = 0.0, 0, time.perf_counter()
            step_bar = tqdm(desc=f"epoch {epoch + 1}", unit="step", disable=not self.progress, leave=False)
            for step_loss in self._epoch_steps(model, data, generator, plan):
                autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
                with autocast:
                    loss = step_loss()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.item()
                steps += 1
                step_bar.update()
            step_bar.close()
            epoch_seconds = time.perf_counter() - epoch_started
            entry = {"epoch": epoch + 1, "loss": total / max(steps, 1)}
            validate_now = data.valid is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs)
            if validate_now:
                score = self.validate(model, data)
                entry[f"valid_recall@{config.eval_k}"] = score
                if score > result.best_score:
                    result.best_score, result.best_epoch, stale = score, epoch + 1, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            result.history.append(entry)
            result.epochs_run = epoch + 1
            logger.info("epoch %s (%d steps, %.1f s training)", " ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()), steps, epoch_seconds)
            bar.set_postfix({k: round(v, 4) for k, v in entry.items() if k != "epoch"})
            if validate_now:
                self._save(model, optimizer, generator, epoch + 1, result, best_state, stale, fingerprint)
                if stale >= config.patience:
                    result.stopped_early = True
                    break
        result.seconds = time.perf_counter() - started
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return result

    # -- checkpoints ---------------------------------------------------------------------------
    def _fingerprint(self, data: GraphTrainingData) -> dict | None:
        """The data's fingerprint when checkpoints are written (none needed otherwise)."""
        if self.checkpoint_dir is None:
            return None
        started = time.perf_counter()
        fingerprint = data.fingerprint()
        logger.debug("training-data fingerprint in %.2f s: %s", time.perf_counter() - started, fingerprint)
        return fingerprint

    def _save(self, model, optimizer, generator, epoch, result, best_state, stale, fingerprint) -> None:
        if self.checkpoint_dir is None:
            return
        save_checkpoint(self.checkpoint_dir / LAST_CHECKPOINT, {
            "config": self.config.to_dict(), "data_fingerprint": fingerprint, "epoch": epoch, "stale": stale,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "best_state": best_state, "best_score": result.best_score, "best_epoch": result.best_epoch,
            "history": result.history, "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        })

    def _resume(self, model, optimizer, generator, fingerprint):
        """Restore the state saved in ``last.pt``; None when there is none or a fresh start was asked.

        Raises:
            HybridRecError: the checkpoint is unreadable or was written for another config or data.
        """
        path = None if self.checkpoint_dir is None else self.checkpoint_dir / LAST_CHECKPOINT
        if path is None or not path.exists():
            return None
        if self.fresh_checkpoint:
            logger.warning("%s: not resumed (fresh_checkpoint): training from the start; it is replaced at the "
                           "first validation run", path)
            return None
        state = load_checkpoint(path)
        check_resumable(path, state, config=self.config.to_dict(), fingerprint=fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result = TrainResult(best_epoch=state["best_epoch"], best_score=state["best_score"],
                             epochs_run=state["epoch"], history=list(state["history"]))
        logger.info("resuming from epoch %d (best recall %.4f at epoch %d)", state["epoch"], result.best_score, result.best_epoch)
        return state["epoch"], result, state["best_state"], state["stale"]
