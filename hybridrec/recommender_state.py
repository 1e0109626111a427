"""What a fitted :class:`hybridrec.recommender.HybridRecommender` saves and loads: its tensors, the
CF head's state, the learned scalars (the sparse head's low-pass weight, the GNN's fused weight)
and the catalog state ``add_items`` needs.

A mixin; :meth:`~hybridrec.recommender_base.RecommenderBase.save` / ``load`` call ``_state`` /
``_load_state``.
"""

from __future__ import annotations

import torch

from hybridrec.models.cf_head import DenseEASEHead
from hybridrec.models.graph_filter import GraphFilterHead


class HybridState:
    """Persistence of :class:`~hybridrec.recommender.HybridRecommender` (see the module docstring)."""

    _STATE = ("item_popularity_", "item_weights_", "user_embeddings_", "item_embeddings_", "item_layers_",
              "item_degree_")

    def _state(self) -> dict[str, torch.Tensor]:
        state = {name: getattr(self, name) for name in self._STATE if getattr(self, name, None) is not None}
        if getattr(self, "cf_filter_", None) is not None:
            state.update(self.cf_filter_.state())
        state.update(self._catalog_state())
        if getattr(self, "gnn_weight_", None) is not None:
            state["gnn_weight"] = torch.tensor([self.gnn_weight_], dtype=torch.float64)
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the saved tensors after checking that the parameters call for exactly these,
        sized for the id tables, ``dim``, ``num_layers`` and the CF head ``cf_head`` resolves to
        (the ``catalog_*`` tensors add_items needs are checked by :meth:`_load_catalog_state`)."""
        state = self._load_catalog_state(state)
        expected: dict[str, tuple] = {"item_popularity_": ("items",)}
        head = self.resolved_cf_head() if self.use_cf else None
        if head == DenseEASEHead.name:
            expected["item_weights_"] = ("items", "items")
        elif head == GraphFilterHead.name:
            expected.update(filter_indptr=(None,), filter_indices=(None,), filter_values=(None,),
                            filter_left=("items", None), filter_right=(None, "items"), filter_singular_values=(None,),
                            filter_item_degree=("items",))
            for name in ("filter_alpha", "filter_sharpen", "filter_tilt"):  # saved since chosen on validation
                if name in state:
                    expected[name] = (1,)
        if "gnn_weight" in state:  # saved since the GNN's weight is chosen on validation
            expected["gnn_weight"] = (1,)
        if self.use_gnn:
            expected.update(user_embeddings_=("users", self.dim), item_embeddings_=("items", self.dim),
                            item_layers_=(self.num_layers + 1, "items", self.dim), item_degree_=("items",))
        self._check_state(state, expected, integer=("filter_indptr", "filter_indices"))
        for name in self._STATE:
            setattr(self, name, state.get(name))
        self.gnn_weight_ = float(state["gnn_weight"][0]) if "gnn_weight" in state else float(self.gnn_weight)
        self.cf_filter_ = None
        if head == GraphFilterHead.name:
            self.cf_filter_ = self.sparse_head().load_state(state, len(self.item_ids_))
            self.filter_rank_, self.filter_alpha_ = self.cf_filter_.rank, self.cf_filter_.alpha
            self.filter_sharpen_, self.filter_tilt_ = self.cf_filter_.sharpen, self.cf_filter_.tilt
