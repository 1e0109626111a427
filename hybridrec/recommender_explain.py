"""Why an item is recommended: ``model.explain(user_id, item_ids, k=5)``.

A mixin of :class:`hybridrec.recommender.HybridRecommender`. The fused score of a user ``u`` with
history ``r`` ``[n_items]`` (binary) for item ``i`` is made of two terms (:meth:`HybridExplain.fused_parts`,
the one definition the estimator's scores use):

* the **CF term**: the raw CF score ``s_ui`` z-scored over the user's row of every item
  (``popularity_weight`` x z-scored log-popularity for a user without history);
* the **GNN term**: ``w_i`` x the z-scored GNN score (``w_i`` = ``gnn_weight_``, the weight
  chosen at fit, or ``cold_gnn_weight`` for an item without training interactions).

The raw CF score splits exactly over the history: for the dense EASE head ``s_ui = Σ_h B[h, i]``;
for the sparse head ``s_ui = Σ_h (P̃[h, i] + L[h]·Q[:, i])``. Each history item's share is listed,
so the contributions (the ``k`` largest by magnitude, plus the rest summed in one row) add up to the
raw CF score; the z-scored CF term is a monotone affine map of it, per user.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from hybridrec.errors import HybridRecError
from hybridrec.recommender_base import _as_array
from hybridrec.recommender_similarity import zscore_rows

#: Columns of :meth:`HybridExplain.explain`'s table.
EXPLAIN_COLUMNS = ("user_id", "item_id", "reason", "source", "value", "rank")


class HybridExplain:
    """Explanations of :class:`~hybridrec.recommender.HybridRecommender` (see the module docstring)."""

    def fused_parts(self, history: torch.Tensor, user_embeddings: torch.Tensor | None
                    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(raw CF scores or None, CF term, GNN term)``, each ``[b, n_items]``, of histories
        ``history`` ``[b, n_items]`` and GNN user embeddings ``[b, dim]``; the fused score is
        ``CF term + GNN term`` (either term is zeros when its part is not fitted)."""
        zeros = torch.zeros(len(history), len(self.item_ids_))
        raw, cf_term, gnn_term = None, zeros, zeros
        if self.item_weights_ is not None or getattr(self, "cf_filter_", None) is not None:
            raw = history @ self.item_weights_ if self.item_weights_ is not None else self.cf_filter_.score(history)
            has_history = history.sum(dim=1, keepdim=True) > 0
            popularity = zscore_rows(self.item_popularity_.expand(len(history), -1))
            cf_term = torch.where(has_history, zscore_rows(raw), self.popularity_weight * popularity)
        if self.item_embeddings_ is not None:
            warm_weight = getattr(self, "gnn_weight_", self.gnn_weight)
            cold_weight = self.cold_gnn_weight if raw is not None else warm_weight
            weight = torch.where(self.item_popularity_ > 0, warm_weight, cold_weight)
            gnn_term = weight * zscore_rows(user_embeddings @ self.item_embeddings_.T)
        return raw, cf_term, gnn_term

    def history_contributions(self, history_index: np.ndarray, item_index: np.ndarray) -> torch.Tensor:
        """``[n_history, n_items_asked]``: history item ``h``'s share of the raw CF score of each
        item (dense: ``B[h, i]``; sparse: :meth:`GraphFilterHead.contributions`); columns sum to the raw score."""
        if self.item_weights_ is not None:
            return self.item_weights_[torch.from_numpy(history_index)][:, torch.from_numpy(item_index)]
        return torch.from_numpy(self.cf_filter_.contributions(history_index, item_index))

    def explain(self, user_id, item_ids: Iterable, k: int = 5) -> pd.DataFrame:
        """The reasons for items ``item_ids`` of one known user, as a long table.

        Rows per item, ``value`` by ``reason``:

        * ``fused_score``: the user's fused score of the item (what ``recommend`` ranks by);
        * ``cf_term`` / ``gnn_term``: its two terms, ``cf_term + gnn_term = fused_score``;
        * ``cf_raw``: the raw CF score (before the per-user z-score);
        * ``history`` (``source``: a history item id, ``rank`` 1..k): that item's contribution to
          ``cf_raw``, the ``k`` largest by magnitude; ``history_rest``: the others summed, so the
          ``history`` rows plus ``history_rest`` equal ``cf_raw``;
        * ``attribute`` (``source``: ``column=value``): an attribute the item shares with the
          user's history, ``value`` = how many history items have it (the ``k`` most shared).

        Raises:
            HybridRecError: model not fitted, unknown user or item ids (named), ``k < 1``.
        """
        self._check_fitted()
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise HybridRecError(f"k must be an integer >= 1, got {k!r}")
        user_ids = _as_array(user_id if isinstance(user_id, (list, tuple, np.ndarray, pd.Series, pd.Index)) else [user_id])
        user_index = self.user_ids_.to_index(user_ids)
        if len(user_index) != 1:
            raise HybridRecError(f"explain takes one user id, got {len(user_index)}")
        item_ids = _as_array(item_ids)
        item_index = self.item_ids_.to_index(item_ids)
        history = torch.from_numpy(self._binary_rows(user_index))
        users = None if self.user_embeddings_ is None else self.user_embeddings_[torch.from_numpy(user_index)]
        raw, cf_term, gnn_term = self.fused_parts(history, users)
        history_index = np.flatnonzero(history[0].numpy() > 0)
        contributions = (self.history_contributions(history_index, item_index)
                         if raw is not None and len(history_index) else None)
        shared = self._shared_attributes(history_index, item_index)
        uid = user_ids[0]
        rows = []
        for column, (iid, item) in enumerate(zip(item_ids, item_index)):
            def add(reason, value, source="", rank=0):
                rows.append((uid, iid, reason, source, float(value), rank))
            add("fused_score", cf_term[0, item] + gnn_term[0, item])
            add("cf_term", cf_term[0, item])
            add("gnn_term", gnn_term[0, item])
            if raw is not None:
                add("cf_raw", raw[0, item])
            if contributions is not None:
                shares = contributions[:, column].double()
                order = torch.argsort(shares.abs(), descending=True, stable=True)[:k].numpy()
                for rank, position in enumerate(order, start=1):
                    add("history", shares[position], self.item_ids_.ids[history_index[position]], rank)
                add("history_rest", shares.sum() - shares[torch.from_numpy(order)].sum())
            for rank, (label, count) in enumerate(shared[column][:k], start=1):
                add("attribute", count, label, rank)
        return pd.DataFrame(rows, columns=list(EXPLAIN_COLUMNS))

    def _shared_attributes(self, history_index: np.ndarray, item_index: np.ndarray) -> list[list[tuple[str, int]]]:
        """Per asked item, ``(column=value, history items with it)`` for its attributes that the
        history shares, most shared first (empty without the attribute table kept at fit)."""
        table = getattr(self, "item_attributes_", None)
        catalog = getattr(self, "catalog_", None)
        if table is None or catalog is None or not len(history_index):
            return [[] for _ in item_index]
        labels = [f"{entry['column']}={value}" for entry in catalog["vocabulary"] for value in entry["values"]]
        counts = np.asarray(table[history_index].sum(axis=0)).ravel()
        out = []
        for item in item_index:
            own = table[item].indices
            found = sorted(((labels[a], int(counts[a])) for a in own if counts[a] > 0), key=lambda pair: -pair[1])
            out.append(found)
        return out


def explanation_columns(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (user_id, item_id) of an :meth:`HybridExplain.explain` table: ``cf_term``,
    ``gnn_term``, ``cf_raw`` (floats) and ``history`` / ``attributes`` as text, e.g.
    ``"50:0.0412; 181:0.0307"`` (history item: its share of ``cf_raw``) and ``"genres=Drama:12"``."""
    keys = ["user_id", "item_id"]
    terms = table.loc[table["reason"].isin(["cf_term", "gnn_term", "cf_raw"])].pivot_table(
        index=keys, columns="reason", values="value", aggfunc="first")

    def joined(reason: str, number: str) -> pd.Series:
        rows = table.loc[table["reason"] == reason]
        text = pd.Series([f"{source}:{value:{number}}" for source, value in zip(rows["source"], rows["value"])],
                         index=rows.index, dtype=object)
        return text.groupby([rows["user_id"], rows["item_id"]], sort=False).agg("; ".join)

    out = terms.join(joined("history", ".4g").rename("history")).join(joined("attribute", ".0f").rename("attributes"))
    out[["history", "attributes"]] = out[["history", "attributes"]].fillna("")
    return out.reset_index()
