"""Mini-batch trainer for the graph part of the hybrid model.

Adam with weight decay, full-catalog softmax or BPR with sampled negatives, early stopping on
validation recall@K (:func:`evaluation.metrics.recall_at_k` over :func:`hybridrec.topk.select_top_k`
lists), best-state keeping, resumable checkpoints (resumed only on the config and training data
they were written for), seed control, CPU or GPU (AMP on GPU), a progress bar and per-epoch logs.
Each epoch a seeded share of the warm items is trained as cold (``TrainConfig.cold_item_share``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from evaluation.metrics import RankingMetrics
from hybridrec.device import resolve_device
from hybridrec.models.hybrid_gnn import HybridGNN, bpr_loss, normalized_adjacency, sampled_negatives, softmax_loss
from hybridrec.topk import select_top_k
from training.checkpoints import check_resumable, load_checkpoint, save_checkpoint
from training.config import TrainConfig

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
#: Bump when :meth:`GraphTrainingData.fingerprint` changes what it covers.
FINGERPRINT_FORMAT = 1


def _array_bytes(value: torch.Tensor | np.ndarray) -> np.ndarray:
    """``value`` as a C-contiguous CPU numpy array (bfloat16 by its bit pattern)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.view(torch.int16)
        value = value.contiguous().numpy()
    return np.ascontiguousarray(value)


def _digest(arrays: list[torch.Tensor | np.ndarray]) -> str:
    """SHA-256 over each array's dtype, shape and bytes, in order: equal data, equal digest in every process."""
    digest = hashlib.sha256()
    for value in arrays:
        array = _array_bytes(value)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def _csr_arrays(matrix: sp.csr_matrix | None) -> list[np.ndarray]:
    """A CSR matrix in canonical form (sorted, duplicates summed) as fixed-dtype arrays."""
    if matrix is None:
        return [np.zeros(0, dtype=np.int64)]
    canonical = sp.csr_matrix(matrix, copy=True)
    canonical.sum_duplicates()
    return [np.asarray(canonical.shape, dtype=np.int64), canonical.indptr.astype(np.int64),
            canonical.indices.astype(np.int64), canonical.data.astype(np.float64)]


@dataclass
class GraphTrainingData:
    """Everything one training step needs, as tensors.

    Attributes:
        adjacency: normalised sparse adjacency ``[num_nodes, num_nodes]``.
        content: modality -> item content ``[num_items, d_m]``.
        present: modality -> ``[num_items]`` bool, whether the item has that modality.
        user_has_id: ``[num_users]`` bool, users with training interactions.
        item_has_id: ``[num_items]`` bool, items with training interactions.
        train: ``[num_users, num_items]`` training interactions (CSR).
        valid: ``[num_users, num_items]`` held-out validation positives (CSR), or None.
        edge_index, edge_weight: the edges ``adjacency`` was normalised from (``[2, E]`` with both
            directions, ``[E]``; kept on the CPU), in :class:`HybridGNN`'s node order ``[users |
            items | attributes]``; with them, training can take items' interaction edges out
            (``TrainConfig.cold_item_share``). None: no cold-item simulation.
    """

    adjacency: torch.Tensor
    content: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    user_has_id: torch.Tensor
    item_has_id: torch.Tensor
    train: sp.csr_matrix
    valid: sp.csr_matrix | None = None
    edge_index: torch.Tensor | None = None
    edge_weight: torch.Tensor | None = None

    def fingerprint(self) -> dict:
        """What this data is, for checking that a checkpoint was trained on it.

        Sizes (users, items, attribute nodes, training/validation interactions, graph edges),
        content dims per block, and two SHA-256 digests over the tensors' bytes: one of the
        training and validation interactions, the graph edges and weights (the normalised
        adjacency when no edges are given) and the ID masks; one of the content blocks and their
        presence masks. Deterministic (same data, same fingerprint in every process) and cheap
        (one pass over the bytes). Only numbers and strings, so it saves in a checkpoint.
        """
        num_users, num_items = self.train.shape
        if self.edge_index is not None:
            edges = [self.edge_index.to(torch.int64), self.edge_weight.to(torch.float32)]
            num_edges = int(self.edge_index.shape[1])
        elif self.adjacency.layout == torch.strided:
            edges, num_edges = [self.adjacency], int(torch.count_nonzero(self.adjacency))
        else:
            coo = self.adjacency.detach().cpu().to_sparse_coo().coalesce()
            edges, num_edges = [coo.indices(), coo.values()], int(coo.values().numel())
        interactions = [*_csr_arrays(self.train), *_csr_arrays(self.valid), *edges,
                        np.asarray(self.adjacency.shape, dtype=np.int64), self.user_has_id, self.item_has_id]
        content = []
        for name in sorted(self.content):
            content += [np.frombuffer(name.encode(), dtype=np.uint8), self.content[name], self.present[name]]
        return {
            "format": FINGERPRINT_FORMAT, "num_users": int(num_users), "num_items": int(num_items),
            "num_attribute_nodes": int(self.adjacency.shape[0]) - int(num_users) - int(num_items),
            "train_interactions": int(self.train.nnz),
            "valid_interactions": 0 if self.valid is None else int(self.valid.nnz), "edges": num_edges,
            "content_dims": {name: int(block.shape[1]) for name, block in sorted(self.content.items())},
            "interactions_sha256": _digest(interactions), "content_sha256": _digest(content),
        }

    def to(self, device: torch.device) -> "GraphTrainingData":
        return dataclasses.replace(
            self, adjacency=self.adjacency.to(device),
            content={k: v.to(device) for k, v in self.content.items()},
            present={k: v.to(device) for k, v in self.present.items()},
            user_has_id=self.user_has_id.to(device), item_has_id=self.item_has_id.to(device))


@dataclass
class TrainResult:
    """What a training run did."""

    best_epoch: int = 0
    best_score: float = -math.inf
    epochs_run: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    stopped_early: bool = False


def training_device(name: str) -> torch.device:
    """:func:`hybridrec.device.resolve_device`, except that training asked for on a missing GPU
    falls back to the CPU with a warning (a config written for a GPU machine still trains)."""
    if name == "cuda" and not torch.cuda.is_available():
        logger.warning("CUDA requested but not available: training on CPU")
        return torch.device("cpu")
    return resolve_device(name)


def _rows_dense(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
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

    # -- one step ------------------------------------------------------------------------------
    def _loss(self, model: HybridGNN, data: GraphTrainingData, batch: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        config = self.config
        x = model.node_inputs(data.content, data.present, data.user_has_id, data.item_has_id)
        user_embeddings, item_embeddings = model(x, data.adjacency)
        if config.loss == "softmax":
            targets = _rows_dense(data.train, batch, self.device)
            return softmax_loss(user_embeddings[torch.from_numpy(batch).to(self.device)], item_embeddings,
                                targets, config.temperature)
        coo = data.train.tocoo()
        users = torch.from_numpy(coo.row[batch].astype(np.int64)).to(self.device)
        positives = torch.from_numpy(coo.col[batch].astype(np.int64)).to(self.device)
        negatives = sampled_negatives(len(batch), model.num_items, generator).to(self.device)
        return bpr_loss(user_embeddings[users], item_embeddings[positives], item_embeddings[negatives])

    def _batches(self, data: GraphTrainingData, generator: torch.Generator) -> list[np.ndarray]:
        if self.config.loss == "softmax":
            pool = np.flatnonzero(np.diff(data.train.indptr) > 0)
        else:
            pool = np.arange(data.train.nnz)
        order = pool[torch.randperm(len(pool), generator=generator).numpy()]
        size = self.config.batch_size if self.config.loss == "softmax" else self.config.batch_size * 16
        return [order[start:start + size] for start in range(0, len(order), size)]

    def _with_cold_items(self, data: GraphTrainingData, generator: torch.Generator) -> GraphTrainingData:
        """``data`` for one epoch in which ``cold_item_share`` of the warm items are cold: no ID
        embedding and no interaction edges (their interactions stay in the loss targets)."""
        share = self.config.cold_item_share
        if share <= 0 or data.edge_index is None:
            return data
        warm = torch.nonzero(data.item_has_id.cpu()).squeeze(1)
        chosen = warm[torch.randperm(len(warm), generator=generator)[: int(share * len(warm))]]
        num_users, num_nodes = len(data.user_has_id), data.adjacency.shape[0]
        cold_node = torch.zeros(num_nodes, dtype=torch.bool)
        cold_node[chosen + num_users] = True
        source, target = data.edge_index
        interaction = ((source < num_users) & cold_node[target]) | ((target < num_users) & cold_node[source])
        adjacency = normalized_adjacency(data.edge_index[:, ~interaction], data.edge_weight[~interaction], num_nodes)
        item_has_id = data.item_has_id.clone()
        item_has_id[chosen.to(item_has_id.device)] = False
        return dataclasses.replace(data, adjacency=adjacency.to(self.device), item_has_id=item_has_id)

    # -- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, model: HybridGNN, data: GraphTrainingData) -> float:
        """Recall@``eval_k`` on ``data.valid`` ranking all items not in ``data.train``.

        The lists keep ``torch.topk``'s own tie order (``ties="backend"``): early stopping, hence
        the model, was decided by it.
        """
        model.eval()
        x = model.node_inputs(data.content, data.present, data.user_has_id, data.item_has_id)
        user_embeddings, item_embeddings = model(x, data.adjacency)
        users = np.flatnonzero(np.diff(data.valid.indptr) > 0)
        metrics = RankingMetrics((self.config.eval_k,), model.num_items, metrics=("recall",))
        for start in range(0, len(users), 1024):
            batch = users[start:start + 1024]
            scores = (user_embeddings[torch.from_numpy(batch).to(self.device)] @ item_embeddings.T).float().cpu()
            seen = data.train[batch].tocoo()
            scores[torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(seen.col.astype(np.int64))] = -torch.inf
            _, top = select_top_k(scores, self.config.eval_k, ties="backend")
            metrics.update(torch.from_numpy(top), torch.from_numpy(data.valid[batch].toarray() > 0))
        model.train()
        return metrics.compute()[f"recall@{self.config.eval_k}"]

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
        result = TrainResult()
        best_state = None
        start_epoch, stale = 0, 0
        resumed = self._resume(model, optimizer, generator, fingerprint)
        if resumed is not None:
            start_epoch, result, best_state, stale = resumed
        started = time.perf_counter()
        epochs = range(start_epoch, config.epochs)
        bar = tqdm(epochs, desc="train", unit="epoch", disable=not self.progress, leave=False)
        for epoch in bar:
            total, steps = 0.0, 0
            epoch_data = self._with_cold_items(data, generator)
            for batch in self._batches(data, generator):
                autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
                with autocast:
                    loss = self._loss(model, epoch_data, batch, generator)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.item()
                steps += 1
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
            logger.info("epoch %s", " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
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
