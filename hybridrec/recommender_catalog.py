"""New items without refitting: ``model.add_items(items)`` and ``model.remove_items(ids)``.

A mixin of :class:`hybridrec.recommender.HybridRecommender`. An item added after ``fit`` is served
exactly as an item that was cold at fit time (in the catalog, without interactions):

* its content is encoded by :func:`~hybridrec.item_content.encode_item_content` (feature cache
  reused), its photo placed by the fit's own text–image alignment when the fit aligned the image
  block (:func:`~hybridrec.item_content.apply_image_alignment`), and its attribute values are
  mapped onto the fit's attribute vocabulary (numeric values into the fit's quantile buckets;
  values the fit never saw have no node and are skipped, logged);
* its CF column comes from the content map learned at fit on the warm items (the dense head's ridge
  and reconstruction maps, the sparse head's ridge map onto low-pass coordinates), scaled with the
  fit's normalisers (those of the fit's cold items, or of the first added batch when the fit had none);
* its GNN embedding comes from the content path alone: the trained modality projections give its
  layer 0, and it is propagated over its attribute edges from the attribute nodes' stored layer
  embeddings, whose degrees grow by its edges (for the default two layers that is exactly what
  inference over the graph with the item in it gives the item; the other nodes' stored embeddings
  are not recomputed, and change by only the new edges' share of an attribute's degree);
* it joins the search index (:meth:`~hybridrec.features.query_search.QuerySearchIndex.add_items`).

What this needs is kept at fit (``_keep_*``, ``image_alignment_``) and saved: tensors ``catalog_*``
in ``state.pt`` and ``catalog.json`` (fit options, block weights, normalisers, vocabulary, the
image alignment's settings). A model saved before this format loads and scores as before;
``add_items`` then names what it lacks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from hybridrec.errors import HybridRecError
from hybridrec.graph import GraphConfig, RecGraph, _attribute_values
from hybridrec.id_map import IdMap
from hybridrec.item_content import ImageAlignment, apply_image_alignment, encode_item_content
from hybridrec.models.hybrid_gnn import ModalityFusion
from hybridrec.recommender_base import _as_array
from hybridrec.tables import ColumnRoles

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.json"
CATALOG_FORMAT = 1
#: Prefix of the image alignment's tensors in the saved state, and its key in ``catalog.json``.
ALIGNMENT_PREFIX, ALIGNMENT_KEY = "catalog_image_alignment.", "image_alignment"
_INTERVAL = re.compile(r"^[\(\[]\s*([^,]+),\s*([^\]\)]+)[\]\)]$")


def bucket_of(values: np.ndarray, labels: list[str]) -> np.ndarray:
    """Index into ``labels`` (the fit's ``pd.qcut`` interval labels, e.g. ``"(1990.0, 1995.0]"``) of
    each numeric value ``[n]``; values outside every bucket go to the nearest end one, NaN to -1."""
    edges = np.array([[float(part) for part in _INTERVAL.match(label).groups()] for label in labels])
    order = np.argsort(edges[:, 0])
    rights = edges[order, 1]
    position = np.minimum(np.searchsorted(rights, values, side="left"), len(rights) - 1)
    return np.where(np.isnan(values), -1, order[position])


class HybridCatalog:
    """Catalog updates of :class:`~hybridrec.recommender.HybridRecommender` (see the module docstring)."""

    # -- kept at fit ------------------------------------------------------------------------------
    def _keep_vocabulary(self, graph: RecGraph) -> None:
        """The fit options and the item attribute vocabulary (node order of ``graph``)."""
        options = self._fit_options
        roles = options["item_roles"]
        kinds = {**{c: "categorical" for c in roles.categorical}, **{c: "multi" for c in roles.multi},
                 **{c: "numeric" for c in roles.numeric}}
        offsets, _ = graph.attribute_offsets()
        start = graph.num_users + graph.num_items
        vocabulary = [{"node_type": node_type, "column": column, "kind": kinds[column],
                       "offset": offsets[node_type] - start,
                       "values": [str(v) for v in graph.id_maps[node_type].ids]}
                      for node_type, (owner, column) in graph.attribute_sources.items() if owner == "item"]
        self.catalog_ = {"format": CATALOG_FORMAT, "text_cols": list(options["text_cols"]),
                         "image_col": options["image_col"], "vocabulary": vocabulary,
                         "n_fit_items": graph.num_items, "normalizers": None}
        self.hidden_items_ = np.zeros(0, dtype=np.int64)
        self.content_map_ = self.gnn_content_path_ = None
        parts = []
        for node_type, (owner, _) in graph.attribute_sources.items():
            if owner == "item":
                src, dst = graph.data["item", "has", node_type].edge_index.numpy()
                parts.append(sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)),
                                           shape=(graph.num_items, len(graph.id_maps[node_type]))))
        self.item_attributes_ = (sp.hstack(parts).tocsr() if parts else
                                 sp.csr_matrix((graph.num_items, 0), dtype=np.float32))

    def _keep_content_map(self, head) -> None:
        """The CF head's content -> column map (called by ``_fit_cf`` after it is learned)."""
        if hasattr(head, "content_ridge_"):
            self.content_map_ = {"catalog_content_ridge": torch.from_numpy(head.content_ridge_),
                                 "catalog_content_direct": torch.from_numpy(head.content_direct_)}
            normalizers = head.content_normalizers_
        else:
            self.content_map_ = {"catalog_content_mapping": torch.from_numpy(head.content_mapping_)}
            normalizers = None if head.content_scale_ is None else [head.content_scale_]
        self.catalog_["normalizers"] = None if normalizers is None else [float(v) for v in normalizers]
        self.catalog_["block_weights"] = {k: float(v) for k, v in self.cold_block_weights_.items()}
        self.catalog_["content_dims"] = dict(self.content_dims_)

    def _keep_content_path(self, model, embeddings, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> None:
        """The GNN's content path (modality projections) and the attribute nodes' layers and
        weighted degrees ``[n_attributes]`` in the inference graph (called by ``_fit_gnn``)."""
        start = model.num_users + model.num_items
        degree = torch.zeros(start + model.num_attributes).scatter_add_(0, edge_index[0], edge_weight)
        self.gnn_content_path_ = {"catalog_attribute_layers": embeddings.attribute_layers,
                                  "catalog_attribute_degree": degree[start:].contiguous()}
        if model.fusion is not None:
            self.gnn_content_path_.update({f"catalog_fusion.{k}": v.detach().cpu().clone()
                                           for k, v in model.fusion.state_dict().items()})

    # -- persistence ------------------------------------------------------------------------------
    def _catalog_state(self) -> dict[str, torch.Tensor]:
        """The ``catalog_*`` tensors to save (``_state`` adds them)."""
        state = {**(getattr(self, "content_map_", None) or {}), **(getattr(self, "gnn_content_path_", None) or {})}
        if getattr(self, "image_alignment_", None) is not None:
            state.update({ALIGNMENT_PREFIX + k: v for k, v in self.image_alignment_.tensors().items()})
        hidden = getattr(self, "hidden_items_", None)
        table = getattr(self, "item_attributes_", None)
        if table is not None:
            state["catalog_item_attributes_indptr"] = torch.from_numpy(table.indptr.astype(np.int64))
            state["catalog_item_attributes_indices"] = torch.from_numpy(table.indices.astype(np.int64))
            state["catalog_item_attributes_width"] = torch.tensor([table.shape[1]], dtype=torch.int64)
        if hidden is not None and len(hidden):
            state["catalog_hidden_items"] = torch.from_numpy(np.asarray(hidden, dtype=np.int64))
        return state

    def _load_catalog_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Take the ``catalog_*`` tensors out of ``state`` (kept for :meth:`add_items`); return the rest."""
        catalog = {k: v for k, v in state.items() if k.startswith("catalog_")}
        # Joined with its settings from catalog.json by load(); absent from models saved before it was kept.
        self._saved_alignment = {k[len(ALIGNMENT_PREFIX):]: catalog.pop(k) for k in list(catalog)
                                 if k.startswith(ALIGNMENT_PREFIX)}
        hidden = catalog.pop("catalog_hidden_items", None)
        if hidden is not None and (hidden.dtype != torch.int64 or hidden.ndim != 1 or
                                   (len(hidden) and (int(hidden.min()) < 0 or int(hidden.max()) >= len(self.item_ids_)))):
            raise HybridRecError("state key 'model.catalog_hidden_items' is not a list of item indices")
        self.hidden_items_ = np.zeros(0, np.int64) if hidden is None else hidden.numpy()
        self.item_attributes_ = None
        if "catalog_item_attributes_indptr" in catalog:
            indptr = catalog.pop("catalog_item_attributes_indptr").numpy()
            indices = catalog.pop("catalog_item_attributes_indices").numpy()
            width = int(catalog.pop("catalog_item_attributes_width")[0])
            if len(indptr) != len(self.item_ids_) + 1 or (len(indices) and (indices.min() < 0 or indices.max() >= width)):
                raise HybridRecError("state keys 'model.catalog_item_attributes_*' do not fit the item table")
            self.item_attributes_ = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                                                  shape=(len(self.item_ids_), width))
        self.content_map_ = {k: v for k, v in catalog.items() if k.startswith("catalog_content_")} or None
        self.gnn_content_path_ = {k: v for k, v in catalog.items() if not k.startswith("catalog_content_")} or None
        return {k: v for k, v in state.items() if not k.startswith("catalog_")}

    def save(self, path, *, overwrite: bool = True, extra_files=None):
        """Save the model (see ``RecommenderBase.save``) with ``catalog.json`` (what add_items needs)."""
        extra = dict(extra_files or {})
        if getattr(self, "catalog_", None) is not None:
            alignment = getattr(self, "image_alignment_", None)
            extra[CATALOG_FILE] = json.dumps({**self.catalog_, **({} if alignment is None else
                                                                  {ALIGNMENT_KEY: alignment.settings()})}, indent=2)
        return super().save(path, overwrite=overwrite, extra_files=extra)

    @classmethod
    def load(cls, path):
        """Load a saved model and, when it has one, its ``catalog.json``."""
        model = super().load(path)
        file = Path(path) / CATALOG_FILE
        model.catalog_ = model.image_alignment_ = None
        tensors = model.__dict__.pop("_saved_alignment", {})
        if file.is_file():
            try:
                model.catalog_ = json.loads(file.read_text(encoding="utf-8"))
            except ValueError as err:
                raise HybridRecError(f"{file}: not valid JSON ({err})") from None
            if model.catalog_.get("format") != CATALOG_FORMAT:
                raise HybridRecError(f"{file}: catalog format {model.catalog_.get('format')!r}, expected "
                                     f"{CATALOG_FORMAT}: save the model again with this version")
            try:  # settings in catalog.json, arrays in state.pt (model.catalog_image_alignment.*)
                model.image_alignment_ = ImageAlignment.from_saved(tensors, model.catalog_.pop(ALIGNMENT_KEY, None))
            except HybridRecError as err:
                raise HybridRecError(f"{file}: {err}") from None
        return model

    # -- hiding -----------------------------------------------------------------------------------
    def remove_items(self, item_ids: Iterable) -> "HybridCatalog":
        """Hide items: they are never returned by ``recommend``, ``recommend_for_history``,
        ``similar_items`` or ``search`` again (saved with the model), but stay in the id table and
        still count as history. ``add_items(..., update=True)`` shows a hidden item again.

        Raises:
            HybridRecError: an id the model does not know (named).
        """
        self._check_fitted()
        index = self.item_ids_.to_index(_as_array(item_ids))
        self.hidden_items_ = np.union1d(getattr(self, "hidden_items_", np.zeros(0, np.int64)), index).astype(np.int64)
        logger.info("%d item(s) hidden (%d in all)", len(index), len(self.hidden_items_))
        return self

    def item_mask(self, candidates=None, exclude=None):
        """``RecommenderBase.item_mask`` less the items hidden by :meth:`remove_items`."""
        mask = super().item_mask(candidates, exclude)
        hidden = getattr(self, "hidden_items_", None)
        if hidden is None or not len(hidden):
            return mask
        if mask is None:
            mask = torch.ones(len(self.item_ids_), dtype=torch.bool)
        mask[torch.from_numpy(hidden)] = False
        return mask

    def search(self, query: str, k: int = 20, user_id=None) -> pd.DataFrame:
        """``HybridSearch.search`` without the items hidden by :meth:`remove_items`."""
        hidden = getattr(self, "hidden_items_", None)
        if hidden is None or not len(hidden) or getattr(self, "search_index_", None) is None:
            return super().search(query, k, user_id)
        wanted = min(int(k) + len(hidden), len(self.search_index_)) if isinstance(k, int) else k
        found = super().search(query, wanted, user_id)
        found = found.loc[~found["item_id"].isin(self.item_ids_.to_ids(hidden))].head(k).reset_index(drop=True)
        return found.assign(rank=np.arange(1, len(found) + 1, dtype=np.int64))

    # -- adding -----------------------------------------------------------------------------------
    def add_items(self, items: pd.DataFrame, *, update: bool = False) -> "HybridCatalog":
        """Make catalog items that arrived after ``fit`` recommendable, similar-item and searchable
        at once, without refitting (see the module docstring for how each part is derived).

        Args:
            items: ``[n_new rows]`` table with ``item_id`` and the text, image and attribute
                columns ``fit`` used (their names are in ``catalog_``).
            update: ids the model already knows are replaced instead of refused. For an item
                without training interactions (cold at fit, or added before) everything about it
                comes from content, so its CF column, GNN embedding and search-index row are all
                recomputed from the new content. For a warm item only its search-index row is:
                its CF column and GNN embedding were learned from interactions, and a content
                change cannot move them without a refit. A hidden item is shown again.

        Returns:
            self.

        Raises:
            HybridRecError: known ids without ``update`` (named), a missing column, or a model saved
                without what this needs (said what is missing and why).
        """
        self._check_fitted()
        self._check_catalog_ready()
        if "item_id" not in items.columns:
            raise HybridRecError(f"items has no column 'item_id'; found {list(items.columns)}")
        catalog = self.catalog_
        needed = [*catalog["text_cols"], *([catalog["image_col"]] if catalog["image_col"] else []),
                  *dict.fromkeys(entry["column"] for entry in catalog["vocabulary"])]
        missing = [column for column in needed if column not in items.columns]
        if missing:
            raise HybridRecError(f"items has no column(s) {missing}, which the model was fitted with")
        if items["item_id"].duplicated().any():
            raise HybridRecError(f"items repeats item id(s) {sorted(items.loc[items['item_id'].duplicated(), 'item_id'].unique().tolist())[:10]}")
        known = self.item_ids_.to_index(items["item_id"].to_numpy(), allow_missing=True)
        if (known >= 0).any() and not update:
            shown = items["item_id"].to_numpy()[known >= 0]
            raise HybridRecError(f"add_items: {len(shown)} item id(s) already known to the model: "
                                 f"{shown[:20].tolist()}{' ...' if len(shown) > 20 else ''} (pass update=True to "
                                 "replace their content-derived parts)")
        new_ids = items["item_id"].to_numpy()[known < 0]
        n_before = len(self.item_ids_)
        self.item_ids_ = self.item_ids_.extend(new_ids) if len(new_ids) else self.item_ids_
        self._grow(len(new_ids))
        index = self.item_ids_.to_index(items["item_id"].to_numpy())
        warm = self.item_popularity_[torch.from_numpy(index)].numpy() > 0
        if warm.any():
            logger.info("add_items(update=True): %d warm item(s) keep their CF column and GNN embedding (learned "
                        "from interactions); only their search-index rows change", int(warm.sum()))
        content, incidence = self._new_item_content(items, index)
        self._write_item_attributes(index, incidence)
        content_rows = np.flatnonzero(~warm)
        if len(content_rows):
            self._write_cf_columns(index[content_rows], content, content_rows)
            self._write_gnn_embeddings(index[content_rows], content, content_rows, incidence,
                                       grow=index[content_rows] >= n_before)
        if getattr(self, "search_index_", None) is not None:
            self.search_index_.add_items(items, item_ids=self.item_ids_,
                                         cache_dir=self._cache_dir(), image_encoder=self.image_encoder,
                                         device=self.device, progress=self.progress)
        if getattr(self, "hidden_items_", None) is not None and len(self.hidden_items_):
            self.hidden_items_ = np.setdiff1d(self.hidden_items_, index).astype(np.int64)
        logger.info("add_items: %d new and %d updated item(s); %d items in all", len(new_ids),
                    len(index) - len(new_ids), len(self.item_ids_))
        return self

    def _cache_dir(self):
        from hybridrec.item_content import default_feature_cache

        return self.feature_cache_dir or default_feature_cache()

    def _check_catalog_ready(self) -> None:
        """Refuse, saying what is missing and why, a model that cannot add items."""
        catalog = getattr(self, "catalog_", None)
        if catalog is None:
            raise HybridRecError("this model was saved without catalog.json (the fit's content columns, block "
                                 "weights and attribute vocabulary): it was saved by an earlier hybridrec; refit "
                                 "it to add items")
        if self.use_cf and getattr(self, "content_map_", None) is None and catalog.get("block_weights") is not None:
            raise HybridRecError("this model has no content map (state keys model.catalog_content_*): it was "
                                 "saved by an earlier hybridrec; refit it to add items")
        if self.use_cf and catalog.get("block_weights") is None:
            raise HybridRecError("this model was fitted without item content (no text, image or attribute columns):"
                                 " an added item would have no CF column; refit with item content to add items")
        if self.use_gnn and getattr(self, "gnn_content_path_", None) is None:
            raise HybridRecError("this model has no GNN content path (state keys model.catalog_attribute_* and "
                                 "catalog_fusion.*): it was saved by an earlier hybridrec; refit it to add items")
        blocks = [*catalog.get("content_dims", {}), *(getattr(self, "gnn_content_path_", None) or {})]
        if getattr(self, "image_alignment_", None) is None and any("image:aligned" in name for name in blocks):
            raise HybridRecError("this model's image block is CCA-aligned with its text, but the alignment was not "
                                 f"saved (state keys model.{ALIGNMENT_PREFIX}*): it was saved by an earlier "
                                 "hybridrec, so an added item's photo cannot be placed; refit it to add items")

    def _grow(self, n_new: int) -> None:
        """Append ``n_new`` cold items (no interactions, zero columns) to every per-item table."""
        if not n_new:
            return
        n_users = self.user_items_.shape[0]
        self.user_items_ = sp.hstack([self.user_items_, sp.csr_matrix((n_users, n_new), dtype=np.float32)]).tocsr()
        self.item_popularity_ = torch.cat([self.item_popularity_, torch.zeros(n_new)])
        if getattr(self, "item_weights_", None) is not None:
            n = self.item_weights_.shape[0]
            grown = torch.zeros(n + n_new, n + n_new)
            grown[:n, :n] = self.item_weights_
            self.item_weights_ = grown
        head = getattr(self, "cf_filter_", None)
        if head is not None:
            head.cooccurrence_ = sp.csr_matrix(sp.block_diag([head.cooccurrence_,
                                                              sp.csr_matrix((n_new, n_new), dtype=np.float32)]))
            head.left_ = np.vstack([head.left_, np.zeros((n_new, head.left_.shape[1]), np.float32)])
            head.right_ = np.hstack([head.right_, np.zeros((head.right_.shape[0], n_new), np.float32)])
            head.item_degree_ = np.concatenate([head.item_degree_, np.zeros(n_new)])
            head.clear_caches()
        if getattr(self, "item_embeddings_", None) is not None:
            dim = self.item_embeddings_.shape[1]
            self.item_embeddings_ = torch.cat([self.item_embeddings_, torch.zeros(n_new, dim)])
            self.item_layers_ = torch.cat([self.item_layers_, torch.zeros(self.item_layers_.shape[0], n_new, dim)], 1)
            self.item_degree_ = torch.cat([self.item_degree_, torch.zeros(n_new)])

    def _new_item_content(self, items: pd.DataFrame, index: np.ndarray) -> tuple[dict, sp.csr_matrix]:
        """Content blocks ``name -> [n_rows, d]`` and presence of ``items`` (in the fit's block
        order, attribute flags included), and their attribute incidence ``[n_rows, n_attributes]``
        (attribute-node order of the fit's graph, weights 1)."""
        catalog = self.catalog_
        row_ids = IdMap(items["item_id"].to_numpy(), kind="item")
        content = encode_item_content(items, row_ids, text_cols=catalog["text_cols"], image_col=catalog["image_col"],
                                      cache_dir=self.feature_cache_dir, text_encoder=self.text_encoder,
                                      image_encoder=self.image_encoder, device=self.device, progress=self.progress)
        if getattr(self, "image_alignment_", None) is not None:
            apply_image_alignment(content, self.image_alignment_)  # "image" -> "image:aligned", as at fit
        n_attributes = sum(len(entry["values"]) for entry in catalog["vocabulary"])
        if getattr(self, "gnn_content_path_", None) is not None:
            n_attributes = self.gnn_content_path_["catalog_attribute_layers"].shape[1]
        rows, cols = [], []
        for entry in catalog["vocabulary"]:
            values = pd.Index(entry["values"])
            if entry["kind"] == "numeric":
                numbers = pd.to_numeric(items[entry["column"]], errors="coerce").to_numpy(np.float64)
                position = bucket_of(numbers, entry["values"])
                found = pd.DataFrame({"row": np.arange(len(items)), "position": position})
            else:
                roles = ColumnRoles(**{entry["kind"]: [entry["column"]]})
                _, long_table = _attribute_values(items.reset_index(drop=True), roles, GraphConfig())[entry["column"]]
                found = long_table.assign(position=values.get_indexer(long_table["value"]))
                unseen = sorted(set(long_table["value"][found["position"] < 0]))
                if unseen:
                    logger.warning("add_items: %s value(s) %s were not in the fitted vocabulary: no attribute node, "
                                   "skipped", entry["column"], unseen[:10])
            found = found.loc[found["position"] >= 0]
            rows.append(found["row"].to_numpy())
            cols.append(found["position"].to_numpy() + entry["offset"])
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        incidence = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(items), n_attributes))
        incidence.sum_duplicates()
        incidence.data[:] = 1.0
        if "attributes" in catalog.get("content_dims", {}):
            flags = np.zeros((len(items), sum(len(entry["values"]) for entry in catalog["vocabulary"])), np.float32)
            starts = np.cumsum([0] + [len(entry["values"]) for entry in catalog["vocabulary"]])
            for entry, start in zip(catalog["vocabulary"], starts):
                block = incidence[:, entry["offset"]: entry["offset"] + len(entry["values"])].toarray()
                flags[:, start: start + len(entry["values"])] = block
            # The content vector's attribute values (all, or the most frequent at fit: content_attribute_columns).
            kept = catalog.get("attribute_columns")
            flags = flags if kept is None else flags[:, np.asarray(kept, dtype=np.int64)]
            content.blocks = {"attributes": flags, **content.blocks}
            content.present = {"attributes": flags.sum(1) > 0, **content.present}
        expected = catalog.get("content_dims")
        if expected is not None and content.dims != expected:
            raise HybridRecError(f"the added items' content blocks {content.dims} differ from the fit's {expected}")
        return content, incidence

    def _write_item_attributes(self, index: np.ndarray, incidence: sp.csr_matrix) -> None:
        """Rows ``index`` of ``item_attributes_`` (flag order) from the attribute incidence (node order)."""
        table = getattr(self, "item_attributes_", None)
        if table is None:
            return
        columns = np.concatenate([entry["offset"] + np.arange(len(entry["values"]))
                                  for entry in self.catalog_["vocabulary"]]) if self.catalog_["vocabulary"] else []
        rows = sp.lil_matrix((len(self.item_ids_), table.shape[1]), dtype=np.float32)
        rows[:table.shape[0]] = table
        rows[index] = incidence[:, columns] if len(columns) else 0
        self.item_attributes_ = rows.tocsr()

    def _write_cf_columns(self, index: np.ndarray, content, rows: np.ndarray) -> None:
        """CF columns of items ``index`` from content rows ``rows`` through the fit's content map."""
        if not self.use_cf:
            return
        catalog = self.catalog_
        features = content.matrix(catalog["block_weights"])[rows]
        n_fit = catalog["n_fit_items"]
        binary = self.user_items_[:, :n_fit].copy()
        binary.data[:] = 1.0
        warm = np.flatnonzero(self.item_popularity_[:n_fit].numpy() > 0)
        normalizers = catalog["normalizers"]
        if getattr(self, "item_weights_", None) is not None:
            from hybridrec.models.cf_head import DenseEASEHead

            columns, used = DenseEASEHead.mapped_columns(
                self.content_map_["catalog_content_ridge"].numpy(), self.content_map_["catalog_content_direct"].numpy(),
                features, binary, self.item_weights_[:n_fit, :n_fit].numpy(), warm,
                None if normalizers is None else tuple(normalizers))
            self.item_weights_ = self.item_weights_.clone()
            self.item_weights_[:, torch.from_numpy(index)] = 0.0
            self.item_weights_[:n_fit, torch.from_numpy(index)] = torch.from_numpy(columns)
        else:
            head = self.cf_filter_
            columns, scale = head.mapped_columns(self.content_map_["catalog_content_mapping"].numpy(), features,
                                                 self.user_items_, warm, None if normalizers is None else normalizers[0])
            used = (scale,)
            head.right_[:, index] = columns
            head.clear_caches()
        if normalizers is None:
            catalog["normalizers"] = [float(v) for v in used]

    def _write_gnn_embeddings(self, index: np.ndarray, content, rows: np.ndarray, incidence: sp.csr_matrix,
                              grow: np.ndarray) -> None:
        """GNN embeddings of items ``index`` from their content and attribute edges (see the module
        docstring); the attribute nodes' layers and degrees take in the edges of new items (``grow``)."""
        if not self.use_gnn:
            return
        path = self.gnn_content_path_
        layers, degree = path["catalog_attribute_layers"], path["catalog_attribute_degree"]
        weight = float(self.attribute_edge_weight)
        edges = sp.csr_matrix(incidence[rows]) * weight                                     # [m, n_attr]
        fusion_state = {k[len("catalog_fusion."):]: v for k, v in path.items() if k.startswith("catalog_fusion.")}
        dim = layers.shape[2]
        x = torch.zeros(len(rows), dim)
        if fusion_state:
            names = [name for name in content.blocks if name != "attributes"]
            fusion = ModalityFusion({name: content.blocks[name].shape[1] for name in names}, dim)
            fusion.load_state_dict(fusion_state)
            with torch.no_grad():
                x = fusion({n: torch.from_numpy(content.blocks[n][rows]) for n in names},
                           {n: torch.from_numpy(content.present[n][rows]) for n in names})
        added = torch.from_numpy(np.asarray(edges[grow].sum(axis=0)).ravel().astype(np.float32))
        new_degree = degree + added
        item_degree = torch.from_numpy(np.asarray(edges.sum(axis=1)).ravel().astype(np.float32))
        coo = edges.tocoo()
        entry_rows, entry_cols = torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))
        values = torch.from_numpy(coo.data) * (item_degree[entry_rows].clamp(min=1e-12) *
                                               new_degree[entry_cols].clamp(min=1e-12)).rsqrt()
        shape, where = (len(rows), len(degree)), torch.stack([entry_rows, entry_cols])
        norm = torch.sparse_coo_tensor(where, values, shape).coalesce()
        grown_norm = torch.sparse_coo_tensor(where, values * torch.from_numpy(grow)[entry_rows].float(), shape).coalesce()
        rescale = (degree / new_degree.clamp(min=1e-12)).sqrt().where(new_degree > 0, torch.ones(()))[:, None]
        item_layers, attribute_layers = [x], [layers[0]]
        for layer in range(1, layers.shape[0]):
            item_layers.append(torch.sparse.mm(norm, attribute_layers[-1]))
            attribute_layers.append(rescale * layers[layer] + torch.sparse.mm(grown_norm.t(), item_layers[-2]))
        stacked = torch.stack(item_layers)                                                  # [L+1, m, dim]
        position = torch.from_numpy(index)
        # New tensors, not in-place writes: caches keyed on the embedding tensor see the change.
        self.item_layers_, self.item_embeddings_ = self.item_layers_.clone(), self.item_embeddings_.clone()
        self.item_layers_[:, position] = stacked
        self.item_embeddings_[position] = stacked.mean(dim=0)
        self.item_degree_[position] = torch.from_numpy(np.diff(incidence[rows].indptr).astype(np.float32))
        path["catalog_attribute_layers"], path["catalog_attribute_degree"] = torch.stack(attribute_layers), new_degree
