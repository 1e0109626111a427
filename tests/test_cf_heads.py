"""The two CF heads: dense EASE (float32, in place) and the sparse graph-filter head for large
catalogs, the size rule between them, and the sparse head's cold items, persistence and memory."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from evaluation.metrics import mean_recall_at_k
from evaluation.protocol import catalog_tables
from evaluation.splitters import SplitConfig, make_split
from hybridrec import HybridRecommender
from hybridrec.errors import HybridRecError
from hybridrec.models import ease
from hybridrec.models.cooccurrence import cooccurrence_blocks, normalized_interactions, pruned_cooccurrence
from hybridrec.models.graph_filter import GraphFilterHead


def test_recall(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    scores = np.array(scores[users], dtype=np.float32)
    scores[train[users].toarray() > 0] = -np.inf
    return mean_recall_at_k(scores, test[users].toarray() > 0, 20, denominator="relevant")


test_recall.__test__ = False  # a helper, not a test


def _reference_ease(matrix: sp.csr_matrix, l2: float) -> np.ndarray:
    """The textbook float64 EASE with the same degree scaling as :func:`ease.fit_ease`."""
    dense = matrix.toarray().astype(np.float64)
    item_count, user_count = dense.sum(0) + 1.0, np.maximum(dense.sum(1), 1.0)
    scaled = dense / user_count[:, None] ** 0.25 / item_count[None, :] ** 0.25
    gram = scaled.T @ scaled
    gram[np.diag_indices_from(gram)] += l2 * gram.diagonal().mean() / (dense * dense).sum(0).mean()
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def test_float32_ease_matches_float64_in_two_buffers(positives, monkeypatch):
    train, _ = positives
    reference = _reference_ease(train, 250.0)
    monkeypatch.setattr(ease, "BLOCK_ITEMS", 100)  # several blocks of the Gram and the inverse
    tracemalloc.start()
    weights = ease.fit_ease(train, 250.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert weights.dtype == np.float32
    assert np.abs(weights - reference).max() < 1e-4 * np.abs(reference).max()
    assert np.allclose(np.diag(weights), 0.0)
    # Two float32 items x items buffers plus per-block temporaries (the float64 inverse it replaces
    # held about four float64 ones: 8x this buffer). The factor overwrites the Gram buffer in place.
    assert peak < 2.8 * weights.nbytes


def test_ease_refuses_a_singular_gram():
    matrix = sp.csr_matrix(np.array([[1, 1], [1, 1]], dtype=np.float32))
    with pytest.raises(HybridRecError, match="positive definite"):
        ease.fit_ease(matrix, l2=-10.0, item_power=0.0, user_power=0.0)


def test_pruned_cooccurrence_keeps_the_strongest_entries_and_is_symmetric(positives, monkeypatch):
    train, _ = positives
    normalized, _ = normalized_interactions(train)
    full = (normalized.T @ normalized).toarray()
    monkeypatch.setattr("hybridrec.models.cooccurrence.GRAM_BLOCK_ITEMS", 300)  # several blocks
    pruned = pruned_cooccurrence(normalized, neighbors=20)
    assert (pruned != pruned.T).nnz == 0
    dense = pruned.toarray()
    for column in (0, 17, 500):
        strongest = np.sort(full[:, column])[-20:]
        assert np.allclose(np.sort(dense[:, column])[-20:][strongest > 0], strongest[strongest > 0], rtol=1e-5)
    assert np.all(dense[dense > 0] == full[dense > 0])
    assert pruned.nnz <= 2 * 20 * train.shape[1]


def test_cooccurrence_blocks_bound_their_entries_and_do_not_change_the_result(positives, monkeypatch):
    train, _ = positives
    normalized, _ = normalized_interactions(train)
    reference = pruned_cooccurrence(normalized, neighbors=20)
    monkeypatch.setattr("hybridrec.models.cooccurrence.GRAM_BLOCK_ENTRIES", 40_000)
    blocks = cooccurrence_blocks(normalized)
    assert blocks[0][0] == 0 and blocks[-1][1] == train.shape[1]
    assert all(left[1] == right[0] for left, right in zip(blocks, blocks[1:]))
    sizes = np.diff(sp.csc_matrix(normalized.T @ normalized).indptr)
    widths = np.array([stop - start for start, stop in blocks])
    entries = np.array([sizes[start:stop].sum() for start, stop in blocks])
    # Popular columns are dense: their blocks are narrow, and no wide block exceeds the budget.
    assert widths.min() < widths.max() and (entries[widths > 1] <= 40_000).all()
    assert (pruned_cooccurrence(normalized, neighbors=20) != reference).nnz == 0


def test_sparse_head_is_close_to_dense_ease_in_far_less_memory(positives):
    train, test = positives
    dense_weights = ease.fit_ease(train, 250.0)
    dense_recall = test_recall(np.asarray(train @ dense_weights), train, test)
    head = GraphFilterHead(neighbors=64, rank=64).fit(train)
    sparse_recall = test_recall(head.score(train).numpy(), train, test)
    popularity = np.asarray(train.sum(axis=0)).repeat(train.shape[0], axis=0)
    assert sparse_recall > 0.9 * dense_recall, (sparse_recall, dense_recall)
    assert sparse_recall > 1.5 * test_recall(popularity, train, test)
    sparse_bytes = sum(t.numel() * t.element_size() for t in head.state().values())
    assert sparse_bytes < dense_weights.nbytes / 3, (sparse_bytes, dense_weights.nbytes)


@pytest.mark.parametrize("sharpen", [0.0, 0.7])
def test_scores_of_some_columns_are_those_columns_of_the_full_scores(positives, sharpen):
    train, _ = positives
    head = GraphFilterHead(neighbors=64, rank=32, sharpen=sharpen).fit(train)
    rows, asked = train[:40], np.random.default_rng(0).choice(train.shape[1], 300, replace=False)
    some = head.score(rows, items=asked).numpy()
    assert some.shape == (40, 300)
    np.testing.assert_allclose(some, head.score(rows).numpy()[:, asked], rtol=1e-5, atol=1e-6)


def test_row_moments_in_blocks_are_those_of_the_dense_item_item_rows(positives, monkeypatch):
    train, _ = positives
    head = GraphFilterHead(neighbors=64, rank=32, alpha=0.5).fit(train)
    monkeypatch.setattr(GraphFilterHead, "ROW_MOMENT_BLOCK", 100)              # 17 blocks, the last partial
    sparse_sum, sparse_square, cross = head.row_moments()
    dense = head.cooccurrence_.toarray().astype(np.float64)                    # [n_items, n_items]
    coordinates = head.coordinates().astype(np.float64)                        # [n_items, rank]
    np.testing.assert_allclose(sparse_sum, dense.sum(1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sparse_square, (dense ** 2).sum(1), rtol=1e-9, atol=1e-12)
    expected_cross = 0.5 * np.einsum("ij,ij->i", dense @ coordinates, coordinates)
    np.testing.assert_allclose(cross, expected_cross, rtol=1e-4, atol=1e-6 * np.abs(expected_cross).max())


def test_sparse_head_is_seeded():
    matrix = sp.random(300, 200, density=0.05, random_state=0, format="csr")
    first, second = GraphFilterHead(rank=16, seed=3).fit(matrix), GraphFilterHead(rank=16, seed=3).fit(matrix)
    assert np.array_equal(first.left_, second.left_) and np.array_equal(first.right_, second.right_)


def test_sharpened_scores_are_the_blurred_scores_times_one_minus_beta_p(positives):
    train, _ = positives
    rows = train[:50]
    blurred = GraphFilterHead(neighbors=64, rank=32, alpha=0.5).fit(train)
    sharpened = GraphFilterHead(neighbors=64, rank=32, alpha=0.5, sharpen=0.7).fit(train)
    matrix = sharpened.cooccurrence_.toarray().astype(np.float64)
    expected = blurred.score(rows).numpy().astype(np.float64) @ (np.eye(len(matrix)) - 0.7 * matrix)
    np.testing.assert_allclose(sharpened.score(rows).numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # Per history item shares of a user's score sum to it (what explain() reports).
    history, asked = rows[3].indices, np.arange(0, train.shape[1], 7)
    shares = sharpened.contributions(history, asked)
    np.testing.assert_allclose(shares.sum(0), sharpened.score(rows[3]).numpy()[0, asked], rtol=1e-4, atol=1e-5)
    # Sharpening changes the ranking, not only the scale.
    assert not np.array_equal(np.argsort(-expected, 1)[:, :20], np.argsort(-blurred.score(rows).numpy(), 1)[:, :20])
    with pytest.raises(HybridRecError, match="sharpen"):
        GraphFilterHead(sharpen=-0.1)


def test_a_popularity_tilt_scales_each_items_scores_by_its_degree_to_the_gamma(positives):
    train, _ = positives
    rows = train[:50]
    plain = GraphFilterHead(neighbors=64, rank=32, alpha=0.5).fit(train)
    tilted = GraphFilterHead(neighbors=64, rank=32, alpha=0.5, tilt=0.2).fit(train)
    degree = np.asarray(train.astype(bool).sum(0)).ravel().astype(np.float64)
    expected = plain.score(rows).numpy() * np.maximum(degree, 1.0) ** 0.2
    np.testing.assert_allclose(tilted.score(rows).numpy(), expected, rtol=1e-5, atol=1e-7)
    asked = np.random.default_rng(1).choice(train.shape[1], 200, replace=False)
    np.testing.assert_allclose(tilted.score(rows, items=asked).numpy(), expected[:, asked], rtol=1e-5, atol=1e-7)
    # Popular items move up: the tilted top-20 holds items of a higher mean degree.
    seen = rows.toarray() > 0
    top = [np.argsort(-np.where(seen, -np.inf, s), 1)[:, :20] for s in (plain.score(rows).numpy(), expected)]
    assert degree[top[1]].mean() > degree[top[0]].mean()
    # Explanations still sum to the (tilted) score, and the tilt survives a save and load.
    history = rows[3].indices
    shares = tilted.contributions(history, asked)
    np.testing.assert_allclose(shares.sum(0), tilted.score(rows[3]).numpy()[0, asked], rtol=1e-4, atol=1e-6)
    restored = GraphFilterHead().load_state(tilted.state(), train.shape[1])
    assert restored.tilt == 0.2
    np.testing.assert_array_equal(restored.score(rows).numpy(), tilted.score(rows).numpy())
    with pytest.raises(HybridRecError, match="tilt"):
        GraphFilterHead(tilt=float("nan"))


@pytest.mark.parametrize(("cf_head", "max_ease_items", "expected"), [
    ("auto", 20000, "dense_ease"), ("auto", 1000, "sparse_graph_filter"),
    ("dense", 1000, "dense_ease"), ("sparse", 20000, "sparse_graph_filter")])
def test_size_rule_chooses_the_head_and_says_so(cf_head, max_ease_items, expected):
    model = HybridRecommender(cf_head=cf_head, max_ease_items=max_ease_items)
    assert model.resolved_cf_head(n_items=1682) == expected


def test_unknown_cf_head_is_refused(movielens):
    with pytest.raises(HybridRecError, match="cf_head"):
        HybridRecommender(cf_head="ALS", use_gnn=False).fit(movielens.interactions.head(500))


@pytest.fixture(scope="module")
def cold_split(movielens):
    split = make_split(movielens.interactions, SplitConfig(kind="cold-item", cold_share=0.2, test_ratio=0.0, seed=0,
                                                           min_rating=4.0, min_positives=5))
    items, users = catalog_tables(split, movielens.items, movielens.users)
    return split, items, users


class _Records(logging.Handler):
    """Collects the estimator's log records (module-scoped fixtures cannot use ``caplog``)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def sparse_fitted(cold_split, tmp_path_factory):
    split, items, users = cold_split
    model = HybridRecommender(use_gnn=False, cf_head="auto", max_ease_items=500, filter_neighbors=64,
                              filter_rank=64, progress=False, device="cpu",
                              feature_cache_dir=str(tmp_path_factory.mktemp("features")))
    logger, handler = logging.getLogger("hybridrec.recommender"), _Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        model.fit(split.train, items=items, users=users, item_text_cols=["title"], item_attr_cols=["genres"])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return model, handler.records


def test_the_chosen_head_is_logged_and_in_the_fit_summary(sparse_fitted):
    model, records = sparse_fitted
    assert model.fit_summary_["cf_head"] == "sparse_graph_filter"
    assert model.fit_summary_["peak_rss_mb"] > 0
    assert any("CF head: sparse_graph_filter" in record.getMessage() for record in records)
    assert model.item_weights_ is None and model.cf_filter_ is not None


def test_sparse_head_serves_cold_items_from_content(sparse_fitted, cold_split):
    model, _ = sparse_fitted
    split, _, _ = cold_split
    cold = np.setdiff1d(split.test["item_id"].unique(), split.train["item_id"].unique())
    users = split.test["user_id"].unique()[:300]
    ranked = model.recommend(users, k=20, candidates=cold)
    truth = split.test.loc[split.test["user_id"].isin(users)]
    hits = ranked.merge(truth[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"])
    recall = (hits.groupby("user_id").size() / truth.groupby("user_id")["item_id"].nunique()).reindex(users).fillna(0)
    # Random ranking of the cold items would give about 20 / len(cold).
    assert recall.mean() > 3 * 20 / len(cold), recall.mean()
    assert np.abs(model.cf_filter_.right_[:, model.item_ids_.to_index(cold)]).sum() > 0


def test_sparse_head_model_round_trips(sparse_fitted, tmp_path):
    model, _ = sparse_fitted
    users = model.user_ids_.ids[:20]
    loaded = HybridRecommender.load(model.save(tmp_path / "model"))
    assert loaded.resolved_cf_head() == "sparse_graph_filter"
    assert (loaded.filter_rank_, loaded.filter_alpha_, loaded.filter_sharpen_, loaded.filter_tilt_) == (
        model.filter_rank_, model.filter_alpha_, model.filter_sharpen_, model.filter_tilt_)
    assert model.recommend(users, k=10).equals(loaded.recommend(users, k=10))
    items = model.item_ids_.ids[:10]
    assert model.similar_items(items, k=5).equals(loaded.similar_items(items, k=5))


def test_sparse_head_gives_item_vectors_for_approximate_search(sparse_fitted):
    model, _ = sparse_fitted
    vectors = model.item_vectors()
    # The low-pass rank is chosen on validation among 64 x {0.5, 1, 2}.
    assert vectors.shape == (len(model.item_ids_), model.filter_rank_) and model.filter_rank_ in (32, 64, 128)
    assert torch.allclose(vectors.norm(dim=1)[model.item_popularity_ > 0], torch.tensor(1.0), atol=1e-4)


def test_approximate_similar_items_recall_against_exact(sparse_fitted, tmp_path):
    """faiss candidates from item_vectors(), re-ranked by item_similarity: most exact neighbours found."""
    from hybridrec.similarity_export import export_model_similar_items

    model, _ = sparse_fitted
    summary = export_model_similar_items(model, tmp_path / "similar.parquet", k=20, approx="faiss",
                                         recall_sample=300, progress=False)
    assert summary.method.endswith("+rerank")
    assert summary.recall_at_k > 0.9, summary.recall_at_k


def test_pair_similarity_equals_the_full_rows_gathered(sparse_fitted):
    model, _ = sparse_fitted
    query = np.array([0, 5, 17, 300, 1000])
    columns = np.random.default_rng(0).integers(0, len(model.item_ids_), size=(len(query), 40))
    columns[1, -5:] = -1
    columns[:, 0] = model.similar_item_candidates(query)[:, 0]
    full = model.item_similarity(query)
    pairs = model.item_similarity_pairs(query, columns)
    expected = torch.gather(full, 1, torch.from_numpy(np.maximum(columns, 0)))
    valid = torch.from_numpy(columns >= 0)
    assert torch.allclose(pairs[valid], expected[valid], atol=2e-3), (pairs - expected)[valid].abs().max()


def test_pair_similarity_with_the_gnn_equals_the_full_rows_gathered(cold_split, tmp_path_factory):
    split, items, users = cold_split
    model = HybridRecommender(cf_head="sparse", filter_neighbors=32, filter_rank=32, dim=16, epochs=2, eval_every=1,
                              progress=False, device="cpu", feature_cache_dir=str(tmp_path_factory.mktemp("f")))
    model.fit(split.train, items=items, users=users, item_attr_cols=["genres"])
    query = np.array([3, 40, 900])
    columns = np.random.default_rng(1).integers(0, len(model.item_ids_), size=(len(query), 30))
    expected = torch.gather(model.item_similarity(query), 1, torch.from_numpy(columns))
    assert torch.allclose(model.item_similarity_pairs(query, columns), expected, atol=2e-3)
    assert model.item_vectors().shape == (len(model.item_ids_), 16 + model.filter_rank_)


def test_model_candidates_are_the_strongest_co_occurring_items_up_to_neighbors(sparse_fitted):
    model, _ = sparse_fitted
    head = model.cf_filter_
    query = np.argsort(-head.item_degree_)[:20]  # popular items: symmetrised rows longer than `neighbors`
    every = head.neighbors_of(query)
    assert every.shape[1] > head.neighbors
    capped = model.similar_item_candidates(query)
    assert capped.shape[1] == head.neighbors
    np.testing.assert_array_equal(capped, every[:, :head.neighbors])
    strengths = np.asarray(head.cooccurrence_[np.repeat(query, capped.shape[1]), np.maximum(capped, 0).ravel()])
    strengths = strengths.reshape(capped.shape)
    valid = capped >= 0
    dropped = np.asarray(head.cooccurrence_[np.repeat(query, every.shape[1] - head.neighbors),
                                            np.maximum(every[:, head.neighbors:], 0).ravel()])
    dropped = np.where(every[:, head.neighbors:] >= 0, dropped.reshape(len(query), -1), -np.inf)
    assert (np.where(valid, strengths, np.inf).min(axis=1) >= dropped.max(axis=1)).all()


def test_model_candidates_do_not_depend_on_how_the_rows_are_chunked(sparse_fitted, monkeypatch):
    head = sparse_fitted[0].cf_filter_
    query = np.concatenate([np.argsort(-head.item_degree_)[:30], np.arange(0, len(head.item_degree_), 50)])
    whole = head.neighbors_of(query, limit=head.neighbors)
    longest = int(np.diff(head.cooccurrence_.indptr)[query].max())
    monkeypatch.setattr(GraphFilterHead, "NEIGHBOR_ENTRIES_PER_CHUNK", longest // 2)  # some rows alone, over it
    np.testing.assert_array_equal(head.neighbors_of(query, limit=head.neighbors), whole)
    np.testing.assert_array_equal(head.neighbors_of(query)[:, :head.neighbors], whole)
