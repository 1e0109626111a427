"""The two-stage approximate export (``--approx faiss`` of a model with its own similarity) when the
model scores candidate pairs (``item_similarity_pairs``) and proposes its own candidates
(``similar_item_candidates``): on a co-occurrence model fitted to a MovieLens-100K slice."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybridrec.ann_index import (RERANK_CANDIDATES_PER_RESULT, AnnConfig, approximate_top_k_blocks,
                                 distinct_candidates, merged_candidate_blocks, recall_at_k, reranked_top_k_blocks)
from hybridrec.errors import HybridRecError
from hybridrec.recommender_base import RecommenderBase
from hybridrec.similarity_export import export_model_similar_items, export_similar_items
from hybridrec.topk_table import merge_shards, read_table, read_table_metadata

faiss = pytest.importorskip("faiss")

K = 10
#: Strongest co-occurrences kept per item: the model's own candidates.
NEIGHBOURS_KEPT = 30


class CooccurrenceRecommender(RecommenderBase):
    """Similarity = the item's pruned cosine co-occurrence row plus the cosine of its item vectors,
    a random projection of the full co-occurrence (so the vectors alone place neighbours roughly).

    Learned: ``neighbours_`` (CSR ``[n_items, n_items]``, the ``NEIGHBOURS_KEPT`` strongest cosine
    co-occurrences of each item), ``vectors_`` (``[n_items, n_dims]`` float32).
    """

    similarity_is_vector_cosine = False

    def __init__(self, *, n_dims: int = 8, seed: int = 0) -> None:
        self.n_dims = n_dims
        self.seed = seed

    def _fit(self, interactions, items, users, **fit_options) -> None:
        seen = (self.user_items_ > 0).astype(np.float64)
        counts = (seen.T @ seen).toarray()
        np.fill_diagonal(counts, 0.0)
        degree = np.sqrt(np.maximum(np.asarray(seen.sum(axis=0)).ravel(), 1.0))
        cosine = counts / degree[:, None] / degree[None, :]
        strongest = np.argsort(-cosine, axis=1, kind="stable")[:, :NEIGHBOURS_KEPT]
        kept = np.zeros_like(cosine)
        np.put_along_axis(kept, strongest, np.take_along_axis(cosine, strongest, axis=1), axis=1)
        self.neighbours_ = sp.csr_matrix(kept)
        projection = np.random.default_rng(self.seed).standard_normal((len(cosine), self.n_dims))
        self.vectors_ = (cosine @ projection).astype(np.float32)

    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        rows = self.user_items_[np.asarray(user_index)] @ self.neighbours_
        return torch.from_numpy(rows.toarray().astype(np.float32))

    def _unit_vectors(self) -> np.ndarray:
        vectors = self.vectors_.astype(np.float64)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def item_vectors(self) -> torch.Tensor:
        return torch.from_numpy(self.vectors_)

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """``[b]`` -> ``[b, n_items]``: pruned co-occurrence row plus vector cosine."""
        unit = self._unit_vectors()
        item_index = np.asarray(item_index, dtype=np.int64)
        rows = self.neighbours_[item_index].toarray() + unit[item_index] @ unit.T
        return torch.from_numpy(rows.astype(np.float32))

    def item_similarity_pairs(self, item_index: np.ndarray, columns: np.ndarray) -> torch.Tensor:
        """``[b]``, ``[b, c]`` -> ``[b, c]``: :meth:`item_similarity` at ``columns`` (0 where -1)."""
        unit = self._unit_vectors()
        item_index, columns = np.asarray(item_index, dtype=np.int64), np.asarray(columns, dtype=np.int64)
        safe = np.maximum(columns, 0)
        queries = np.repeat(item_index, columns.shape[1])
        cooccurrence = np.asarray(self.neighbours_[queries, safe.ravel()]).reshape(columns.shape)
        cosine = np.einsum("bd,bcd->bc", unit[item_index], unit[safe])
        return torch.from_numpy(np.where(columns >= 0, cooccurrence + cosine, 0.0).astype(np.float32))

    def similar_item_candidates(self, item_index: np.ndarray) -> np.ndarray:
        """``[b]`` -> ``[b, NEIGHBOURS_KEPT]``: the nonzeros of each pruned co-occurrence row, -1 padded."""
        rows = self.neighbours_[np.asarray(item_index, dtype=np.int64)]
        out = np.full((rows.shape[0], NEIGHBOURS_KEPT), -1, dtype=np.int64)
        for row in range(rows.shape[0]):
            found = rows.indices[rows.indptr[row]:rows.indptr[row + 1]]
            out[row, :len(found)] = found
        return out


class VectorCandidatesOnly(CooccurrenceRecommender):
    """The same model without its own candidates (the base class's declaration, so no capability)."""

    similar_item_candidates = RecommenderBase.similar_item_candidates


class FullRowsOnly(CooccurrenceRecommender):
    """The same model without pair scores: the re-rank gathers from full rows, as before."""

    item_similarity_pairs = RecommenderBase.item_similarity_pairs


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """One faiss thread: HNSW builds identically every time (and the machine is shared)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def interactions(movielens):
    """Ratings of 4 or 5 on the items with ids up to 800."""
    table = movielens.interactions
    return table[(table["rating"] >= 4) & (table["item_id"] <= 800)].reset_index(drop=True)


@pytest.fixture(scope="module")
def model(interactions) -> CooccurrenceRecommender:
    return CooccurrenceRecommender().fit(interactions)


def fitted_as(model_class, interactions):
    return model_class().fit(interactions)


def as_matrix(table) -> np.ndarray:
    """``[n_queries, k]`` similar-item ids from a long table, ``-1`` padded, queries in id order."""
    table = table.sort_values(["item_id", "rank"])
    rows = [group.to_numpy() for _, group in table.groupby("item_id")["similar_item_id"]]
    return np.stack([np.pad(row, (0, K - len(row)), constant_values=-1) for row in rows])


def export(model, path, **options):
    options = {"k": K, "approx": "faiss", "recall_sample": 0, "progress": False, "device": "cpu", **options}
    return export_model_similar_items(model, path, **options)


def test_the_capabilities_are_optional_and_declared_on_the_base():
    plain = RecommenderBase()
    for name in ("item_similarity_pairs", "similar_item_candidates"):
        assert not hasattr(plain, name)
        assert RecommenderBase.__dict__[name].__doc__
    assert hasattr(CooccurrenceRecommender(), "similar_item_candidates")
    assert not hasattr(VectorCandidatesOnly(), "similar_item_candidates")
    assert not hasattr(FullRowsOnly(), "item_similarity_pairs")


def test_pair_scores_equal_the_full_rows_gathered(model):
    last = len(model.item_ids_) - 1
    queries = np.array([0, 5, 17, 400])
    columns = np.array([[3, 1, -1], [0, last, 5], [-1, -1, -1], [2, 401, 17]])
    full = model.item_similarity(queries)
    pairs = model.item_similarity_pairs(queries, columns)
    valid = torch.from_numpy(columns >= 0)
    gathered = full.gather(1, torch.from_numpy(np.maximum(columns, 0)))
    torch.testing.assert_close(pairs[valid], gathered[valid])


def test_distinct_candidates_by_hand():
    candidates = np.array([[4, 2, 4, -1, 7, 0], [1, 1, 3, 3, -1, -1]])
    allowed = np.ones(8, dtype=bool)
    allowed[7] = False
    merged = distinct_candidates(candidates, np.array([0, 5]), allowed=allowed, exclude_self=True)
    np.testing.assert_array_equal(merged, [[2, 4], [1, 3]])
    kept_self = distinct_candidates(candidates, np.array([0, 5]), exclude_self=False)
    np.testing.assert_array_equal(kept_self, [[0, 2, 4, 7], [1, 3, -1, -1]])


def test_pair_path_equals_the_full_row_path_on_the_same_candidates(model):
    blocks, _ = approximate_top_k_blocks(model.item_vectors(), np.arange(len(model.item_ids_)),
                                         K * RERANK_CANDIDATES_PER_RESULT, config=AnnConfig(batch_size=300))
    candidates = list(merged_candidate_blocks(blocks, model.similar_item_candidates, len(model.item_ids_)))
    assert (candidates[0].result_index == -1).any()  # rows of different lengths: the -1 entries are exercised
    by_rows = list(reranked_top_k_blocks(iter(candidates), model.item_similarity, K))
    by_pairs = list(reranked_top_k_blocks(iter(candidates), None, K, score_pairs=model.item_similarity_pairs))
    np.testing.assert_array_equal(np.concatenate([b.result_index for b in by_pairs]),
                                  np.concatenate([b.result_index for b in by_rows]))
    np.testing.assert_allclose(np.concatenate([b.scores for b in by_pairs]),
                               np.concatenate([b.scores for b in by_rows]), atol=1e-5)


def test_pair_export_equals_the_full_row_export(model, interactions, tmp_path):
    pairs = export(model, tmp_path / "pairs.parquet")
    rows = export(fitted_as(FullRowsOnly, interactions), tmp_path / "rows.parquet")
    assert read_table_metadata(pairs.path)["stats"]["rerank_scores"] == "pairs"
    assert read_table_metadata(rows.path)["stats"]["rerank_scores"] == "full rows"
    by_pairs, by_rows = read_table(pairs.path), read_table(rows.path)
    assert by_pairs[["item_id", "similar_item_id", "rank"]].equals(by_rows[["item_id", "similar_item_id", "rank"]])
    np.testing.assert_allclose(by_pairs["score"], by_rows["score"], atol=1e-5)


def test_the_models_candidates_raise_recall_against_exact(model, interactions, tmp_path):
    n_items = len(model.item_ids_)
    exact = as_matrix(read_table(export(model, tmp_path / "exact.parquet", approx=None).path))
    vectors_only = export(fitted_as(VectorCandidatesOnly, interactions), tmp_path / "vectors.parquet",
                          recall_sample=n_items)
    both = export(model, tmp_path / "both.parquet", recall_sample=n_items)
    assert vectors_only.method == "faiss-hnsw+rerank"
    assert both.method == "faiss-hnsw+model-candidates+rerank"
    measured_vectors_only = recall_at_k(as_matrix(read_table(vectors_only.path)), exact)
    measured_both = recall_at_k(as_matrix(read_table(both.path)), exact)
    print(f"recall@{K} against exact: faiss candidates {measured_vectors_only:.4f}, "
          f"plus the model's {measured_both:.4f}")
    assert measured_both > measured_vectors_only + 0.05
    # The recall the export reports (here sampled over every query) is that of what it wrote.
    assert both.recall_at_k == pytest.approx(measured_both, abs=1e-9)
    assert vectors_only.recall_at_k == pytest.approx(measured_vectors_only, abs=1e-9)


def test_the_bulk_export_never_scores_a_full_row(model, tmp_path, monkeypatch):
    full_row_queries: list[np.ndarray] = []
    full_rows = model.item_similarity

    def spy(item_index):
        full_row_queries.append(np.asarray(item_index).copy())
        return full_rows(item_index)

    monkeypatch.setattr(model, "item_similarity", spy)
    summary = export(model, tmp_path / "no_sample.parquet", recall_sample=0)
    assert summary.n_rows > 0 and full_row_queries == []
    summary = export(model, tmp_path / "sampled.parquet", recall_sample=50)
    scored = np.concatenate(full_row_queries)
    assert len(scored) == 50 and len(np.unique(scored)) == 50  # only the recall sample, once each
    assert summary.recall_at_k is not None


def test_shards_give_the_full_table(model, tmp_path):
    whole = read_table(export(model, tmp_path / "whole.parquet").path)
    shards = [export(model, tmp_path / f"shard{i}.parquet", shard=f"{i}/3").path for i in range(3)]
    merged = read_table(merge_shards(shards, tmp_path / "merged.parquet").path)
    assert merged.equals(whole)


def test_min_score_drops_only_lower_scores(model, tmp_path):
    whole = read_table(export(model, tmp_path / "whole.parquet").path)
    threshold = float(whole["score"].median())
    kept = read_table(export(model, tmp_path / "kept.parquet", min_score=threshold).path)
    assert (kept["score"] >= threshold).all()
    expected = whole[whole["score"] >= threshold].reset_index(drop=True)
    assert kept[["item_id", "similar_item_id", "rank"]].equals(expected[["item_id", "similar_item_id", "rank"]])


def test_candidate_ids_and_include_self_bound_the_models_candidates(model, tmp_path):
    ids = model.item_ids_.ids
    allowed = ids[::3]
    table = read_table(export(model, tmp_path / "allowed.parquet", candidate_ids=allowed).path)
    assert set(table["similar_item_id"]) <= set(allowed)
    assert not (table["item_id"] == table["similar_item_id"]).any()
    with_self = read_table(export(model, tmp_path / "self.parquet", include_self=True).path)
    assert (with_self["item_id"] == with_self["similar_item_id"]).any()


def test_bad_candidates_from_a_model_are_named(model, tmp_path, monkeypatch):
    monkeypatch.setattr(model, "similar_item_candidates",
                        lambda item_index: np.full((len(item_index), 2), len(model.item_ids_)))
    with pytest.raises(HybridRecError, match="similar_item_candidates returned item indices outside"):
        export(model, tmp_path / "bad.parquet")


def test_pair_options_need_the_two_stage_search(model, tmp_path):
    with pytest.raises(HybridRecError, match="two-stage"):
        export_similar_items(tmp_path / "t.parquet", model.item_ids_, score_block=model.item_similarity,
                             score_pairs=model.item_similarity_pairs, progress=False)
