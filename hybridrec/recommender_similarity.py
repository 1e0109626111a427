"""Item–item similarity of the fitted hybrid: the z-scored GNN embedding cosine plus the CF
head's co-occurrence, over full rows (:meth:`HybridSimilarity.item_similarity`) or on candidate
pairs only (:meth:`HybridSimilarity.item_similarity_pairs`, for the two-stage export at catalog
sizes where an ``n_items``-long row per query is too dear), and the candidate vectors.

A mixin of :class:`hybridrec.recommender.HybridRecommender`, which sets ``item_ids_``,
``item_embeddings_`` (or None), ``item_weights_`` (the dense EASE head, or None) and
``cf_filter_`` (the sparse head, or None).
"""

from __future__ import annotations

import numpy as np
import torch

from hybridrec.errors import HybridRecError


def zscore_with_moments(values: torch.Tensor, row_sum: torch.Tensor, row_square_sum: torch.Tensor, n: int) -> torch.Tensor:
    """``values`` ``[b, c]`` standardised by rows of ``n`` entries with these sums and sums of squares
    ``[b]`` (float64): the same as :func:`zscore_rows` of the full rows, gathered."""
    mean = row_sum / n
    std = ((row_square_sum - n * mean ** 2) / max(n - 1, 1)).clamp(min=0.0).sqrt()
    mean, std = mean.float()[:, None], std.float()[:, None]
    return torch.where(std > 0, (values - mean) / std.clamp(min=1e-12), torch.zeros_like(values))


def zscore_rows(scores: torch.Tensor) -> torch.Tensor:
    """Standardise each row ``[b, n]``; constant rows become zeros."""
    mean = scores.mean(dim=1, keepdim=True)
    std = scores.std(dim=1, keepdim=True)
    return torch.where(std > 0, (scores - mean) / std.clamp(min=1e-12), torch.zeros_like(scores))



class HybridSimilarity:
    """Similarity methods of :class:`~hybridrec.recommender.HybridRecommender` (see the module docstring)."""

    #: ``similar_items`` blends embedding cosine with co-occurrence: the vectors only propose candidates.
    similarity_is_vector_cosine = False

    def item_vectors(self) -> torch.Tensor:
        """Candidate vectors ``[n_items, d]`` of an approximate ``similar_items`` search
        (``export-similar --approx faiss``), which :meth:`item_similarity` then re-ranks exactly: the
        L2-normalised GNN item embeddings, concatenated with the sparse head's low-rank item
        coordinates (normalised) when it has them, each part scaled by ``1/sqrt(parts)`` so the inner
        product is the mean of the parts' cosines.

        Raises:
            HybridRecError: for a model with neither (``use_gnn=False`` with the dense EASE head).
        """
        self._check_fitted()
        parts = []
        if self.item_embeddings_ is not None:
            parts.append(torch.nn.functional.normalize(self.item_embeddings_, dim=1))
        if getattr(self, "cf_filter_", None) is not None:
            parts.append(torch.nn.functional.normalize(self.cf_filter_.item_vectors(), dim=1))
        if not parts:
            raise HybridRecError("this HybridRecommender was fitted with use_gnn=False and the dense EASE head: it "
                                 "has no item vectors; export its similar items exactly (without --approx)")
        return torch.cat(parts, dim=1) / len(parts) ** 0.5

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        index = torch.from_numpy(np.asarray(item_index))
        similarity = torch.zeros(len(index), len(self.item_ids_))
        if self.item_embeddings_ is not None:
            normed = torch.nn.functional.normalize(self.item_embeddings_, dim=1)
            similarity = zscore_rows(normed[index] @ normed.T)
        if self.item_weights_ is not None:
            cooccurrence = (self.item_weights_[index] + self.item_weights_[:, index].T) / 2
            similarity = similarity + zscore_rows(cooccurrence)
        elif getattr(self, "cf_filter_", None) is not None:
            similarity = similarity + zscore_rows(self.cf_filter_.item_similarity(np.asarray(item_index)))
        return similarity

    #: Queries scored per step by :meth:`item_similarity_pairs` (bounds its ``[b, c, d]`` gathers).
    PAIR_BLOCK_QUERIES = 64

    def item_similarity_pairs(self, item_index: np.ndarray, columns: np.ndarray) -> torch.Tensor:
        """:meth:`item_similarity` at ``columns`` ``[b, c]`` (``-1``: none) only: ``[b, c]``.

        The z-scores use each full row's mean and standard deviation, computed from moment
        matrices of the embeddings and low-pass factors (the dense EASE head's rows are formed:
        that head only serves catalogs small enough), so a two-stage export never forms a
        ``[b, n_items]`` row for the GNN or the sparse head.
        """
        self._check_fitted()
        item_index, columns = np.asarray(item_index, dtype=np.int64), np.asarray(columns, dtype=np.int64)
        blocks = [self._similarity_pairs_block(item_index[start:start + self.PAIR_BLOCK_QUERIES],
                                               columns[start:start + self.PAIR_BLOCK_QUERIES])
                  for start in range(0, len(item_index), self.PAIR_BLOCK_QUERIES)]
        return torch.cat(blocks) if blocks else torch.zeros(0, columns.shape[1])

    def _similarity_pairs_block(self, item_index: np.ndarray, columns: np.ndarray) -> torch.Tensor:
        safe = torch.from_numpy(np.maximum(columns, 0))
        index = torch.from_numpy(item_index)
        similarity = torch.zeros(columns.shape)
        if self.item_embeddings_ is not None:
            normed = torch.nn.functional.normalize(self.item_embeddings_, dim=1)
            cached = getattr(self, "_embedding_moments", None)
            if cached is None or cached[0] is not self.item_embeddings_:  # refitted or reloaded: recompute
                cached = self._embedding_moments = (self.item_embeddings_, normed.double().sum(0),
                                                    normed.T.double() @ normed.double())
            _, total, gram = cached
            query = normed[index]
            values = torch.bmm(normed[safe], query[:, :, None])[..., 0]
            similarity = zscore_with_moments(values, query.double() @ total, ((query.double() @ gram) * query.double()).sum(1),
                                      len(normed))
        if self.item_weights_ is not None:
            rows = (self.item_weights_[index] + self.item_weights_[:, index].T) / 2
            similarity = similarity + torch.gather(zscore_rows(rows), 1, safe)
        elif getattr(self, "cf_filter_", None) is not None:
            values, mean, std = self.cf_filter_.similarity_pairs(item_index, columns)
            similarity = similarity + torch.where(std[:, None] > 0, (values - mean[:, None]) / std.clamp(min=1e-12)[:, None],
                                                  torch.zeros(()))
        return torch.where(torch.from_numpy(columns >= 0), similarity, torch.zeros(()))

    def similar_item_candidates(self, item_index: np.ndarray) -> np.ndarray:
        """``[b, m]`` extra two-stage candidates (``-1`` padded): the ``m <= neighbors`` items each
        query co-occurs with most strongly in the sparse head; an empty ``[b, 0]`` for the other heads."""
        self._check_fitted()
        if getattr(self, "cf_filter_", None) is None:
            return np.zeros((len(item_index), 0), dtype=np.int64)
        return self.cf_filter_.neighbors_of(item_index, limit=self.cf_filter_.neighbors)

