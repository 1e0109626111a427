"""``HybridRecommender``: the estimator users touch (tables in, tables out).

Three parts, each measurable alone (see ``benchmarks/model_vs_peers.py``):

* **CF head** (item–item, closed form): EASE on the training interactions. It carries most of
  the warm accuracy. Cold items get predicted EASE columns from their content through two linear
  maps (ridge onto warm columns, and the reconstruction objective itself; see
  :mod:`hybridrec.models.content_map`), so they land in the same collaborative space. Catalogs
  above ``max_ease_items`` get the sparse head instead (:mod:`hybridrec.models.graph_filter`).
* **GNN**: a content-initialised LightGCN over the user–item–attribute graph trained with a
  full-catalog softmax, or a sampled one on large catalogs (:mod:`hybridrec.models.hybrid_gnn`,
  :mod:`training.sampling`). It adds higher-order collaborative
  signal to warm users, serves cold users from their attribute nodes and cold items from their
  content and attribute nodes (ID dropout trains that path).
* **Fusion**: per user, the z-scored CF and GNN scores are summed with ``gnn_weight_`` (chosen on
  the validation hold-out among ``gnn_weight x {0, 0.25, 0.5, 1, 2}`` by default).

``similar_items`` blends cosine similarity of GNN item embeddings with the symmetrised EASE
weights (co-occurrence), both z-scored per query item.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from hybridrec.device import resolve_device
from hybridrec.errors import HybridRecError
from hybridrec.graph import RecGraph, build_graph
from hybridrec.item_content import (
    ItemContent,
    align_image_with_text,
    attribute_incidence,
    content_attribute_columns,
    encode_item_content,
)
from hybridrec.models.cf_head import DenseEASEHead
from hybridrec.models.graph_filter import GraphFilterHead
from hybridrec.models.hybrid_gnn import HybridGNN, normalized_adjacency
from hybridrec.recommender_base import RecommenderBase, interaction_recency
from hybridrec.recommender_catalog import HybridCatalog
from hybridrec.recommender_explain import HybridExplain
from hybridrec.recommender_history import HybridHistory
from hybridrec.recommender_search import HybridSearch
from hybridrec.recommender_similarity import HybridSimilarity, zscore_rows
from hybridrec.recommender_state import HybridState
from hybridrec.tables import ColumnRoles, RecDataset, infer_attribute_roles
from hybridrec.tuning import (GNN_WEIGHT_TUNING_MAX_ITEMS, VALIDATION_ORDERS, select_block_weights, select_ease_l2,
                              select_filter_shape, select_gnn_weight, validation_holdout)
from training.config import TrainConfig
from training.distributed import is_main_process, launched_by_torchrun
from training.trainer import GraphTrainingData, Trainer

logger = logging.getLogger(__name__)


#: Values of ``HybridRecommender(cf_head=...)``.
CF_HEADS = ("auto", "dense", "sparse")


class HybridRecommender(HybridState, HybridCatalog, HybridExplain, HybridHistory, HybridSearch, HybridSimilarity,
                        RecommenderBase):
    """Graph-based hybrid recommender with warm and cold-start support.

    All arguments are keyword-only and stored unchanged (scikit-learn style).

    Args:
        dim, num_layers, epochs, batch_size, lr, weight_decay, temperature, id_dropout, cold_item_share,
        attribute_edge_weight, eval_every, patience: GNN training (see :class:`training.config.TrainConfig`).
        ease_l2, ease_item_power, ease_user_power: the EASE head (see :func:`hybridrec.models.ease.fit_ease`).
        tune_ease_l2: choose the EASE ridge strength among ``ease_l2 x {0.5, 1, 2, 4}`` by recall@20
            on the validation hold-out (catalogs up to 5,000 items), then refit on everything.
        content_l2: ridge strength of the content -> EASE-column map.
        content_target_l2_factor: the columns that map learns to predict come from an EASE fitted
            with ``ease_l2_ x`` this factor: a sharper item–item matrix than the warm head's, whose
            columns carry more of each item's own audience (1/8: +1.6% recall@20 on MovieLens-100K
            cold items over the warm head's own columns; ``benchmarks/README.md``).
        content_direct_l2: ridge strength of the reconstruction-objective map.
        attribute_weight: weight of the attribute-flag block in the content vector.
        block_weights: fixed per-block weights of the cold-item content vector, e.g. ``{"image": 0.5}``.
        tune_block_weights: choose the weights of the blocks not fixed in ``block_weights`` on a
            pseudo-cold validation (a seeded share of warm items hidden from the CF head), so a
            modality that does not help cold items is down-weighted or switched off.
        block_validation_share: share of warm items hidden for that validation.
        block_validation_folds: how many disjoint hidden sets of that share are scored and averaged.
        image_alignment: how the image block enters. ``"auto"`` (default): replaced by its CCA
            alignment with the text column that shares most with it, learned from the catalog (see
            :func:`hybridrec.item_content.align_image_with_text`); a block name such as
            ``"text:overview"`` names that column; ``"none"``: the raw CNN embedding.
        gnn_weight: weight of the z-scored GNN score in the fused score (warm items).
        tune_gnn_weight: choose that weight among ``gnn_weight x {0, 0.25, 0.5, 1, 2}`` by validation
            recall@20, both parts refitted without the hold-out (:func:`hybridrec.tuning.select_gnn_weight`;
            up to 200,000 items); kept as ``gnn_weight_`` (``gnn_weight`` itself when False).
        cold_gnn_weight: the same for items without training interactions, whose CF column comes
            from the content map and whose GNN embedding from content and attributes alone. Without
            the CF head (``use_cf=False``) cold items take ``gnn_weight``: the GNN is then their
            only scorer.
        popularity_weight: weight of log-popularity for users without history (cold users).
        validation_share: share of each user's training interactions held out for early stopping
            and every choice the fit makes (:func:`hybridrec.tuning.validation_holdout`).
        validation_order: ``"random"`` (each interaction at random) or ``"latest"`` (each user's
            latest ones by ``timestamp``, meant for a split by time; on MovieLens-100K it did not
            help there, ``benchmarks/README.md``).
        cf_head: which CF head: ``"dense"`` (EASE, a dense ``[n_items, n_items]`` inverse),
            ``"sparse"`` (:class:`~hybridrec.models.graph_filter.GraphFilterHead`: a pruned
            co-occurrence filter plus a low-rank low-pass filter, memory ``O(n_items x (neighbors +
            rank))``) or ``"auto"``: dense up to ``max_ease_items`` items, sparse above. The choice
            is logged and kept in ``fit_summary_``.
        max_ease_items: the largest catalog ``cf_head="auto"`` fits the dense EASE head for.
        filter_neighbors, filter_rank, filter_alpha, filter_sharpen, filter_tilt: the sparse head's
            co-occurrence entries kept per item, low-pass rank, low-pass weight, β of ``s (I - β P̃)``
            (not searched) and γ of the popularity tilt ``s_j max(d_j, 1)^γ`` of users' scores.
        tune_filter: choose the sparse head's rank among ``filter_rank x {0.5, 1, 2}`` and weight among
            ``{0.1, 0.3, 0.5, 1, filter_alpha}``, then its tilt among ``{0, 0.05, 0.1, 0.2, filter_tilt}``, by
            validation recall@20 (up to 200,000 items; :func:`hybridrec.tuning.select_filter_shape`); kept as
            ``filter_rank_`` / ``filter_alpha_`` / ``filter_tilt_``.
        negatives, num_negatives, full_softmax_max_items, training_mode, full_graph_max_edges,
            num_neighbors, max_trained_interactions: how the GNN trains on large catalogs and graphs (see
            :class:`training.config.TrainConfig`).
        use_cf, use_gnn: which parts to fit and score with (both: the fused model); one alone is for
            measuring each part's contribution.
        feature_cache_dir: where content embeddings are cached (default: user cache).
        text_encoder, image_encoder: encoder names/paths (None: offline defaults).
        seed: seeds everything (same seed, same result on CPU).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: show progress bars.
    """

    def __init__(self, *, dim: int = 64, num_layers: int = 2, epochs: int = 60, batch_size: int = 256,
                 lr: float = 5e-3, weight_decay: float = 0.0, loss: str = "softmax", temperature: float = 0.2,
                 id_dropout: float = 0.2, cold_item_share: float = 0.1, attribute_edge_weight: float = 1.0,
                 eval_every: int = 5, patience: int = 3, eval_k: int = 20, amp: bool = True,
                 negatives: str = "auto", num_negatives: int = 1024, full_softmax_max_items: int = 20000,
                 training_mode: str = "auto", full_graph_max_edges: int = 20_000_000,
                 num_neighbors: list[int] | None = None, max_trained_interactions: int | None = 10_000_000,
                 cf_head: str = "auto", filter_neighbors: int = 256, filter_rank: int = 256,
                 filter_alpha: float = 0.3, filter_sharpen: float = 0.0, filter_tilt: float = 0.0,
                 tune_filter: bool = True, ease_l2: float = 250.0, tune_ease_l2: bool = True,
                 ease_item_power: float = 0.25, ease_user_power: float = 0.25,
                 content_l2: float = 10.0, content_target_l2_factor: float = 0.125,
                 content_direct_l2: float = 1e4, attribute_weight: float = 0.25,
                 block_weights: dict | None = None, tune_block_weights: bool = True,
                 block_validation_share: float = 0.15, block_validation_folds: int = 3, image_alignment: str = "auto",
                 gnn_weight: float = 1.5, tune_gnn_weight: bool = True, cold_gnn_weight: float = 0.5,
                 popularity_weight: float = 1.0, validation_share: float = 0.1, validation_order: str = "random",
                 max_ease_items: int = 20000,
                 use_cf: bool = True, use_gnn: bool = True, feature_cache_dir: str | None = None,
                 text_encoder: str | None = None, image_encoder: str | None = None, seed: int = 0,
                 device: str = "auto", progress: bool = True) -> None:
        self.dim, self.num_layers, self.epochs, self.batch_size = dim, num_layers, epochs, batch_size
        self.lr, self.weight_decay, self.loss, self.temperature = lr, weight_decay, loss, temperature
        self.id_dropout, self.cold_item_share, self.attribute_edge_weight = id_dropout, cold_item_share, attribute_edge_weight
        self.eval_every, self.patience, self.eval_k, self.amp = eval_every, patience, eval_k, amp
        self.negatives, self.num_negatives, self.full_softmax_max_items = negatives, num_negatives, full_softmax_max_items
        self.training_mode, self.full_graph_max_edges = training_mode, full_graph_max_edges
        self.num_neighbors, self.max_trained_interactions, self.cf_head = num_neighbors, max_trained_interactions, cf_head
        self.filter_neighbors, self.filter_rank, self.filter_alpha = filter_neighbors, filter_rank, filter_alpha
        self.filter_sharpen, self.filter_tilt, self.tune_filter = filter_sharpen, filter_tilt, tune_filter
        self.ease_l2, self.ease_item_power, self.ease_user_power = ease_l2, ease_item_power, ease_user_power
        self.content_l2, self.content_direct_l2, self.attribute_weight = content_l2, content_direct_l2, attribute_weight
        self.block_weights, self.gnn_weight, self.popularity_weight = block_weights, gnn_weight, popularity_weight
        self.cold_gnn_weight, self.content_target_l2_factor = cold_gnn_weight, content_target_l2_factor
        self.tune_gnn_weight, self.tune_ease_l2 = tune_gnn_weight, tune_ease_l2
        self.tune_block_weights, self.block_validation_share = tune_block_weights, block_validation_share
        self.block_validation_folds, self.image_alignment = block_validation_folds, image_alignment
        self.validation_share, self.max_ease_items, self.use_cf, self.use_gnn = validation_share, max_ease_items, use_cf, use_gnn
        self.feature_cache_dir, self.text_encoder, self.image_encoder = feature_cache_dir, text_encoder, image_encoder
        self.seed, self.device, self.progress, self.validation_order = seed, device, progress, validation_order

    def _check_params(self) -> None:
        """Validate the parameters (at ``fit``, naming the parameter)."""
        if not (self.use_cf or self.use_gnn):
            raise HybridRecError("HybridRecommender needs at least one of use_cf / use_gnn")
        if self.cf_head not in CF_HEADS:
            raise HybridRecError(f"cf_head must be one of {CF_HEADS}, got {self.cf_head!r}")
        if (self.filter_neighbors < 1 or self.filter_rank < 1 or not self.filter_sharpen >= 0
                or not np.isfinite(self.filter_tilt)):
            raise HybridRecError("filter_neighbors and filter_rank must be >= 1, filter_sharpen >= 0 and filter_tilt finite, "
                                 f"got {self.filter_neighbors}, {self.filter_rank}, {self.filter_sharpen}, {self.filter_tilt}")
        if self.validation_order not in VALIDATION_ORDERS:
            raise HybridRecError(f"validation_order must be one of {VALIDATION_ORDERS}, got {self.validation_order!r}")
        if self.block_validation_folds < 1:
            raise HybridRecError(f"block_validation_folds must be >= 1, got {self.block_validation_folds}")
        self.train_config()  # TrainConfig checks the GNN training parameters, naming each
        resolve_device(self.device)  # a GPU asked for on a machine without one fails here, before any work

    def train_config(self) -> TrainConfig:
        """The GNN's :class:`~training.config.TrainConfig`: every field taken from the parameter of
        the same name."""
        return TrainConfig(**{field.name: getattr(self, field.name) for field in dataclasses.fields(TrainConfig)})

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, interactions: pd.DataFrame | RecDataset, items: pd.DataFrame | None = None,
            users: pd.DataFrame | None = None, *, item_text_cols: Sequence[str] | None = None,
            item_image_col: str | None = None, item_attr_cols: Sequence[str] | None = None,
            user_attr_cols: Sequence[str] | None = None, checkpoint_dir: str | Path | None = None,
            fresh_checkpoint: bool = False) -> HybridRecommender:
        """Fit on ``interactions`` (user_id, item_id, optional weight/timestamp) and the catalogs.

        Args:
            interactions: the behaviour log, or a :class:`~hybridrec.tables.RecDataset` whose
                tables and declared column roles are used as they are (then give no ``items``,
                ``users`` or column arguments).
            items: item catalog (item_id + content columns); items without interactions are cold.
            users: user table (user_id + attributes); users without interactions are cold.
            item_text_cols: text columns, each encoded as its own block (e.g. ``["title", "overview"]``).
            item_image_col: column of local image paths (None: no images).
            item_attr_cols: categorical, multi-valued (lists) or numeric item attribute columns
                (the kind is read off the values).
            user_attr_cols: user attribute columns (same kinds).
            checkpoint_dir: GNN checkpoints (training resumes from it when interrupted). A checkpoint
                written for another training config or other training data is refused with a
                :class:`HybridRecError` naming it and what differs.
            fresh_checkpoint: ignore a checkpoint in ``checkpoint_dir``, train from the start and
                replace it.

        Returns:
            self.
        """
        if isinstance(interactions, RecDataset):
            given = {"items": items, "users": users, "item_text_cols": item_text_cols, "item_image_col": item_image_col,
                     "item_attr_cols": item_attr_cols, "user_attr_cols": user_attr_cols}
            clashing = sorted(name for name, value in given.items() if value is not None)
            if clashing:
                raise HybridRecError(f"fit got a RecDataset and {clashing}: the dataset's tables and roles are used")
            dataset = interactions
            item_roles, user_roles = dataset.item_roles, dataset.user_roles
            interactions, items, users = dataset.interactions, dataset.items, dataset.users
            text_cols, image_col = list(item_roles.text), item_roles.image
        else:
            item_roles = infer_attribute_roles(items, item_attr_cols, "item")
            user_roles = infer_attribute_roles(users, user_attr_cols, "user")
            text_cols, image_col = list(item_text_cols or []), item_image_col
        self._fit_options = {"text_cols": text_cols, "image_col": image_col,
                             "item_roles": ColumnRoles(categorical=list(item_roles.categorical),
                                                       multi=list(item_roles.multi), numeric=list(item_roles.numeric)),
                             "user_roles": ColumnRoles(categorical=list(user_roles.categorical),
                                                       multi=list(user_roles.multi), numeric=list(user_roles.numeric)),
                             "checkpoint_dir": checkpoint_dir, "fresh_checkpoint": fresh_checkpoint}
        return super().fit(interactions, items, users)

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None) -> None:
        started = time.perf_counter()
        options = self._fit_options
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        items_table = items if items is not None else pd.DataFrame({"item_id": self.item_ids_.ids})
        users_table = users if users is not None else pd.DataFrame({"user_id": self.user_ids_.ids})
        train = interactions.assign(weight=interactions["weight"] if "weight" in interactions else 1.0)
        dataset = RecDataset(interactions=train, items=items_table, users=users_table,
                             item_roles=options["item_roles"], user_roles=options["user_roles"], name="fit")
        graph = build_graph(dataset, id_maps={"user": self.user_ids_, "item": self.item_ids_})
        self.graph_summary_ = graph.summary()

        content = encode_item_content(items, self.item_ids_, text_cols=options["text_cols"],
                                      image_col=options["image_col"], cache_dir=self.feature_cache_dir,
                                      text_encoder=self.text_encoder, image_encoder=self.image_encoder,
                                      device=self.device, progress=self.progress)
        # The fitted alignment (ImageAlignment) is kept and saved: add_items places new photos by it.
        self.image_alignment_ = None
        if self.image_alignment not in (None, "none"):
            self.image_alignment_ = align_image_with_text(content, self.image_alignment, seed=self.seed)
        incidence = attribute_incidence(graph)
        self.content_attribute_columns_ = content_attribute_columns(incidence)
        flags = incidence[:, self.content_attribute_columns_].tocsr()
        if flags.shape[1]:
            content.blocks = {"attributes": flags, **content.blocks}
            content.present = {"attributes": flags.getnnz(axis=1) > 0, **content.present}
        self.content_dims_ = content.dims
        self._keep_vocabulary(graph)
        self.catalog_["attribute_columns"] = self.content_attribute_columns_.tolist()

        binary = self.user_items_.copy()
        binary.data[:] = 1.0
        item_counts = np.asarray(binary.sum(axis=0)).ravel()
        self.item_popularity_ = torch.from_numpy(np.log1p(item_counts).astype(np.float32))
        timings = {}

        self.item_weights_ = self.cf_filter_ = None
        self.user_embeddings_ = self.item_embeddings_ = None
        head_name = self.resolved_cf_head() if self.use_cf else None
        # Under torchrun every rank trains the GNN (DDP); the CF head, closed-form and needing no
        # gradients, is fitted once, on rank 0, the only rank that writes the model, after the GNN
        # (the other ranks then leave without waiting on it).
        parallel = launched_by_torchrun()
        fit_cf = head_name is not None and (not parallel or is_main_process())
        if parallel and head_name is not None:
            logger.info("CF head: fitted on rank 0 only, after the GNN (the other ranks train the GNN only; rank 0 "
                        "writes the model)%s", "" if fit_cf else ": not fitted on this rank")

        def cf_head() -> None:
            if fit_cf:
                logger.info("CF head: %s (%d items; cf_head=%r, max_ease_items=%d)", head_name, len(self.item_ids_),
                            self.cf_head, self.max_ease_items)
                self._fit_cf(binary, holdout, content, warm=np.flatnonzero(item_counts > 0),
                             cold=np.flatnonzero(item_counts == 0))

        def gnn() -> None:
            if self.use_gnn:
                self._fit_gnn(graph, content, binary, holdout, options["checkpoint_dir"], options["fresh_checkpoint"])

        # One validation hold-out (train, valid) for every choice the fit makes (tuning.validation_holdout).
        recency = None
        if self.validation_order == "latest" and self.validation_share > 0:
            logger.info("validation hold-out: each user's latest %g%% by timestamp", 100 * self.validation_share)
            recency = interaction_recency(interactions, self.user_ids_, self.item_ids_)
        holdout = validation_holdout(binary, self.validation_share, self.seed, recency=recency)
        parts = [("cf_head_seconds", cf_head), ("gnn_seconds", gnn)]
        self._held_out_embeddings = None  # set by _fit_gnn for the GNN weight's validation
        for name, fit_part in reversed(parts) if parallel else parts:
            tick = time.perf_counter()
            fit_part()
            timings[name] = time.perf_counter() - tick
        tick = time.perf_counter()
        self.gnn_weight_ = float(self.gnn_weight)
        self.__dict__.pop("gnn_weight_trials_", None)
        if fit_cf and self.use_gnn and self.tune_gnn_weight:
            if self._held_out_embeddings is not None:
                self._select_gnn_weight(*holdout)
                timings["gnn_weight_seconds"] = time.perf_counter() - tick
            else:
                logger.info("GNN weight: the configured %g kept (no validation hold-out, or more than %d items, where "
                            "the search would refit a second CF head)", self.gnn_weight, GNN_WEIGHT_TUNING_MAX_ITEMS)
        self._held_out_embeddings = None
        timings["fit_seconds"] = time.perf_counter() - started
        self.fit_timings_ = timings
        result = getattr(self, "train_result_", None) if self.use_gnn else None
        self.fit_summary_ = {"cf_head": head_name, "validation_order": self.validation_order,
                             "gnn_negatives": getattr(result, "negatives", None),
                             "gnn_training_mode": getattr(result, "training_mode", None),
                             "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                             **{k: round(v, 2) for k, v in timings.items()}}
        if self.use_cf and head_name == GraphFilterHead.name:
            self.fit_summary_.update(filter_rank=self.filter_rank_, filter_alpha=self.filter_alpha_,
                                     filter_sharpen=self.filter_sharpen_, filter_tilt=self.filter_tilt_)
        if self.use_cf and self.use_gnn:
            self.fit_summary_["gnn_weight"] = self.gnn_weight_
        if result is not None:
            self.fit_summary_.update(gnn_epochs_run=result.epochs_run, gnn_epoch_limit=result.epoch_limit,
                                     gnn_processes=result.world_size,
                                     gnn_step_seconds_per_rank=result.step_seconds_per_rank,
                                     gnn_memory_mb_per_rank=result.memory_mb_per_rank)
        logger.info("fit done: %s", self.fit_summary_)

    def resolved_cf_head(self, n_items: int | None = None) -> str:
        """The CF head ``cf_head`` resolves to for a catalog of ``n_items`` (default: the fitted one):
        ``"dense_ease"`` or ``"sparse_graph_filter"``."""
        n_items = len(self.item_ids_) if n_items is None else n_items
        if self.cf_head == "dense" or (self.cf_head == "auto" and n_items <= self.max_ease_items):
            return DenseEASEHead.name
        return GraphFilterHead.name

    def dense_head(self, l2: float | None = None) -> DenseEASEHead:
        """The dense EASE head with this estimator's settings (``l2`` defaults to the fitted ``ease_l2_``)."""
        return DenseEASEHead(l2=self.ease_l2_ if l2 is None else l2, item_power=self.ease_item_power,
                             user_power=self.ease_user_power, content_l2=self.content_l2,
                             content_target_l2_factor=self.content_target_l2_factor,
                             content_direct_l2=self.content_direct_l2, device=resolve_device(self.device))

    def sparse_head(self) -> GraphFilterHead:
        """The sparse graph-filter head with this estimator's settings (the fitted shape ``filter_*_`` if any)."""
        return GraphFilterHead(neighbors=self.filter_neighbors, rank=getattr(self, "filter_rank_", self.filter_rank),
                               alpha=getattr(self, "filter_alpha_", self.filter_alpha),
                               sharpen=getattr(self, "filter_sharpen_", self.filter_sharpen),
                               tilt=getattr(self, "filter_tilt_", self.filter_tilt),
                               content_l2=self.content_l2, seed=self.seed, progress=self.progress)

    def _fit_cf(self, binary: sp.csr_matrix, holdout: tuple, content: ItemContent, warm: np.ndarray,
                cold: np.ndarray) -> None:
        """The CF head: (dense) ridge strength on the validation hold-out, the head, cold columns from content."""
        self.ease_l2_ = float(self.ease_l2)
        dense = self.resolved_cf_head() == DenseEASEHead.name
        if dense and self.tune_ease_l2:
            self.ease_l2_, trials = select_ease_l2(self.dense_head(), *holdout)
            if trials is not None:
                self.ease_l2_trials_ = trials
        self.filter_rank_, self.filter_alpha_ = int(self.filter_rank), float(self.filter_alpha)
        self.filter_sharpen_, self.filter_tilt_ = float(self.filter_sharpen), float(self.filter_tilt)
        if not dense and self.tune_filter:
            (self.filter_rank_, self.filter_alpha_, self.filter_tilt_), trials = select_filter_shape(
                self.sparse_head(), *holdout, seed=self.seed)
            if trials is not None:
                self.filter_trials_ = trials
        head = (self.dense_head() if dense else self.sparse_head()).fit(binary)
        if content.blocks:  # also without cold items: the content map serves items added later (add_items)
            self.cold_block_weights_, trials = select_block_weights(
                head, binary, content, warm, fixed={"attributes": self.attribute_weight, **(self.block_weights or {})},
                tune=self.tune_block_weights, hidden_share=self.block_validation_share,
                folds=self.block_validation_folds, seed=self.seed)
            if trials is not None:
                self.block_weight_trials_ = trials
            if len(cold):
                head.fill_cold_columns(binary, content, warm, cold, self.cold_block_weights_)
            else:
                head.fit_content_map(binary, content, warm, self.cold_block_weights_)
            self._keep_content_map(head)
        if dense:
            self.item_weights_ = head.item_weights()
        else:
            self.cf_filter_ = head

    def _select_gnn_weight(self, train: sp.csr_matrix, valid: sp.csr_matrix) -> None:
        """``gnn_weight_`` on the validation hold-out ``valid``: the CF head refitted on ``train``, the
        GNN's embeddings propagated over ``train``'s edges (kept by :meth:`_fit_gnn`)."""
        dense = self.item_weights_ is not None
        head = (self.dense_head() if dense else self.sparse_head()).fit(train)
        weights = head.item_weights() if dense else None
        users, items = self._held_out_embeddings

        def parts(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            history = torch.from_numpy(train[rows].toarray().astype(np.float32))
            raw = history @ weights if dense else head.score(history)
            return zscore_rows(raw), zscore_rows(users[torch.from_numpy(rows)] @ items.T)

        self.gnn_weight_, trials = select_gnn_weight(parts, train, valid, weight=self.gnn_weight, seed=self.seed)
        if trials is not None:
            self.gnn_weight_trials_ = trials

    def _fit_gnn(self, graph: RecGraph, content: ItemContent, binary: sp.csr_matrix, holdout: tuple, checkpoint_dir,
                 fresh_checkpoint: bool = False) -> None:
        """Train the GNN on the graph (validation hold-out for early stopping), then embed every node."""
        n_users, n_items = binary.shape
        train, valid = holdout
        _, total = graph.attribute_offsets()
        self.num_attribute_nodes_ = total - n_users - n_items
        content_tensors = {name: torch.from_numpy(block) for name, block in content.blocks.items() if name != "attributes"}
        present = {name: torch.from_numpy(content.present[name]) for name in content_tensors}
        user_has_id = torch.from_numpy(np.diff(binary.indptr) > 0)
        item_has_id = torch.from_numpy(np.asarray(binary.sum(axis=0)).ravel() > 0)
        model = HybridGNN(n_users, n_items, self.num_attribute_nodes_, {k: v.shape[1] for k, v in content_tensors.items()},
                          dim=self.dim, num_layers=self.num_layers, id_dropout=self.id_dropout)
        edge_index, edge_weight = graph.homogeneous_edges(train, self.attribute_edge_weight)
        data = GraphTrainingData(adjacency=normalized_adjacency(edge_index, edge_weight, total),
                                 content=content_tensors, present=present, user_has_id=user_has_id,
                                 item_has_id=item_has_id, train=train, valid=valid, edge_index=edge_index,
                                 edge_weight=edge_weight)
        trainer = Trainer(self.train_config(), checkpoint_dir=checkpoint_dir, progress=self.progress,
                          fresh_checkpoint=fresh_checkpoint)
        self.train_result_ = trainer.fit(model, data)
        if self.use_cf and self.tune_gnn_weight and valid is not None and n_items <= GNN_WEIGHT_TUNING_MAX_ITEMS:
            # The GNN as it was validated, the hold-out's edges left out, for the GNN weight's search.
            held_out = data.to(trainer.device)
            embeddings = model.infer(held_out.content, held_out.present, held_out.user_has_id, held_out.item_has_id,
                                     held_out.adjacency)
            self._held_out_embeddings = (embeddings.users.cpu(), embeddings.items.cpu())
        # Inference propagates over every training edge, including the validation hold-out.
        full_edges = graph.homogeneous_edges(binary, self.attribute_edge_weight)
        full = GraphTrainingData(adjacency=normalized_adjacency(*full_edges, total),
                                 content=content_tensors, present=present, user_has_id=user_has_id,
                                 item_has_id=item_has_id, train=binary).to(trainer.device)
        embeddings = model.infer(full.content, full.present, full.user_has_id, full.item_has_id, full.adjacency)
        self.user_embeddings_, self.item_embeddings_ = embeddings.users, embeddings.items
        self.item_layers_, self.item_degree_ = embeddings.item_layers, embeddings.item_degree  # for new-user histories
        self._keep_content_path(model, embeddings, *full_edges)  # for items added later (add_items)
        self.modality_gates_ = ({} if model.fusion is None else
                                dict(zip(model.fusion.names, model.fusion.gates.detach().cpu().tolist())))

    # -- scoring ---------------------------------------------------------------------------------
    def _fused(self, history: torch.Tensor, user_embeddings: torch.Tensor) -> torch.Tensor:
        """Fused scores ``[b, n_items]`` from histories ``[b, n_items]`` and GNN user embeddings ``[b, dim]``:
        the CF term plus the GNN term of :meth:`fused_parts`."""
        _, cf_term, gnn_term = self.fused_parts(history, user_embeddings)
        return cf_term + gnn_term

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        history = torch.from_numpy(self._binary_rows(user_index))
        users = None if self.user_embeddings_ is None else self.user_embeddings_[torch.from_numpy(np.asarray(user_index))]
        return self._fused(history, users)

    def _binary_rows(self, user_index: np.ndarray) -> np.ndarray:
        rows = self.user_items_[np.asarray(user_index)].toarray()
        return (rows > 0).astype(np.float32)
