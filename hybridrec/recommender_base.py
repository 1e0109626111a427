"""The contract every recommender in hybridrec obeys (the hybrid model and every baseline).

``fit(interactions, items=None, users=None) -> self``, ``recommend(user_ids, k, filter_seen,
candidates)``, ``similar_items(item_ids, k)``, ``save(path)`` / ``load(path)``. Subclasses only
implement the tensor parts: :meth:`_fit`, :meth:`score_users` and (optionally)
:meth:`item_similarity` and the state they save; id handling, filtering, top-k and persistence
live here once.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from data_builders.errors import HybridRecError
from hybridrec.atomic import atomic_path
from hybridrec.id_map import IdMap

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"


def interaction_matrix(interactions: pd.DataFrame, user_ids: IdMap, item_ids: IdMap,
                       weight_column: str | None = "weight") -> sp.csr_matrix:
    """Sparse ``[n_users, n_items]`` matrix of summed interaction weights (1.0 without weights)."""
    rows = user_ids.to_index(interactions["user_id"].to_numpy())
    cols = item_ids.to_index(interactions["item_id"].to_numpy())
    if weight_column is not None and weight_column in interactions.columns:
        values = interactions[weight_column].to_numpy(np.float32)
    else:
        values = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(user_ids), len(item_ids)), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def top_k_frame(scores: torch.Tensor, k: int, query_ids: np.ndarray, result_ids: IdMap,
                query_column: str, result_column: str) -> pd.DataFrame:
    """Long table of the ``k`` best columns of ``scores`` ``[n_queries, n_results]`` per row.

    Entries scored ``-inf`` (filtered) never appear, so a row may have fewer than ``k`` results.
    """
    k = min(k, scores.shape[1])
    values, columns = torch.topk(scores, k, dim=1)
    values, columns = values.numpy(), columns.numpy()
    keep = np.isfinite(values)
    query = np.repeat(np.asarray(query_ids, dtype=object if np.asarray(query_ids).dtype == object else None), k)
    return pd.DataFrame({
        query_column: query.reshape(-1, k)[keep],
        result_column: result_ids.to_ids(columns[keep]),
        "score": values[keep].astype(np.float32),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), (len(values), 1))[keep],
    })


class RecommenderBase:
    """Shared estimator logic; see the module docstring for the contract.

    Learned attributes (after ``fit``):
        user_ids_ (IdMap): every user in ``interactions`` or ``users``.
        item_ids_ (IdMap): every item in ``interactions`` or ``items`` (cold items included).
        user_items_ (scipy.sparse.csr_matrix): training interactions ``[n_users, n_items]``.
    """

    #: Users per scoring batch in ``recommend``; bounds memory at ``batch x n_items`` floats.
    recommend_batch_size = 1024

    # -- parameters (scikit-learn style) ---------------------------------------------------
    def get_params(self) -> dict:
        """Constructor arguments as given."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None,
            users: pd.DataFrame | None = None, **fit_options) -> "RecommenderBase":
        """Learn from ``interactions`` (user_id, item_id, optional weight); return ``self``.

        Items in ``items`` and users in ``users`` without interactions are kept as cold ones.
        """
        for column in ("user_id", "item_id"):
            if column not in interactions.columns:
                raise HybridRecError(f"interactions has no column {column!r}; found {list(interactions.columns)}")
        if len(interactions) == 0:
            raise HybridRecError("interactions is empty: nothing to fit")
        item_index = pd.Index(interactions["item_id"].unique())
        if items is not None:
            item_index = pd.Index(items["item_id"]).append(item_index.difference(pd.Index(items["item_id"]), sort=False))
        user_index = pd.Index(interactions["user_id"].unique())
        if users is not None:
            user_index = pd.Index(users["user_id"]).append(user_index.difference(pd.Index(users["user_id"]), sort=False))
        self.item_ids_ = IdMap(item_index, kind="item")
        self.user_ids_ = IdMap(user_index, kind="user")
        self.user_items_ = interaction_matrix(interactions, self.user_ids_, self.item_ids_)
        self._fit(interactions, items, users, **fit_options)
        return self

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None,
             users: pd.DataFrame | None, **fit_options) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise HybridRecError(f"{type(self).__name__} is not fitted yet: call fit() first")

    # -- scoring (tensor layer, internal indices) ------------------------------------------
    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        """Scores of every item for users ``user_index`` ``[b]`` -> ``[b, n_items]`` (float32)."""
        raise NotImplementedError

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """Similarity of items ``item_index`` ``[b]`` to every item -> ``[b, n_items]``."""
        raise NotImplementedError(f"{type(self).__name__} has no item-item similarity")

    # -- public API ------------------------------------------------------------------------
    def recommend(self, user_ids: Iterable, k: int = 10, filter_seen: bool = True,
                  candidates: Iterable | None = None) -> pd.DataFrame:
        """Top-``k`` items per user.

        Args:
            user_ids: external user ids (cold users from ``users`` allowed).
            k: list length per user.
            filter_seen: drop items the user interacted with in training.
            candidates: optional external item ids to rank among (e.g. cold items only).

        Returns:
            DataFrame with columns user_id, item_id, score, rank (1-based).
        """
        self._check_fitted()
        user_ids = np.asarray(list(user_ids) if not isinstance(user_ids, (np.ndarray, pd.Index, pd.Series)) else user_ids)
        user_index = self.user_ids_.to_index(user_ids)
        candidate_mask = None
        if candidates is not None:
            candidate_mask = torch.zeros(len(self.item_ids_), dtype=torch.bool)
            candidate_mask[torch.from_numpy(self.item_ids_.to_index(list(candidates)))] = True
        frames = []
        for start in range(0, len(user_index), self.recommend_batch_size):
            batch = user_index[start:start + self.recommend_batch_size]
            scores = self.score_users(batch).float().clone()
            if filter_seen:
                seen = self.user_items_[batch].tocoo()
                scores[torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(seen.col.astype(np.int64))] = -torch.inf
            if candidate_mask is not None:
                scores[:, ~candidate_mask] = -torch.inf
            frames.append(top_k_frame(scores, k, user_ids[start:start + self.recommend_batch_size],
                                      self.item_ids_, "user_id", "item_id"))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])

    def similar_items(self, item_ids: Iterable, k: int = 10) -> pd.DataFrame:
        """Top-``k`` most similar items per item (the item itself excluded).

        Returns:
            DataFrame with columns item_id, similar_item_id, score, rank.
        """
        self._check_fitted()
        item_ids = np.asarray(list(item_ids) if not isinstance(item_ids, (np.ndarray, pd.Index, pd.Series)) else item_ids)
        item_index = self.item_ids_.to_index(item_ids)
        frames = []
        for start in range(0, len(item_index), self.recommend_batch_size):
            batch = item_index[start:start + self.recommend_batch_size]
            scores = self.item_similarity(batch).float().clone()
            scores[torch.arange(len(batch)), torch.from_numpy(batch)] = -torch.inf
            frames.append(top_k_frame(scores, k, item_ids[start:start + self.recommend_batch_size],
                                      self.item_ids_, "item_id", "similar_item_id"))
        return pd.concat(frames, ignore_index=True)

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save (subclasses extend)."""
        return {}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`_state` saved."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to folder ``path`` atomically; return ``path``."""
        self._check_fitted()
        path = Path(path)
        user_items = self.user_items_.tocoo()
        state = {
            "user_items_row": torch.from_numpy(user_items.row.astype(np.int64)),
            "user_items_col": torch.from_numpy(user_items.col.astype(np.int64)),
            "user_items_value": torch.from_numpy(user_items.data.astype(np.float32)),
            **{f"model.{k}": v for k, v in self._state().items()},
        }
        with atomic_path(path) as tmp:
            tmp.mkdir()
            self.user_ids_.to_frame().to_parquet(tmp / "user_ids.parquet", index=False)
            self.item_ids_.to_frame().to_parquet(tmp / "item_ids.parquet", index=False)
            torch.save(state, tmp / STATE_FILE)
            config = {"class": type(self).__name__, "module": type(self).__module__, "params": self.get_params()}
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RecommenderBase":
        """Load a model saved with :meth:`save` (tensors via ``torch.load(weights_only=True)``)."""
        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise HybridRecError(f"{path}: not a saved hybridrec model (no {CONFIG_FILE})")
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        if config["class"] != cls.__name__ and cls is not RecommenderBase:
            raise HybridRecError(f"{path} holds a {config['class']}, not a {cls.__name__}")
        model_cls = cls
        if cls is RecommenderBase:
            import importlib
            model_cls = getattr(importlib.import_module(config["module"]), config["class"])
        model = model_cls(**config["params"])
        model.user_ids_ = IdMap.from_frame(pd.read_parquet(path / "user_ids.parquet"), kind="user")
        model.item_ids_ = IdMap.from_frame(pd.read_parquet(path / "item_ids.parquet"), kind="item")
        state = torch.load(path / STATE_FILE, weights_only=True)
        model.user_items_ = sp.csr_matrix(
            (state["user_items_value"].numpy(), (state["user_items_row"].numpy(), state["user_items_col"].numpy())),
            shape=(len(model.user_ids_), len(model.item_ids_)))
        model._load_state({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
        return model
