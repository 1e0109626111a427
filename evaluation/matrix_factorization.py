"""BPR matrix-factorisation baseline (Rendle et al., 2009): user and item factors plus an item
bias, trained with the pairwise BPR loss against uniformly sampled negatives."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from hybridrec.errors import HybridRecError
from hybridrec.models.hybrid_gnn import bpr_loss_from_scores
from hybridrec.recommender_base import RecommenderBase

logger = logging.getLogger(__name__)


class BPRMatrixFactorization(nn.Module):
    """``score(u, i) = p_u . q_i + b_i``.

    Args:
        n_users, n_items: embedding table sizes.
        n_factors: factor dimension.
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(n_users, n_factors)
        self.item_factors = nn.Embedding(n_items, n_factors)
        self.item_bias = nn.Embedding(n_items, 1)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Factors ~ N(0, 0.1^2) drawn from ``generator``; biases 0."""
        with torch.no_grad():
            for table in (self.user_factors, self.item_factors):
                table.weight.copy_(torch.randn(table.weight.shape, generator=generator) * 0.1)
            self.item_bias.weight.zero_()

    def forward(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        """Pairwise scores: ``user_index`` ``[b]``, ``item_index`` ``[b]`` -> ``[b]``."""
        return ((self.user_factors(user_index) * self.item_factors(item_index)).sum(-1)
                + self.item_bias(item_index).squeeze(-1))

    def score_all(self, user_index: torch.Tensor) -> torch.Tensor:
        """Scores of every item: ``[b]`` -> ``[b, n_items]``."""
        return self.user_factors(user_index) @ self.item_factors.weight.T + self.item_bias.weight.T

    def bpr_loss(self, user_index: torch.Tensor, positive_index: torch.Tensor, negative_index: torch.Tensor,
                 regularization: float) -> torch.Tensor:
        """:func:`~hybridrec.models.hybrid_gnn.bpr_loss_from_scores` of ``s_up`` and ``s_un`` plus L2 on
        the batch's factors and biases (divided by the batch size) -> scalar."""
        ranking = bpr_loss_from_scores(self(user_index, positive_index), self(user_index, negative_index))
        penalty = (self.user_factors(user_index).pow(2).sum() + self.item_factors(positive_index).pow(2).sum()
                   + self.item_factors(negative_index).pow(2).sum() + self.item_bias(positive_index).pow(2).sum()
                   + self.item_bias(negative_index).pow(2).sum())
        return ranking + regularization * penalty / len(user_index)


class BPRMFRecommender(RecommenderBase):
    """Matrix factorisation trained with BPR on the training interactions (as implicit positives).

    Users without training interactions get zero factors, so they are ranked by item bias alone.

    Args:
        n_factors: factor dimension.
        epochs: passes over the training interactions.
        learning_rate: Adam learning rate.
        regularization: L2 weight on the factors and biases met in a batch.
        batch_size: positive pairs per step.
        seed: seeds initialisation, shuffling and negative sampling.

    Learned attributes:
        network_ (BPRMatrixFactorization), fit_seconds_ (float), loss_history_ (list[float], per epoch).
    """

    #: Intra-op threads while training: the steps are small, and more threads mostly add contention.
    training_threads = 1

    def __init__(self, *, n_factors: int = 64, epochs: int = 30, learning_rate: float = 0.01,
                 regularization: float = 1e-2, batch_size: int = 2048, seed: int = 0) -> None:
        self.n_factors = n_factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.batch_size = batch_size
        self.seed = seed

    def _check_params(self) -> None:
        """``n_factors``, ``epochs`` and ``batch_size`` >= 1."""
        for name in ("n_factors", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise HybridRecError(f"BPRMFRecommender.{name} must be >= 1, got {getattr(self, name)}")

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(min(threads, self.training_threads))
        try:
            self._train()
        finally:
            torch.set_num_threads(threads)

    def _train(self) -> None:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(self.seed)
        n_users, n_items = self.user_items_.shape
        self.network_ = BPRMatrixFactorization(n_users, n_items, self.n_factors)
        self.network_.reset_parameters(generator)
        positives = self.user_items_.tocoo()
        users_of_pairs = torch.from_numpy(positives.row.astype(np.int64))
        items_of_pairs = torch.from_numpy(positives.col.astype(np.int64))
        optimizer = torch.optim.Adam(self.network_.parameters(), lr=self.learning_rate)
        self.loss_history_ = []
        self.network_.train()
        for _ in tqdm(range(self.epochs), desc="BPR-MF", leave=False, disable=self.epochs < 10):
            order = torch.randperm(len(users_of_pairs), generator=generator)
            negatives = torch.randint(n_items, (len(order),), generator=generator)
            epoch_loss = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                loss = self.network_.bpr_loss(users_of_pairs[batch], items_of_pairs[batch],
                                              negatives[start:start + self.batch_size], self.regularization)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                epoch_loss += loss.detach().item() * len(batch)
            self.loss_history_.append(epoch_loss / len(order))
        self.network_.eval()
        with torch.no_grad():
            has_history = torch.from_numpy(np.diff(self.user_items_.indptr) > 0)
            self.network_.user_factors.weight[~has_history] = 0.0
        self.fit_seconds_ = time.perf_counter() - started
        logger.info("BPR-MF: %d epochs in %.1f s, final loss %.4f", self.epochs, self.fit_seconds_,
                    self.loss_history_[-1])

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        """``[b]`` -> ``[b, n_items]``."""
        with torch.no_grad():
            return self.network_.score_all(torch.as_tensor(np.asarray(user_index, dtype=np.int64)))

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """Cosine similarity of item factors: ``[b]`` -> ``[b, n_items]``."""
        with torch.no_grad():
            factors = nn.functional.normalize(self.network_.item_factors.weight, dim=1)
            return factors[torch.as_tensor(np.asarray(item_index, dtype=np.int64))] @ factors.T

    def _state(self) -> dict[str, torch.Tensor]:
        return {f"network.{name}": value for name, value in self.network_.state_dict().items()}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._check_state(state, {"network.user_factors.weight": ("users", self.n_factors),
                                  "network.item_factors.weight": ("items", self.n_factors),
                                  "network.item_bias.weight": ("items", 1)})
        self.network_ = BPRMatrixFactorization(len(self.user_ids_), len(self.item_ids_), self.n_factors)
        self.network_.load_state_dict({name[len("network."):]: value for name, value in state.items()})
        self.network_.eval()
