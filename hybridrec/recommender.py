"""``HybridRecommender``: the estimator users touch (tables in, tables out).

Three parts, each measurable alone (see ``benchmarks/model_vs_peers.py``):

* **CF head** (item–item, closed form): EASE on the training interactions. It carries most of
  the warm accuracy. Cold items get predicted EASE columns from their content through two linear
  maps (ridge onto warm columns, and the reconstruction objective itself; see
  :mod:`hybridrec.models.content_map`), so they land in the same collaborative space.
* **GNN**: a content-initialised LightGCN over the user–item–attribute graph trained with a
  full-catalog softmax (:mod:`hybridrec.models.hybrid_gnn`). It adds higher-order collaborative
  signal to warm users, serves cold users from their attribute nodes and cold items from their
  content and attribute nodes (ID dropout trains that path).
* **Fusion**: per user, the z-scored CF and GNN scores are summed with ``gnn_weight``.

``similar_items`` blends cosine similarity of GNN item embeddings with the symmetrised EASE
weights (co-occurrence), both z-scored per query item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from hybridrec.errors import HybridRecError
from hybridrec.graph import build_graph
from hybridrec.item_content import ItemContent, align_image_with_text, attribute_flags, encode_item_content
from hybridrec.models.content_map import item_gram_eigen, reconstruction_map, ridge_map
from hybridrec.models.ease import fit_ease
from hybridrec.models.hybrid_gnn import HybridGNN, normalized_adjacency
from hybridrec.recommender_base import RecommenderBase, ranked_top_k, top_k_frame
from hybridrec.tables import ColumnRoles, RecDataset

logger = logging.getLogger(__name__)


def _recall_at(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean recall@k of ``scores`` ``[users, items]`` against boolean ``truth`` of the same shape."""
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    hits = np.take_along_axis(truth, top, axis=1).sum(1)
    return float(np.mean(hits / np.minimum(truth.sum(1), k)))


def _trial_key(weights: dict) -> str:
    """A readable, order-stable key for a block-weight trial."""
    return ", ".join(f"{name}={value:g}" for name, value in sorted(weights.items()))


def _zscore(scores: torch.Tensor) -> torch.Tensor:
    """Standardise each row ``[b, n]``; constant rows become zeros."""
    mean = scores.mean(dim=1, keepdim=True)
    std = scores.std(dim=1, keepdim=True)
    return torch.where(std > 0, (scores - mean) / std.clamp(min=1e-12), torch.zeros_like(scores))


def _infer_roles(table: pd.DataFrame | None, columns: Sequence[str] | None, id_column: str) -> ColumnRoles:
    """Split attribute columns into categorical / multi-valued / numeric by their values."""
    roles = ColumnRoles()
    if table is None or not columns:
        return roles
    for column in columns:
        if column not in table.columns:
            raise HybridRecError(f"{id_column[:-3]}s table has no column {column!r}; it has {list(table.columns)}")
        values = table[column].dropna()
        if len(values) and values.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            roles.multi.append(column)
        elif pd.api.types.is_numeric_dtype(table[column]):
            roles.numeric.append(column)
        else:
            roles.categorical.append(column)
    return roles


class HybridRecommender(RecommenderBase):
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
        cold_gnn_weight: the same for items without training interactions, whose CF column comes
            from the content map and whose GNN embedding from content and attributes alone. Without
            the CF head (``use_cf=False``) cold items take ``gnn_weight``: the GNN is then their
            only scorer.
        popularity_weight: weight of log-popularity for users without history (cold users).
        validation_share: share of each user's training interactions held out for early stopping.
        max_ease_items: catalogs larger than this skip the dense EASE head (GNN only).
        use_cf, use_gnn: which parts to fit and score with (both: the fused model); one alone is for
            measuring each part's contribution.
        feature_cache_dir: where content embeddings are cached (default: user cache).
        text_encoder, image_encoder: encoder names/paths (None: offline defaults).
        seed: seeds everything (same seed, same result on CPU).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: show progress bars.
    """

    def __init__(self, *, dim: int = 64, num_layers: int = 2, epochs: int = 60, batch_size: int = 256,
                 lr: float = 5e-3, weight_decay: float = 0.0, temperature: float = 0.2, id_dropout: float = 0.2,
                 cold_item_share: float = 0.1, attribute_edge_weight: float = 1.0, eval_every: int = 5,
                 patience: int = 3,
                 ease_l2: float = 250.0, tune_ease_l2: bool = True, ease_item_power: float = 0.25,
                 ease_user_power: float = 0.25,
                 content_l2: float = 10.0, content_target_l2_factor: float = 0.125,
                 content_direct_l2: float = 1e4, attribute_weight: float = 0.25,
                 block_weights: dict | None = None, tune_block_weights: bool = True,
                 block_validation_share: float = 0.15, block_validation_folds: int = 3,
                 image_alignment: str = "auto",
                 gnn_weight: float = 1.5, cold_gnn_weight: float = 0.5,
                 popularity_weight: float = 1.0,
                 validation_share: float = 0.1, max_ease_items: int = 20000, use_cf: bool = True,
                 use_gnn: bool = True,
                 feature_cache_dir: str | None = None, text_encoder: str | None = None,
                 image_encoder: str | None = None, seed: int = 0, device: str = "auto",
                 progress: bool = True) -> None:
        self.dim, self.num_layers, self.epochs, self.batch_size = dim, num_layers, epochs, batch_size
        self.lr, self.weight_decay, self.temperature, self.id_dropout = lr, weight_decay, temperature, id_dropout
        self.attribute_edge_weight, self.eval_every, self.patience = attribute_edge_weight, eval_every, patience
        self.cold_item_share = cold_item_share
        self.ease_l2, self.ease_item_power, self.ease_user_power = ease_l2, ease_item_power, ease_user_power
        self.content_l2, self.content_direct_l2, self.attribute_weight = content_l2, content_direct_l2, attribute_weight
        self.block_weights, self.gnn_weight, self.popularity_weight = block_weights, gnn_weight, popularity_weight
        self.cold_gnn_weight, self.content_target_l2_factor = cold_gnn_weight, content_target_l2_factor
        self.tune_ease_l2 = tune_ease_l2
        self.tune_block_weights, self.block_validation_share = tune_block_weights, block_validation_share
        self.block_validation_folds, self.image_alignment = block_validation_folds, image_alignment
        self.validation_share, self.max_ease_items = validation_share, max_ease_items
        self.use_cf, self.use_gnn = use_cf, use_gnn
        if not (use_cf or use_gnn):
            raise HybridRecError("HybridRecommender needs at least one of use_cf / use_gnn")
        if block_validation_folds < 1:
            raise HybridRecError(f"block_validation_folds must be >= 1, got {block_validation_folds}")
        self.feature_cache_dir, self.text_encoder, self.image_encoder = feature_cache_dir, text_encoder, image_encoder
        self.seed, self.device, self.progress = seed, device, progress

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
            *, item_text_cols: Sequence[str] | None = None, item_image_col: str | None = None,
            item_attr_cols: Sequence[str] | None = None, user_attr_cols: Sequence[str] | None = None,
            checkpoint_dir: str | Path | None = None, fresh_checkpoint: bool = False) -> "HybridRecommender":
        """Fit on ``interactions`` (user_id, item_id, optional weight/timestamp) and the catalogs.

        Args:
            interactions: the behaviour log.
            items: item catalog (item_id + content columns); items without interactions are cold.
            users: user table (user_id + attributes); users without interactions are cold.
            item_text_cols: text columns, each encoded as its own block (e.g. ``["title", "overview"]``).
            item_image_col: column of local image paths (None: no images).
            item_attr_cols: categorical, multi-valued (lists) or numeric item attribute columns.
            user_attr_cols: user attribute columns (same kinds).
            checkpoint_dir: GNN checkpoints (training resumes from it when interrupted). A checkpoint
                written for another training config or other training data is refused with a
                :class:`HybridRecError` naming it and what differs.
            fresh_checkpoint: ignore a checkpoint in ``checkpoint_dir``, train from the start and
                replace it.

        Returns:
            self.
        """
        self._fit_options = {"item_text_cols": list(item_text_cols or []), "item_image_col": item_image_col,
                             "item_attr_cols": list(item_attr_cols or []), "user_attr_cols": list(user_attr_cols or []),
                             "checkpoint_dir": checkpoint_dir, "fresh_checkpoint": fresh_checkpoint}
        return super().fit(interactions, items, users)

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None, users: pd.DataFrame | None) -> None:
        started = time.perf_counter()
        options = self._fit_options
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        items_table = items if items is not None else pd.DataFrame({"item_id": self.item_ids_.ids})
        users_table = users if users is not None else pd.DataFrame({"user_id": self.user_ids_.ids})
        item_roles = _infer_roles(items, options["item_attr_cols"], "item_id")
        user_roles = _infer_roles(users, options["user_attr_cols"], "user_id")
        train = interactions.assign(weight=interactions["weight"] if "weight" in interactions else 1.0)
        dataset = RecDataset(interactions=train, items=items_table, users=users_table,
                             item_roles=item_roles, user_roles=user_roles, name="fit")
        graph = build_graph(dataset)
        if not (graph.id_maps["item"] == self.item_ids_ and graph.id_maps["user"] == self.user_ids_):
            raise HybridRecError("internal: graph id maps differ from the estimator's")
        self.graph_summary_ = graph.summary()

        content = encode_item_content(items, self.item_ids_, text_cols=options["item_text_cols"],
                                      image_col=options["item_image_col"], cache_dir=self.feature_cache_dir,
                                      text_encoder=self.text_encoder, image_encoder=self.image_encoder,
                                      device=self.device, progress=self.progress)
        self.image_alignment_ = None
        if self.image_alignment not in (None, "none"):
            self.image_alignment_ = align_image_with_text(content, self.image_alignment, seed=self.seed)
        flags = attribute_flags(graph)
        if flags.shape[1]:
            content.blocks = {"attributes": flags, **content.blocks}
            content.present = {"attributes": flags.sum(1) > 0, **content.present}
        self.content_dims_ = content.dims

        binary = self.user_items_.copy()
        binary.data[:] = 1.0
        item_counts = np.asarray(binary.sum(axis=0)).ravel()
        self.item_popularity_ = torch.from_numpy(np.log1p(item_counts).astype(np.float32))
        warm = np.flatnonzero(item_counts > 0)
        cold = np.flatnonzero(item_counts == 0)
        timings = {}

        tick = time.perf_counter()
        self.item_weights_ = None
        if not self.use_cf:
            pass
        elif len(self.item_ids_) <= self.max_ease_items:
            self.ease_l2_ = self._select_ease_l2(binary)
            weights = fit_ease(binary, self.ease_l2_, self.ease_item_power, self.ease_user_power)
            if len(cold) and content.blocks:
                self.cold_block_weights_ = self._select_block_weights(binary, content, warm)
                weights[:, cold] = self._cold_columns(binary, weights, self._content_targets(binary, weights), content,
                                                      warm, cold, self.cold_block_weights_)
            self.item_weights_ = torch.from_numpy(weights)
        else:
            logger.warning("%d items > max_ease_items=%d: the CF head is skipped (GNN only)",
                           len(self.item_ids_), self.max_ease_items)
        timings["cf_head_seconds"] = time.perf_counter() - tick

        tick = time.perf_counter()
        self.user_embeddings_ = self.item_embeddings_ = None
        if self.use_gnn:
            self._fit_gnn(graph, content, binary, options["checkpoint_dir"], options["fresh_checkpoint"])
        timings["gnn_seconds"] = time.perf_counter() - tick
        timings["fit_seconds"] = time.perf_counter() - started
        self.fit_timings_ = timings
        logger.info("fit done: %s", {k: round(v, 2) for k, v in timings.items()})

    def _select_ease_l2(self, binary: sp.csr_matrix) -> float:
        """``ease_l2`` scaled by the factor in {0.5, 1, 2, 4} with the best validation recall@20."""
        train, valid = self._validation_holdout(binary)
        if not self.tune_ease_l2 or valid is None or valid.nnz == 0 or binary.shape[1] > 5000:
            return float(self.ease_l2)
        users = np.flatnonzero(np.diff(valid.indptr) > 0)
        history, truth = train[users], valid[users].toarray() > 0
        k = min(20, binary.shape[1])
        seen = history.toarray() > 0
        results = {}
        for factor in (0.5, 1.0, 2.0, 4.0):
            l2 = float(self.ease_l2) * factor
            scores = np.asarray(history @ fit_ease(train, l2, self.ease_item_power, self.ease_user_power))
            scores[seen] = -np.inf
            results[l2] = _recall_at(scores, truth, k)
        best = max(results, key=results.get)
        logger.info("EASE l2 %g (validation recall@%d: %s)", best, k, {l: round(r, 4) for l, r in results.items()})
        self.ease_l2_trials_ = results
        return best

    def _select_block_weights(self, binary: sp.csr_matrix, content: ItemContent, warm: np.ndarray) -> dict:
        """Block weights for the cold-item content vector, chosen on a pseudo-cold validation.

        A seeded share of warm items is hidden (their interactions removed), the CF head is refit
        on the rest, and each candidate weighting predicts the hidden items' columns; users rank
        the hidden items and recall@20, averaged over ``block_validation_folds`` disjoint hidden
        sets, decides. Coordinate search over ``{1, 0.5, 0.25, 0}`` per
        block not fixed in ``block_weights``.

        Returns:
            block name -> weight (every block, fixed ones included).
        """
        fixed = {"attributes": self.attribute_weight, **(self.block_weights or {})}
        tunable = [name for name in content.blocks if name not in fixed]
        chosen = {**{name: 1.0 for name in tunable}, **fixed}
        n_hidden = int(round(self.block_validation_share * len(warm)))
        # One tunable block is still weighed against the fixed ones (e.g. a poster block against
        # the attribute flags); alone, only its scale against the ridge strength would change.
        anchored = any(chosen[name] > 0 for name in content.blocks if name not in tunable)
        if not self.tune_block_weights or len(tunable) < (1 if anchored else 2) or n_hidden < 10:
            return chosen
        # Disjoint hidden sets, scores averaged: one set of a few hundred items is a noisy judge.
        order = np.random.default_rng(self.seed).permutation(warm)
        folds = []
        for fold in range(min(self.block_validation_folds, len(warm) // n_hidden)):
            hidden = np.sort(order[fold * n_hidden:(fold + 1) * n_hidden])
            kept = np.setdiff1d(warm, hidden)
            mask = np.ones(binary.shape[1], dtype=np.float32)
            mask[hidden] = 0.0
            visible = sp.csr_matrix(binary @ sp.diags(mask))
            visible.eliminate_zeros()
            truth = sp.csr_matrix(binary[:, hidden])
            users = np.flatnonzero((np.diff(truth.indptr) > 0) & (np.diff(visible.indptr) > 0))
            weights = fit_ease(visible, self.ease_l2_, self.ease_item_power, self.ease_user_power)
            folds.append((visible, weights, self._content_targets(visible, weights), kept, hidden,
                          visible[users], truth[users].toarray() > 0, item_gram_eigen(visible)))
        k = min(20, n_hidden)

        def recall(block_weights: dict) -> float:
            return float(np.mean([
                _recall_at(np.asarray(history @ self._cold_columns(visible, weights, targets, content, kept, hidden,
                                                                     block_weights, eigen)), truth, k)
                for visible, weights, targets, kept, hidden, history, truth, eigen in folds]))

        best = recall(chosen)
        trials = {_trial_key(chosen): best}
        for name in tunable:
            for value in (0.5, 0.25, 0.0):
                trial = {**chosen, name: value}
                if not any(trial[n] for n in content.blocks):
                    continue
                trials[_trial_key(trial)] = score = recall(trial)
                if score > best:
                    best, chosen = score, trial
        logger.info("cold block weights %s (validation recall@%d %.4f over %d hidden items)", chosen, k, best, n_hidden)
        self.block_weight_trials_ = trials
        return chosen

    def _content_targets(self, binary: sp.csr_matrix, weights: np.ndarray) -> np.ndarray:
        """``[n_items, n_items]`` item–item columns the content map regresses onto."""
        if self.content_target_l2_factor == 1.0:
            return weights
        return fit_ease(binary, self.ease_l2_ * self.content_target_l2_factor, self.ease_item_power,
                        self.ease_user_power)

    def _cold_columns(self, binary: sp.csr_matrix, weights: np.ndarray, targets: np.ndarray, content: ItemContent,
                      warm: np.ndarray, cold: np.ndarray, block_weights: dict,
                      item_eigen: tuple | None = None) -> np.ndarray:
        """Predicted EASE columns ``[n_items, n_cold]`` for cold items, scaled like warm columns.

        Args:
            weights: ``[n_items, n_items]`` the warm head (for the score scale).
            targets: ``[n_items, n_items]`` the columns the ridge map learns (:meth:`_content_targets`).
            item_eigen: :func:`~hybridrec.models.content_map.item_gram_eigen` of ``binary``, reused
                across the validation trials.
        """
        features = content.matrix(block_weights)
        ridge = ridge_map(features[warm], targets[:, warm].T, self.content_l2)          # [F, n_items]
        direct = reconstruction_map(binary, warm, features[warm], self.content_direct_l2, item_eigen)  # [n_items, F]
        ridge_columns = (features[cold] @ ridge).T
        direct_columns = direct @ features[cold].T
        blended = (ridge_columns / max(float(ridge_columns.std()), 1e-12)
                   + direct_columns / max(float(direct_columns.std()), 1e-12))
        # Predicted columns are smoother than learned ones, so their scores x_u·b add up
        # differently: match the scale of training users' scores on warm items, so cold items
        # compete fairly with warm ones in a mixed ranking.
        warm_scores = binary @ weights[:, warm]
        cold_scores = binary @ blended
        scale = float(np.std(warm_scores)) / max(float(np.std(cold_scores)), 1e-12)
        return (blended * scale).astype(np.float32)

    def _fit_gnn(self, graph, content: ItemContent, binary: sp.csr_matrix, checkpoint_dir,
                 fresh_checkpoint: bool = False) -> None:
        from training.config import TrainConfig
        from training.trainer import GraphTrainingData, Trainer

        config = TrainConfig(dim=self.dim, num_layers=self.num_layers, epochs=self.epochs, batch_size=self.batch_size,
                             lr=self.lr, weight_decay=self.weight_decay, temperature=self.temperature,
                             id_dropout=self.id_dropout, cold_item_share=self.cold_item_share,
                             attribute_edge_weight=self.attribute_edge_weight,
                             eval_every=self.eval_every, patience=self.patience, seed=self.seed, device=self.device)
        n_users, n_items = binary.shape
        train, valid = self._validation_holdout(binary)
        attribute_types = [t for t in graph.attribute_sources]
        offsets, total = {}, n_users + n_items
        for node_type in attribute_types:
            offsets[node_type] = total
            total += len(graph.id_maps[node_type])
        self.num_attribute_nodes_ = total - n_users - n_items

        def edges_for(user_items: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
            """Both directions of every user–item and owner–attribute edge: ``[2, E]``, ``[E]``."""
            coo = user_items.tocoo()
            sources = [coo.row.astype(np.int64), ]
            targets = [coo.col.astype(np.int64) + n_users]
            weights = [np.ones(coo.nnz, dtype=np.float32)]
            for node_type, (owner, _) in graph.attribute_sources.items():
                src, dst = graph.data[owner, "has", node_type].edge_index.numpy()
                sources.append(src + (0 if owner == "user" else n_users))
                targets.append(dst + offsets[node_type])
                weights.append(np.full(len(src), self.attribute_edge_weight, dtype=np.float32))
            src, dst, weight = np.concatenate(sources), np.concatenate(targets), np.concatenate(weights)
            edge_index = torch.from_numpy(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]))
            return edge_index, torch.from_numpy(np.concatenate([weight, weight]))

        content_tensors = {name: torch.from_numpy(block) for name, block in content.blocks.items() if name != "attributes"}
        present = {name: torch.from_numpy(content.present[name]) for name in content_tensors}
        user_has_id = torch.from_numpy(np.diff(binary.indptr) > 0)
        item_has_id = torch.from_numpy(np.asarray(binary.sum(axis=0)).ravel() > 0)
        model = HybridGNN(n_users, n_items, self.num_attribute_nodes_, {k: v.shape[1] for k, v in content_tensors.items()},
                          dim=self.dim, num_layers=self.num_layers, id_dropout=self.id_dropout)
        edge_index, edge_weight = edges_for(train)
        data = GraphTrainingData(adjacency=normalized_adjacency(edge_index, edge_weight, total),
                                 content=content_tensors, present=present, user_has_id=user_has_id,
                                 item_has_id=item_has_id, train=train, valid=valid, edge_index=edge_index,
                                 edge_weight=edge_weight)
        trainer = Trainer(config, checkpoint_dir=checkpoint_dir, progress=self.progress,
                          fresh_checkpoint=fresh_checkpoint)
        self.train_result_ = trainer.fit(model, data)
        # Inference propagates over every training edge, including the validation hold-out.
        full = GraphTrainingData(adjacency=normalized_adjacency(*edges_for(binary), total), content=content_tensors,
                                 present=present, user_has_id=user_has_id, item_has_id=item_has_id,
                                 train=binary).to(trainer.device)
        with torch.no_grad():
            model.eval()
            x = model.node_inputs(full.content, full.present, full.user_has_id, full.item_has_id)
            stacked = model.layers(x, full.adjacency).cpu()              # [L+1, num_nodes, dim]
        final = stacked.mean(dim=0)
        self.user_embeddings_ = final[:n_users].contiguous()
        self.item_embeddings_ = final[n_users:n_users + n_items].contiguous()
        self.item_layers_ = stacked[:, n_users:n_users + n_items].contiguous()  # for new-user histories
        degree = torch.zeros(total).scatter_add_(0, full.adjacency.to_sparse_coo().coalesce().indices()[0].cpu(),
                                                 torch.ones(full.adjacency._nnz()))
        self.item_degree_ = degree[n_users:n_users + n_items].contiguous()
        self.modality_gates_ = ({} if model.fusion is None else
                                dict(zip(model.fusion.names, model.fusion.gates.detach().cpu().tolist())))

    def _validation_holdout(self, binary: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
        """Split each user's interactions into train / validation (users with >= 5 keep some)."""
        if self.validation_share <= 0:
            return binary, None
        rng = np.random.default_rng(self.seed)
        coo = binary.tocoo()
        counts = np.diff(binary.indptr)
        held = (rng.random(coo.nnz) < self.validation_share) & (counts[coo.row] >= 5)
        shape = binary.shape
        train = sp.csr_matrix((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=shape)
        valid = sp.csr_matrix((coo.data[held], (coo.row[held], coo.col[held])), shape=shape)
        return train, valid

    # -- scoring ---------------------------------------------------------------------------------
    def _fused(self, history: torch.Tensor, user_embeddings: torch.Tensor) -> torch.Tensor:
        """Fused scores ``[b, n_items]`` from histories ``[b, n_items]`` and GNN user embeddings ``[b, dim]``."""
        scores = torch.zeros(len(history), len(self.item_ids_))
        if self.item_weights_ is not None:
            cf = _zscore(history @ self.item_weights_)
            has_history = history.sum(dim=1, keepdim=True) > 0
            popularity = _zscore(self.item_popularity_.expand(len(history), -1))
            scores = torch.where(has_history, cf, self.popularity_weight * popularity)
        if self.item_embeddings_ is not None:
            cold_weight = self.cold_gnn_weight if self.item_weights_ is not None else self.gnn_weight
            weight = torch.where(self.item_popularity_ > 0, self.gnn_weight, cold_weight)
            scores = scores + weight * _zscore(user_embeddings @ self.item_embeddings_.T)
        return scores

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        history = torch.from_numpy(self._binary_rows(user_index))
        users = None if self.user_embeddings_ is None else self.user_embeddings_[torch.from_numpy(np.asarray(user_index))]
        return self._fused(history, users)

    def _binary_rows(self, user_index: np.ndarray) -> np.ndarray:
        rows = self.user_items_[np.asarray(user_index)].toarray()
        return (rows > 0).astype(np.float32)

    def recommend_for_history(self, item_ids: Iterable, k: int = 20, filter_seen: bool = True,
                              candidates: Iterable | None = None) -> pd.DataFrame:
        """Recommend for an anonymous or brand-new user from a few item ids, without retraining.

        The CF head scores the history directly; the GNN user embedding is rebuilt by LightGCN's
        propagation rule from the stored per-layer item embeddings.

        Returns:
            DataFrame with columns item_id, score, rank.
        """
        self._check_fitted()
        item_index = self.item_ids_.to_index(list(item_ids))
        history = torch.zeros(1, len(self.item_ids_))
        history[0, torch.from_numpy(item_index)] = 1.0
        user_embedding = None
        if self.item_embeddings_ is not None:
            norm = history[0] / (history[0].sum().clamp(min=1).sqrt() * self.item_degree_.clamp(min=1).sqrt())
            layers = [torch.zeros(self.item_embeddings_.shape[1])]
            for layer in range(1, self.item_layers_.shape[0]):
                layers.append(norm @ self.item_layers_[layer - 1])
            user_embedding = torch.stack(layers).mean(dim=0, keepdim=True)
        scores = self._fused(history, user_embedding)
        if filter_seen:
            scores[history > 0] = -torch.inf
        if candidates is not None:
            allowed = torch.zeros(len(self.item_ids_), dtype=torch.bool)
            allowed[torch.from_numpy(self.item_ids_.to_index(list(candidates)))] = True
            scores[:, ~allowed] = -torch.inf
        values, indices = ranked_top_k(scores, k)
        frame = top_k_frame(values, indices, np.array(["history"], dtype=object), self.item_ids_, "user_id", "item_id")
        return frame.drop(columns=["user_id"])

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        index = torch.from_numpy(np.asarray(item_index))
        similarity = torch.zeros(len(index), len(self.item_ids_))
        if self.item_embeddings_ is not None:
            normed = torch.nn.functional.normalize(self.item_embeddings_, dim=1)
            similarity = _zscore(normed[index] @ normed.T)
        if self.item_weights_ is not None:
            cooccurrence = (self.item_weights_[index] + self.item_weights_[:, index].T) / 2
            similarity = similarity + _zscore(cooccurrence)
        return similarity

    # -- persistence -----------------------------------------------------------------------------
    _STATE = ("item_popularity_", "item_weights_", "user_embeddings_", "item_embeddings_", "item_layers_",
              "item_degree_")

    def _state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._STATE if getattr(self, name, None) is not None}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the saved tensors after checking that the parameters call for exactly these,
        sized for the id tables, ``dim`` and ``num_layers``."""
        expected: dict[str, tuple] = {"item_popularity_": ("items",)}
        if self.use_cf and len(self.item_ids_) <= self.max_ease_items:
            expected["item_weights_"] = ("items", "items")
        if self.use_gnn:
            expected.update(user_embeddings_=("users", self.dim), item_embeddings_=("items", self.dim),
                            item_layers_=(self.num_layers + 1, "items", self.dim), item_degree_=("items",))
        self._check_state(state, expected)
        for name in self._STATE:
            setattr(self, name, state.get(name))


def dataset_fit_options(dataset: RecDataset, *, text_cols: Sequence[str] | None = None,
                        use_images: bool = False) -> dict:
    """``fit`` keyword arguments from a dataset's column roles.

    Args:
        dataset: canonical tables with their roles.
        text_cols: item text columns to encode (default: the dataset's text columns).
        use_images: encode the item image column when the dataset has one.
    """
    return {
        "item_text_cols": list(dataset.item_roles.text if text_cols is None else text_cols),
        "item_image_col": dataset.item_roles.image if use_images else None,
        "item_attr_cols": dataset.item_roles.attributes,
        "user_attr_cols": dataset.user_roles.attributes,
    }


def hybrid_from_config(path: str | Path | None = None, **overrides) -> HybridRecommender:
    """A :class:`HybridRecommender` from a TOML file's ``[train]`` (see
    :class:`training.config.TrainConfig`) and ``[model]`` tables, plus keyword ``overrides``."""
    import dataclasses
    import tomllib

    params: dict = {}
    if path is not None:
        from training.config import TrainConfig

        train = dataclasses.asdict(TrainConfig.from_toml(path))
        train.pop("loss"), train.pop("eval_k"), train.pop("amp")
        with open(path, "rb") as handle:
            model_table = tomllib.load(handle).get("model", {})
        import inspect

        known = set(inspect.signature(HybridRecommender.__init__).parameters) - {"self"}
        unknown = sorted(set(model_table) - known)
        if unknown:
            raise HybridRecError(f"{path}: unknown [model] key(s) {unknown}; known: {sorted(known)}")
        params = {**train, **model_table}
    params.update(overrides)
    return HybridRecommender(**params)
