"""Peer recommenders for side-by-side benchmarks, wrapped in hybridrec's recommender contract.

Benchmark-only: they need ``implicit`` and ``lightfm`` (``pip install implicit``; LightFM builds
with ``pip install "setuptools<70" cython wheel && pip install --no-build-isolation lightfm``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from evaluation.ease import EASERecommender
from hybridrec.models.content_map import ridge_map
from hybridrec.recommender_base import RecommenderBase


def genre_flags(items: pd.DataFrame, item_ids) -> np.ndarray:
    """``[n_items, n_genres]`` 0/1 flags in ``item_ids`` order (items missing from ``items``: zeros)."""
    genres = sorted({g for values in items["genres"] for g in values})
    position = {g: j for j, g in enumerate(genres)}
    flags = np.zeros((len(item_ids), len(genres)), dtype=np.float32)
    rows = item_ids.to_index(items["item_id"].to_numpy())
    for row, values in zip(rows, items["genres"]):
        flags[row, [position[g] for g in values]] = 1.0
    return flags


def year_flags(items: pd.DataFrame, item_ids, buckets: int = 5) -> np.ndarray:
    """``[n_items, n_buckets]`` one-hot release-year quantile buckets in ``item_ids`` order, the same
    buckets hybridrec's graph builds for a numeric attribute (no year: all zeros)."""
    years = pd.to_numeric(items["year"], errors="coerce")
    present = years.notna().to_numpy()
    codes = pd.qcut(years[present], q=buckets, duplicates="drop", labels=False).to_numpy().astype(int)
    flags = np.zeros((len(item_ids), codes.max() + 1), dtype=np.float32)
    flags[item_ids.to_index(items["item_id"].to_numpy()[present]), codes] = 1.0
    return flags


def title_genre_embeddings(items: pd.DataFrame, item_ids, cache_dir: str) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of ``"Title (Year). Genres: a, b"`` in ``item_ids`` order."""
    from hybridrec.features.feature_cache import encode_items

    features = encode_items(items, text_template="{title}. Genres: {genres}", cache_dir=cache_dir, progress=False)
    out = np.zeros((len(item_ids), features.text.shape[1]), dtype=np.float32)
    out[item_ids.to_index(items["item_id"].to_numpy())] = features.text
    return out


def content_blocks(items: pd.DataFrame, item_ids, *, text_cols: list[str], image_col: str | None,
                   cache_dir: str) -> dict[str, np.ndarray]:
    """Genre flags, year buckets and hybridrec's own text/image blocks (one embedding per column), in
    ``item_ids`` order.

    Peers in the modality ablation get exactly the embeddings hybridrec gets.
    """
    from hybridrec.item_content import encode_item_content

    content = encode_item_content(items, item_ids, text_cols=text_cols, image_col=image_col, cache_dir=cache_dir,
                                  progress=False)
    return {"genres": genre_flags(items, item_ids), "year": year_flags(items, item_ids), **content.blocks}


class RidgeContentEASE(EASERecommender):
    """EASE for warm items; a cold item's EASE column is predicted by ridge regression from its
    content ``[genre flags, MiniLM(title + genres)]`` fitted on warm items (the strongest
    cold-start peer measured for MovieLens).

    With ``text_cols`` / ``image_col`` set, the content vector is instead the genre flags, the
    release-year buckets (``with_year``) and one block per embedding (hybridrec's blocks, unweighted),
    as in the modality ablation.
    """

    def __init__(self, *, l2: float = 250.0, content_l2: float = 3.0, cache_dir: str = "runs/feature-cache",
                 text_cols: list[str] | None = None, image_col: str | None = None, with_year: bool = True) -> None:
        super().__init__(l2=l2)
        self.content_l2, self.cache_dir, self.text_cols, self.image_col = content_l2, cache_dir, text_cols, image_col
        self.with_year = with_year

    def _content(self, items) -> np.ndarray:
        if self.text_cols is None and self.image_col is None:
            return np.hstack([genre_flags(items, self.item_ids_), title_genre_embeddings(items, self.item_ids_, self.cache_dir)])
        blocks = content_blocks(items, self.item_ids_, text_cols=self.text_cols or [], image_col=self.image_col,
                                cache_dir=self.cache_dir)
        if not self.with_year:
            del blocks["year"]
        return np.hstack(list(blocks.values()))

    def _fit(self, interactions, items, users) -> None:
        super()._fit(interactions, items, users)
        content = self._content(items)
        counts = np.asarray((self.user_items_ > 0).sum(axis=0)).ravel()
        warm, cold = np.flatnonzero(counts > 0), np.flatnonzero(counts == 0)
        weights = self.item_weights_.numpy()
        mapping = ridge_map(content[warm], weights[:, warm].T, self.content_l2)
        weights[:, cold] = (content[cold] @ mapping).T.astype(np.float32)
        self.item_weights_ = torch.from_numpy(weights)


class ImplicitALS(RecommenderBase):
    """implicit's AlternatingLeastSquares (CPU)."""

    def __init__(self, *, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0,
                 iterations: int = 15, seed: int = 0) -> None:
        self.factors, self.regularization, self.alpha, self.iterations, self.seed = factors, regularization, alpha, iterations, seed

    def _fit(self, interactions, items, users) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                        iterations=self.iterations, random_state=self.seed)
        model.fit(sp.csr_matrix((self.user_items_ > 0).astype(np.float32)), show_progress=False)
        self.user_factors_ = torch.from_numpy(np.asarray(model.user_factors))
        self.item_factors_ = torch.from_numpy(np.asarray(model.item_factors))

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        return self.user_factors_[torch.from_numpy(np.asarray(user_index))] @ self.item_factors_.T


class ImplicitItemKNN(RecommenderBase):
    """implicit's cosine item–item nearest neighbours."""

    def __init__(self, *, neighbors: int = 100) -> None:
        self.neighbors = neighbors

    def _fit(self, interactions, items, users) -> None:
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=self.neighbors)
        model.fit(sp.csr_matrix((self.user_items_ > 0).astype(np.float32)), show_progress=False)
        self.similarity_ = sp.csr_matrix(model.similarity)

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        history = sp.csr_matrix((self.user_items_[np.asarray(user_index)] > 0).astype(np.float32))
        return torch.from_numpy((history @ self.similarity_).toarray().astype(np.float32))


class LightFMWarp(RecommenderBase):
    """LightFM with the WARP loss; item features = identity + genre flags (+ optional dense blocks).

    With ``text_cols`` / ``image_col`` set, each of hybridrec's embedding blocks is added as dense
    item features, reduced to its top ``pca_dims`` principal components (LightFM's cost grows with
    the non-zeros per item: the full 384/1280-d blocks take about ten minutes per fit).
    """

    def __init__(self, *, components: int = 64, epochs: int = 30, seed: int = 0, dense_content: bool = False,
                 cache_dir: str = "runs/feature-cache", text_cols: list[str] | None = None,
                 image_col: str | None = None, pca_dims: int = 32) -> None:
        self.components, self.epochs, self.seed = components, epochs, seed
        self.dense_content, self.cache_dir = dense_content, cache_dir
        self.text_cols, self.image_col, self.pca_dims = text_cols, image_col, pca_dims

    def _fit(self, interactions, items, users) -> None:
        from lightfm import LightFM

        n_items = len(self.item_ids_)
        blocks = [sp.identity(n_items, format="csr", dtype=np.float32), sp.csr_matrix(genre_flags(items, self.item_ids_))]
        if self.dense_content:
            blocks.append(sp.csr_matrix(title_genre_embeddings(items, self.item_ids_, self.cache_dir)))
        if self.text_cols or self.image_col:
            content = content_blocks(items, self.item_ids_, text_cols=self.text_cols or [], image_col=self.image_col,
                                     cache_dir=self.cache_dir)
            for name, block in content.items():
                if name == "year":
                    blocks.append(sp.csr_matrix(block))
                elif name != "genres":
                    blocks.append(sp.csr_matrix(principal_components(block, self.pca_dims)))
        self.item_features_ = sp.hstack(blocks).tocsr()
        model = LightFM(no_components=self.components, loss="warp", random_state=self.seed)
        model.fit(sp.coo_matrix((self.user_items_ > 0).astype(np.float32)), item_features=self.item_features_,
                  epochs=self.epochs, num_threads=2)
        item_bias, item_embedding = model.get_item_representations(self.item_features_)
        user_bias, user_embedding = model.get_user_representations()
        self.item_embedding_ = torch.from_numpy(np.asarray(item_embedding, dtype=np.float32))
        self.item_bias_ = torch.from_numpy(np.asarray(item_bias, dtype=np.float32))
        self.user_embedding_ = torch.from_numpy(np.asarray(user_embedding, dtype=np.float32))

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        users = self.user_embedding_[torch.from_numpy(np.asarray(user_index))]
        return users @ self.item_embedding_.T + self.item_bias_


def principal_components(block: np.ndarray, dims: int) -> np.ndarray:
    """``[n, dims]`` projection of the centred rows on their top principal directions, scaled to
    unit mean row norm (absent, all-zero rows stay zero)."""
    present = np.abs(block).sum(1) > 0
    centred = np.where(present[:, None], block - block[present].mean(0), 0.0)
    _, _, directions = np.linalg.svd(centred[present], full_matrices=False)
    projected = centred @ directions[:dims].T
    scale = np.linalg.norm(projected[present], axis=1).mean()
    return (projected / max(scale, 1e-12)).astype(np.float32)


class ContentKNN(RecommenderBase):
    """Content k-nearest-neighbours: an item's score is its mean cosine similarity to the user's
    history on the concatenated, per-block L2-normalised content (genres and embeddings)."""

    def __init__(self, *, text_cols: list[str] | None = None, image_col: str | None = None,
                 cache_dir: str = "runs/feature-cache") -> None:
        self.text_cols, self.image_col, self.cache_dir = text_cols, image_col, cache_dir

    def _fit(self, interactions, items, users) -> None:
        blocks = content_blocks(items, self.item_ids_, text_cols=self.text_cols or [], image_col=self.image_col,
                                cache_dir=self.cache_dir)
        normalised = [b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12) for b in blocks.values()]
        content = np.hstack(normalised)
        content /= np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-12)
        self.item_content_ = torch.from_numpy(content.astype(np.float32))

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        history = torch.from_numpy((self.user_items_[np.asarray(user_index)] > 0).toarray().astype(np.float32))
        profile = history @ self.item_content_ / history.sum(1, keepdim=True).clamp(min=1)
        return profile @ self.item_content_.T


class PyGLightGCN(RecommenderBase):
    """``torch_geometric.nn.LightGCN`` trained with BPR (its ``recommendation_loss``), as in PyG's example."""

    def __init__(self, *, dim: int = 64, layers: int = 3, epochs: int = 100, batch_size: int = 1024,
                 lr: float = 1e-3, seed: int = 0) -> None:
        self.dim, self.layers, self.epochs, self.batch_size, self.lr, self.seed = dim, layers, epochs, batch_size, lr, seed

    def _fit(self, interactions, items, users) -> None:
        from torch_geometric.nn import LightGCN

        torch.manual_seed(self.seed)
        n_users, n_items = self.user_items_.shape
        coo = (self.user_items_ > 0).tocoo()
        users_t = torch.from_numpy(coo.row.astype(np.int64))
        items_t = torch.from_numpy(coo.col.astype(np.int64)) + n_users
        edge_index = torch.cat([torch.stack([users_t, items_t]), torch.stack([items_t, users_t])], dim=1)
        model = LightGCN(n_users + n_items, self.dim, self.layers)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        for _ in range(self.epochs):
            order = torch.randperm(len(users_t))
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                negatives = torch.randint(n_users, n_users + n_items, (len(batch),))
                label_index = torch.cat([torch.stack([users_t[batch], items_t[batch]]),
                                         torch.stack([users_t[batch], negatives])], dim=1)
                ranking = model(edge_index, label_index)
                positive, negative = ranking.chunk(2)
                loss = model.recommendation_loss(positive, negative, node_id=label_index.unique())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            embedding = model.get_embedding(edge_index)
        self.user_embedding_, self.item_embedding_ = embedding[:n_users], embedding[n_users:]

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        return self.user_embedding_[torch.from_numpy(np.asarray(user_index))] @ self.item_embedding_.T
