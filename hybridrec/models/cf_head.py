"""The CF head of the hybrid model: an item–item matrix, with content-predicted cold columns.

One small interface, shared with the sparse head for large catalogs
(:class:`hybridrec.models.graph_filter.GraphFilterHead`), so either takes its place in
:class:`hybridrec.recommender.HybridRecommender`:

* :meth:`DenseEASEHead.fit_weights` — item–item weights ``[n_items, n_items]`` of a user–item matrix;
* :meth:`DenseEASEHead.score` — scores ``history @ B`` of a batch of histories;
* :meth:`DenseEASEHead.item_weights` — the fitted weights as a tensor (saved with the model);
* :meth:`DenseEASEHead.fill_cold_columns` — predicted columns for items without interactions, from
  their content vectors (:mod:`hybridrec.models.content_map`);
* :meth:`DenseEASEHead.validation_fold` / :meth:`DenseEASEHead.hidden_scores` — a refit on a
  pseudo-cold fold and the scores of its hidden items, which :func:`hybridrec.tuning.select_block_weights`
  compares across content weightings.

:meth:`DenseEASEHead.content_targets` and :meth:`DenseEASEHead.predict_cold_columns` are the pure parts
of the last step, which the pseudo-cold validation (:mod:`hybridrec.tuning`) calls on folds.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from hybridrec.errors import HybridRecError
from hybridrec.item_content import ItemContent
from hybridrec.models.content_map import item_gram_eigen, reconstruction_map, ridge_map
from hybridrec.models.ease import fit_ease


class DenseEASEHead:
    name = "dense_ease"

    """Dense EASE (closed form, :func:`~hybridrec.models.ease.fit_ease`) plus its cold-item maps.

    Args:
        l2: ridge strength of the head.
        item_power, user_power: degree scaling of the input (see :func:`~hybridrec.models.ease.fit_ease`).
        content_l2: ridge strength of the content -> column map.
        content_target_l2_factor: the ridge map learns the columns of an EASE fitted with
            ``l2 x`` this factor (1: the head's own columns).
        content_direct_l2: ridge strength of the reconstruction-objective map.
        device: where the factorisation runs (``"cpu"`` or a CUDA device; see
            :func:`~hybridrec.models.ease.fit_ease`).

    Attributes:
        weights_ (np.ndarray): ``[n_items, n_items]`` float32 after :meth:`fit` (cold columns zero
            until :meth:`fill_cold_columns`).
    """

    def __init__(self, *, l2: float, item_power: float, user_power: float, content_l2: float,
                 content_target_l2_factor: float, content_direct_l2: float,
                 device: str | torch.device = "cpu") -> None:
        self.l2, self.item_power, self.user_power = l2, item_power, user_power
        self.device = device
        self.content_l2, self.content_target_l2_factor = content_l2, content_target_l2_factor
        self.content_direct_l2 = content_direct_l2

    def fit_weights(self, user_items: sp.spmatrix, l2: float | None = None) -> np.ndarray:
        """Item–item weights ``[n_items, n_items]`` of ``user_items`` ``[n_users, n_items]`` (``l2``
        defaults to the head's)."""
        return fit_ease(user_items, self.l2 if l2 is None else l2, self.item_power, self.user_power,
                        device=self.device)

    def fit(self, user_items: sp.spmatrix) -> "DenseEASEHead":
        """Fit the head on binary interactions ``[n_users, n_items]``; return ``self``."""
        self.weights_ = self.fit_weights(user_items)
        return self

    def item_weights(self) -> Tensor:
        """The fitted weights ``[n_items, n_items]`` (float32, sharing memory with ``weights_``)."""
        if not hasattr(self, "weights_"):
            raise HybridRecError("DenseEASEHead is not fitted: call fit() first")
        return torch.from_numpy(self.weights_)

    def score(self, history: Tensor) -> Tensor:
        """Scores ``[b, n_items]`` of histories ``[b, n_items]`` (dense, binary)."""
        return history @ self.item_weights()

    def content_targets(self, user_items: sp.spmatrix, weights: np.ndarray) -> np.ndarray:
        """``[n_items, n_items]`` item–item columns the content map regresses onto (``weights`` itself
        when ``content_target_l2_factor`` is 1)."""
        if self.content_target_l2_factor == 1.0:
            return weights
        return self.fit_weights(user_items, self.l2 * self.content_target_l2_factor)

    def predict_cold_columns(self, user_items: sp.spmatrix, weights: np.ndarray, targets: np.ndarray,
                             content: ItemContent, warm: np.ndarray, cold: np.ndarray, block_weights: dict,
                             item_eigen: tuple | None = None) -> np.ndarray:
        """Predicted columns ``[n_items, n_cold]`` for ``cold`` items, scaled like warm columns.

        Args:
            user_items: ``[n_users, n_items]`` binary interactions the weights were fitted on.
            weights: ``[n_items, n_items]`` the warm head (for the score scale).
            targets: ``[n_items, n_items]`` the columns the ridge map learns (:meth:`content_targets`).
            content: item content blocks; ``block_weights`` scale them into one vector per item.
            warm, cold: item indices with and without interactions.
            item_eigen: :func:`~hybridrec.models.content_map.item_gram_eigen` of ``user_items``,
                reused across validation trials.
        """
        features = content.matrix(block_weights)
        ridge, direct = self.column_maps(user_items, targets, features, warm, item_eigen)
        columns, _ = self.mapped_columns(ridge, direct, features[cold], user_items, weights, warm)
        return columns

    def column_maps(self, user_items: sp.spmatrix, targets: np.ndarray, features: np.ndarray, warm: np.ndarray,
                    item_eigen: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The two content -> column maps learned on the ``warm`` items: ``ridge`` ``[F, n_items]`` and
        ``direct`` ``[n_items, F]`` (float64), from content vectors ``features`` ``[n_items, F]``."""
        ridge = ridge_map(features[warm], targets[:, warm].T, self.content_l2)          # [F, n_items]
        direct = reconstruction_map(user_items, warm, features[warm], self.content_direct_l2, item_eigen)  # [n_items, F]
        return ridge, direct

    @staticmethod
    def mapped_columns(ridge: np.ndarray, direct: np.ndarray, features: np.ndarray, user_items: sp.spmatrix,
                       weights: np.ndarray, warm: np.ndarray, normalizers: tuple | None = None
                       ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """Columns ``[n_items, n_new]`` for content vectors ``features`` ``[n_new, F]`` through the maps
        of :meth:`column_maps`, and the ``(ridge std, direct std, score scale)`` used.

        ``normalizers`` None: computed from these columns (the two maps' outputs are z-scaled and
        summed, then scaled so training users' scores on them spread like their scores on the warm
        columns of ``weights``); given: reused, so items predicted later are scaled like these.
        """
        ridge_columns = (features @ ridge).T
        direct_columns = direct @ features.T
        if normalizers is None:
            ridge_std, direct_std = max(float(ridge_columns.std()), 1e-12), max(float(direct_columns.std()), 1e-12)
        else:
            ridge_std, direct_std, scale = normalizers
        blended = ridge_columns / ridge_std + direct_columns / direct_std
        if normalizers is None:
            # Predicted columns are smoother than learned ones, so their scores x_u·b add up
            # differently: match the scale of training users' scores on warm items, so cold items
            # compete fairly with warm ones in a mixed ranking.
            warm_scores = user_items @ weights[:, warm]
            cold_scores = user_items @ blended
            scale = float(np.std(warm_scores)) / max(float(np.std(cold_scores)), 1e-12)
        return (blended * scale).astype(np.float32), (ridge_std, direct_std, scale)

    def validation_fold(self, visible: sp.csr_matrix) -> tuple:
        """Everything a pseudo-cold fold reuses across weightings: the head refitted on ``visible``
        ``[n_users, n_items]``, its content targets and the item Gram eigenbasis."""
        weights = self.fit_weights(visible)
        return visible, weights, self.content_targets(visible, weights), item_gram_eigen(visible)

    def hidden_scores(self, fold: tuple, history: sp.csr_matrix, content: ItemContent, kept: np.ndarray,
                      hidden: np.ndarray, block_weights: dict) -> np.ndarray:
        """Scores ``[b, n_hidden]`` of histories ``[b, n_items]`` on the fold's ``hidden`` items, whose
        columns are predicted from content weighted by ``block_weights``."""
        visible, weights, targets, eigen = fold
        return np.asarray(history @ self.predict_cold_columns(visible, weights, targets, content, kept, hidden,
                                                              block_weights, eigen))

    def fill_cold_columns(self, user_items: sp.spmatrix, content: ItemContent, warm: np.ndarray,
                          cold: np.ndarray, block_weights: dict) -> None:
        """Learn the content map (:meth:`fit_content_map`) and write the predicted columns of ``cold``
        items into ``weights_``."""
        self.fit_content_map(user_items, content, warm, block_weights)
        features = content.matrix(block_weights)
        self.weights_[:, cold], self.content_normalizers_ = self.mapped_columns(
            self.content_ridge_, self.content_direct_, features[cold], user_items, self.weights_, warm)

    def fit_content_map(self, user_items: sp.spmatrix, content: ItemContent, warm: np.ndarray,
                        block_weights: dict) -> None:
        """Learn :meth:`column_maps` on the ``warm`` items (kept as ``content_ridge_`` ``[F, n_items]``
        and ``content_direct_`` ``[n_items, F]``), so columns of items added later come from the same map."""
        features = content.matrix(block_weights)
        self.content_ridge_, self.content_direct_ = self.column_maps(
            user_items, self.content_targets(user_items, self.weights_), features, warm)
        self.content_normalizers_ = None
