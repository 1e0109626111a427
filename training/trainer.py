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

Measured on Gowalla's train.txt less a 10% validation hold-out (29,858 users x 40,981 items, 728,931
interactions, no content, dim 64, 2 shared cores): the full softmax took 117 steps and 39-93 s per
epoch (validation recall@20 0.126, 0.150, 0.166 after epochs 1-3), the sampled softmax 80 steps of
9,216 interactions and 29-155 s (0.119, 0.145, 0.163 with the default popularity draws). At 41k
items both cost about the same per epoch; only the full softmax's step grows with the catalog.
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
from training import distributed
from training.checkpoints import check_resumable, load_checkpoint, read_checkpoint_bytes, save_checkpoint
from training.config import TrainConfig
from training.distributed import DistributedContext, shard_loss, shard_positions
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
    ``world_size`` is the number of processes that trained (1 without torch.distributed);
    ``step_seconds_per_rank`` each rank's mean training seconds per step and
    ``memory_mb_per_rank`` its peak memory (GPU memory allocated on a GPU, resident set size on
    the CPU), in rank order.
    """

    best_epoch: int = 0
    best_score: float = -math.inf
    epochs_run: int = 0
    epoch_limit: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    stopped_early: bool = False
    negatives: str = "full"
    training_mode: str = "full_graph"
    world_size: int = 1
    step_seconds_per_rank: list = field(default_factory=list)
    memory_mb_per_rank: list = field(default_factory=list)


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
    """The device training runs on: :func:`hybridrec.device.resolve_device`, the one rule of the
    package (``"auto"``: the GPU when there is one; a CUDA device asked for on a machine without
    one is a :class:`HybridRecError`, never a silent switch to the CPU)."""
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
        self.context: DistributedContext | None = None

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
        """One full-graph step's loss over ``batch`` (users for the full softmax, else interactions).

        Under torch.distributed ``batch`` is the global batch: every rank draws what a single
        process draws for it (the same negatives) and scores its shard (whole in-batch groups of
        the sampled softmax), the loss rescaled by :func:`training.distributed.shard_loss`.
        """
        config, context = self.config, self.context
        x = model.node_inputs(data.content, data.present, data.user_has_id, data.item_has_id)
        user_embeddings, item_embeddings = model(x, data.adjacency)
        full = config.loss == "softmax" and plan.negatives == "full"
        unit = (plan.sampler.group_size if plan.sampler is not None else 0) or 1    # sampled softmax: whole groups
        shard = None if context is None else shard_positions(len(batch), context.rank, context.world_size, unit)
        rows = batch if shard is None else batch[shard]
        if full:
            if not len(rows):                               # an empty shard: no loss, every rank steps
                return user_embeddings.sum() * 0.0
            targets = _rows_dense(data.train, rows, self.device)
            loss = softmax_loss(user_embeddings[torch.from_numpy(rows).to(self.device)], item_embeddings,
                                targets, config.temperature)
            return loss if shard is None else shard_loss(loss, len(rows), len(batch), context.world_size)
        users = torch.from_numpy(plan.pair_users[rows]).to(self.device)
        positives = torch.from_numpy(plan.pair_items[rows]).to(self.device)
        if config.loss == "bpr":                            # drawn for the global batch: generators stay in step
            negatives = sampled_negatives(len(batch), model.num_items, generator)
            negatives = (negatives if shard is None else negatives[torch.from_numpy(shard)]).to(self.device)
        else:
            negatives = plan.sampler.draw(generator).to(self.device)
        if not len(rows):
            return user_embeddings.sum() * 0.0
        if config.loss == "bpr":
            loss = bpr_loss(user_embeddings[users], item_embeddings[positives], item_embeddings[negatives])
        else:
            loss = sampled_softmax_loss(user_embeddings[users], item_embeddings[positives], item_embeddings[negatives],
                                        config.temperature, positive_log_counts=plan.sampler.log_counts(positives),
                                        negative_log_counts=plan.sampler.log_counts(negatives),
                                        group_size=plan.sampler.group_size)
        return loss if shard is None else shard_loss(loss, len(rows), len(batch), context.world_size)

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
                     plan: StepPlan) -> Iterator[Callable[[HybridGNN], torch.Tensor]]:
        """One epoch: a function of the model computing each step's loss, in order (drawn as they come)."""
        if plan.training_mode == "neighbor_sampled":
            yield from self._subgraph_steps(model, data, generator, plan)
            return
        epoch_data = self._with_cold_items(data, generator)
        for batch in self._batches(data, generator, plan):
            yield functools.partial(self._loss, data=epoch_data, batch=batch, generator=generator, plan=plan)

    def _subgraph_steps(self, model: HybridGNN, data: GraphTrainingData, generator: torch.Generator,
                        plan: StepPlan) -> Iterator[Callable[[HybridGNN], torch.Tensor]]:
        """Neighbour-sampled steps. Under torch.distributed each rank takes a padded shard of a
        shared permutation of the interactions (:func:`training.distributed.padded_shard`, so every
        rank takes the same number of steps) in batches of ``pairs_per_step / world_size``,
        sampled from a generator of its own (seeded from the shared one: the subgraphs' draws
        differ in number between ranks). Each rank's loss is its batch's mean (a batch's positives
        are in-batch negatives of its own pairs only): close to, not bit-equal with, one process."""
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
        batch_size, loader_generator, context = plan.pairs_per_step, generator, self.context
        if context is not None:
            order = torch.randperm(pairs.shape[1], generator=generator)
            pairs = pairs[:, distributed.padded_shard(order, context.rank, context.world_size)]
            batch_size = -(-batch_size // context.world_size)
            seed = int(torch.randint(2**62, (1,), generator=generator))
            loader_generator = torch.Generator().manual_seed(seed + context.rank)
        sampler = plan.sampler
        if self.config.loss == "bpr":
            sampler = NegativeSampler(torch.ones(model.num_items), 1, 0, "uniform")
        loader = subgraph_loader(edge_index, normalized, num_nodes, pairs, num_neighbors=self.config.fanouts,
                                 batch_size=batch_size, generator=loader_generator, negatives=sampler,
                                 item_offset=model.num_users, negatives_per_pair=self.config.loss == "bpr")
        for batch in loader:
            yield functools.partial(self._subgraph_loss, data=data, item_has_id=item_has_id, batch=batch, plan=plan)

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

        Under torchrun (``WORLD_SIZE > 1``, see :mod:`training.distributed`) every rank calls this
        with the same data and config: the model trains under DDP on each rank's shard of every
        global batch, rank 0 validates (its score broadcast, so every rank stops at the same epoch)
        and writes the checkpoints, and every rank ends with the same weights.

        Raises:
            HybridRecError: ``checkpoint_dir`` holds a checkpoint of another config or other data
                (and ``fresh_checkpoint`` is off).
        """
        config = self.config
        self.context = context = distributed.init_from_env(self.device)
        if context is not None:
            self.device = context.device
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
        step_module = model if context is None else distributed.wrap(model, context)
        started, step_seconds, all_steps = time.perf_counter(), 0.0, 0
        result.epoch_limit = epoch_limit = config.epoch_limit(int(data.train.nnz))
        if epoch_limit < config.epochs:
            logger.info("GNN epochs cut from %d to %d: %d training interactions x %d epochs would pass max_trained_"
                        "interactions=%d", config.epochs, epoch_limit, data.train.nnz, config.epochs, config.max_trained_interactions)
        epochs = range(start_epoch, epoch_limit)
        bar = tqdm(epochs, desc="train", unit="epoch", disable=not self.progress, leave=False)
        for epoch in bar:
            total, steps, epoch_started = 0.0, 0, time.perf_counter()
            step_bar = tqdm(desc=f"epoch {epoch + 1}", unit="step", disable=not self.progress, leave=False)
            for step_loss in self._epoch_steps(model, data, generator, plan):
                autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
                with autocast:
                    loss = step_module(step_loss) if context is not None else step_loss(model)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.item()
                steps += 1
                step_bar.update()
            step_bar.close()
            epoch_seconds = time.perf_counter() - epoch_started
            step_seconds, all_steps = step_seconds + epoch_seconds, all_steps + steps
            loss = total / max(steps, 1)
            entry = {"epoch": epoch + 1, "loss": loss if context is None else distributed.mean_over_ranks(loss, context)}
            validate_now = data.valid is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == epoch_limit)
            if validate_now:
                score = self._validate_once(model, data)
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
        self._record_resources(result, step_seconds / max(all_steps, 1))
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return result

    def _validate_once(self, model: HybridGNN, data: GraphTrainingData) -> float:
        """:meth:`validate` here, or on rank 0 with its score broadcast to every rank."""
        if self.context is None:
            return self.validate(model, data)
        score = self.validate(model, data) if self.context.is_main else 0.0
        return distributed.broadcast_score(score, self.context)

    def _record_resources(self, result: TrainResult, step_seconds: float) -> None:
        """Each rank's mean step time and peak memory into ``result`` (gathered from every rank), logged."""
        row = [step_seconds, distributed.peak_memory_mb(self.device)]
        rows = [row] if self.context is None else distributed.gather_floats(row, self.context)
        result.world_size = len(rows)
        result.step_seconds_per_rank = [round(seconds, 4) for seconds, _ in rows]
        result.memory_mb_per_rank = [round(memory, 1) for _, memory in rows]
        logger.info("GNN training on %d process(es): %s s per step, peak memory %s MB (%s) per rank",
                    result.world_size, result.step_seconds_per_rank, result.memory_mb_per_rank,
                    "GPU allocated" if self.device.type == "cuda" else "resident set")

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
        """Write ``last.pt`` (rank 0 only under torch.distributed: every rank holds the same state)."""
        if self.checkpoint_dir is None or not (self.context is None or self.context.is_main):
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
        state = self._read_checkpoint(path)
        if state is None:
            return None
        check_resumable(path, state, config=self.config.to_dict(), fingerprint=fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result = TrainResult(best_epoch=state["best_epoch"], best_score=state["best_score"],
                             epochs_run=state["epoch"], history=list(state["history"]))
        logger.info("resuming from epoch %d (best recall %.4f at epoch %d)", state["epoch"], result.best_score, result.best_epoch)
        return state["epoch"], result, state["best_state"], state["stale"]

    def _read_checkpoint(self, path: Path | None) -> dict | None:
        """``path`` read (None: absent, or a fresh start asked for). Under torch.distributed rank 0
        reads the file and broadcasts its bytes, so ranks on machines without the file resume too,
        and every rank checks and loads the same bytes (``torch.load(weights_only=True)``)."""
        main = self.context is None or self.context.is_main
        present = main and path is not None and path.exists()
        if present and self.fresh_checkpoint:
            logger.warning("%s: not resumed (fresh_checkpoint): training from the start; it is replaced at the "
                           "first validation run", path)
            present = False
        if self.context is None:
            return load_checkpoint(path) if present else None
        payload = None
        if present:
            try:
                payload = path.read_bytes()
            except OSError as err:                          # every rank then fails to read it alike
                logger.error("%s: %s", path, err)
                payload = b""
        payload = distributed.broadcast_bytes(payload, self.context)
        return None if payload is None else read_checkpoint_bytes(payload, path)
