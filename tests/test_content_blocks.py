"""The content vector at catalog scale: attribute flags kept sparse, capped to the most frequent
values, and a ridge map assembled block by block equal to the dense one."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from hybridrec.graph import build_graph
from hybridrec.item_content import ItemContent, attribute_incidence, content_attribute_columns
from hybridrec.models import content_map
from hybridrec.models.content_map import blocks_times, ridge_map, ridge_map_blocks


def _movielens_content(movielens):
    graph = build_graph(movielens)
    incidence = attribute_incidence(graph)
    rng = np.random.default_rng(0)
    text = rng.normal(size=(graph.num_items, 24)).astype(np.float32)
    content = ItemContent(blocks={"attributes": incidence, "text:title": text},
                          present={"attributes": incidence.getnnz(axis=1) > 0, "text:title": np.ones(len(text), bool)})
    return graph, incidence, content


def test_attribute_incidence_is_sparse_and_matches_the_graph(movielens):
    graph, incidence, _ = _movielens_content(movielens)
    assert sp.issparse(incidence) and incidence.shape[0] == graph.num_items == 1682
    genres = movielens.items.set_index("item_id")["genres"]
    toy_story = graph.id_maps["item"].to_index([1])[0]
    assert incidence[toy_story].nnz >= len(str(genres.loc[1]).split("|"))


def test_the_content_vector_keeps_the_most_frequent_attribute_values(movielens, caplog):
    _, incidence, _ = _movielens_content(movielens)
    assert np.array_equal(content_attribute_columns(incidence), np.arange(incidence.shape[1]))
    with caplog.at_level(logging.INFO, logger="hybridrec.item_content"):
        kept = content_attribute_columns(incidence, max_values=10)
    counts = np.asarray((incidence != 0).sum(axis=0)).ravel()
    assert len(kept) == 10 and np.all(np.diff(kept) > 0)
    assert counts[kept].min() >= np.delete(counts, kept).max()
    assert f"the 10 most frequent of {incidence.shape[1]} item attribute values" in caplog.text


def test_weighted_rows_equal_the_dense_matrix_rows(movielens):
    _, _, content = _movielens_content(movielens)
    weights = {"attributes": 0.5, "text:title": 2.0}
    rows = np.array([5, 0, 900, 17])
    np.testing.assert_array_equal(content.matrix(weights, rows), content.matrix(weights)[rows])
    blocks = content.weighted_blocks(weights, rows)
    assert sp.issparse(blocks[0]) and not sp.issparse(blocks[1])


def test_blockwise_ridge_equals_the_dense_ridge(movielens, monkeypatch):
    _, _, content = _movielens_content(movielens)
    weights = {"attributes": 0.5}
    warm = np.arange(0, 1682, 2)
    targets = np.random.default_rng(1).normal(size=(len(warm), 8))
    monkeypatch.setattr(content_map, "RIDGE_ROW_CHUNK", 100)  # several chunks
    dense = ridge_map(content.matrix(weights, warm), targets, 3.0)
    blockwise = ridge_map_blocks(content.weighted_blocks(weights, warm), targets, 3.0)
    np.testing.assert_allclose(blockwise, dense, rtol=1e-8, atol=1e-10)
    cold = np.arange(1, 1682, 2)
    np.testing.assert_allclose(blocks_times(content.weighted_blocks(weights, cold), blockwise),
                               content.matrix(weights, cold) @ blockwise, rtol=1e-5, atol=1e-6)
