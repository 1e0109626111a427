"""Blockwise exact top-k, table writers, shards and merge, on MovieLens-100K item vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
import torch
from sklearn.decomposition import TruncatedSVD

from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap
from hybridrec.similarity_export import export_similar_items
from hybridrec.topk import (EmbeddingScorer, choose_block_size, exact_top_k, group_length_for, iter_top_k,
                           select_top_k)
from hybridrec.topk_table import (ShardSpec, TopKTableWriter, merge_shards, read_table, read_table_metadata,
                                  sidecar_path, table_schema)

K = 10
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def item_vectors(movielens) -> tuple[np.ndarray, IdMap]:
    """32-d TruncatedSVD item factors of the MovieLens-100K rating matrix, and the item id map."""
    interactions = movielens.interactions
    users = IdMap(np.sort(interactions["user_id"].unique()), kind="user")
    items = IdMap(np.sort(movielens.items["item_id"].unique()), kind="item")
    ratings = sp.csr_matrix((interactions["rating"].to_numpy(np.float32),
                             (users.to_index(interactions["user_id"]), items.to_index(interactions["item_id"]))),
                            shape=(len(users), len(items)))
    svd = TruncatedSVD(n_components=32, random_state=0).fit(ratings)
    return np.ascontiguousarray(svd.components_.T, dtype=np.float32), items


def reference_scores(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Brute-force ``[n, n]`` scores in float64, self pairs set to -inf."""
    vectors = vectors.astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    return scores


def assert_exact(reference: np.ndarray, scores: np.ndarray, neighbours: np.ndarray) -> None:
    """Same neighbours and scores as the reference; only results tied within the tolerance may swap."""
    k = neighbours.shape[1]
    top = -np.sort(-reference, axis=1)[:, :k + 1]
    np.testing.assert_allclose(scores, top[:, :k], atol=TOLERANCE)
    np.testing.assert_allclose(np.take_along_axis(reference, neighbours, axis=1), scores, atol=TOLERANCE)
    clear = reference > top[:, k - 1:k] + TOLERANCE  # in the top-k whatever the rounding
    for row in range(len(reference)):
        assert set(np.flatnonzero(clear[row])) <= set(neighbours[row].tolist())
    no_near_ties = (top[:, :-1] - top[:, 1:] > TOLERANCE).all(axis=1)
    expected = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(neighbours[no_near_ties], expected[no_near_ties])
    assert no_near_ties.mean() > 0.5


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_exact_top_k_matches_numpy_brute_force_on_movielens(item_vectors, metric):
    vectors, _ = item_vectors
    scores, neighbours = exact_top_k(vectors, K, metric=metric, memory_budget_bytes=1 << 20, device="cpu")
    assert_exact(reference_scores(vectors, metric), scores, neighbours)
    assert not (neighbours == np.arange(len(vectors))[:, None]).any()


def test_an_item_is_never_its_own_neighbour(item_vectors):
    vectors, _ = item_vectors
    duplicated = np.concatenate([vectors, vectors[:5]])  # exact copies score like the item itself
    _, neighbours = exact_top_k(duplicated, K, device="cpu")
    assert not (neighbours == np.arange(len(duplicated))[:, None]).any()
    assert neighbours[0, 0] == len(vectors)  # its copy is its best neighbour


def test_include_self_lets_the_item_be_its_own_best_neighbour(item_vectors):
    vectors, _ = item_vectors
    nonzero = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
    scores, neighbours = exact_top_k(vectors, K, exclude_self=False, query_index=nonzero, device="cpu")
    has_self = (neighbours == nonzero[:, None]).any(axis=1)
    assert has_self.mean() > 0.9
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=TOLERANCE)
    # Items rated by one single user have many exact copies, which may crowd the item itself out.
    np.testing.assert_allclose(scores[~has_self], 1.0, atol=TOLERANCE)


def test_block_size_does_not_change_results(item_vectors):
    vectors, _ = item_vectors
    scorer = EmbeddingScorer(vectors, device="cpu")
    queries = np.arange(len(vectors))
    one_block = next(iter_top_k(scorer, queries, K, block_size=len(vectors)))
    many = list(iter_top_k(scorer, queries, K, block_size=97))
    np.testing.assert_array_equal(np.concatenate([b.result_index for b in many]), one_block.result_index)


def test_candidates_are_the_only_neighbours(item_vectors):
    vectors, _ = item_vectors
    candidates = np.arange(0, len(vectors), 3)
    scores, neighbours = exact_top_k(vectors, K, candidate_index=candidates, device="cpu")
    assert np.isin(neighbours, candidates).all()
    reference = reference_scores(vectors, "cosine")
    reference[:, np.setdiff1d(np.arange(len(vectors)), candidates)] = -np.inf
    assert_exact(reference, scores, neighbours)


def test_min_score_drops_lower_scores_only(item_vectors):
    vectors, _ = item_vectors
    scores, neighbours = exact_top_k(vectors, K, min_score=0.5, device="cpu")
    full_scores, full_neighbours = exact_top_k(vectors, K, device="cpu")
    kept = neighbours >= 0
    assert (scores[kept] >= 0.5).all()
    np.testing.assert_array_equal(kept, full_scores >= 0.5)
    np.testing.assert_array_equal(neighbours[kept], full_neighbours[kept])


def test_ties_are_ordered_by_lower_index_and_filtered_columns_dropped():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0], [float("nan"), 1.0, 1.0, 3.0, -torch.inf]])
    values, columns = select_top_k(scores, 2)
    assert columns.tolist() == [[1, 2], [3, 1]]
    values, columns = select_top_k(scores, 5)
    assert columns.tolist() == [[1, 2, 3, 0, 4], [3, 1, 2, -1, -1]]


def test_two_stage_top_k_equals_plain_top_k_with_ties_nan_and_filtered_rows():
    generator = torch.Generator().manual_seed(0)
    k = 7
    group_length = group_length_for(4000, k)
    width = 4000 // group_length * group_length
    scores = torch.randint(0, 40, (32, width), generator=generator).float()  # many ties
    scores[0] = -torch.inf
    scores[1, 17] = float("nan")
    scores[2, : width - 3] = -torch.inf  # fewer than k candidates
    scores[3:16] = torch.randn(13, width, generator=generator)
    plain = select_top_k(scores, k)
    grouped = select_top_k(scores, k, group_length=group_length)
    np.testing.assert_array_equal(grouped[1], plain[1])
    np.testing.assert_array_equal(grouped[0], plain[0])


def test_two_stage_top_k_on_a_wide_catalog_matches_one_plain_top_k():
    vectors = np.random.default_rng(0).standard_normal((40_000, 8)).astype(np.float32)  # wide enough for the two-stage path
    vectors[7] = vectors[3]  # a tie with the query's own group
    queries = np.arange(0, 40_000, 150)
    scores, neighbours = exact_top_k(vectors, 5, metric="dot", query_index=queries, device="cpu")
    full = torch.from_numpy(vectors[queries]) @ torch.from_numpy(vectors).T
    full[torch.arange(len(queries)), torch.from_numpy(queries)] = -torch.inf
    expected_scores, expected = select_top_k(full, 5)
    np.testing.assert_array_equal(neighbours, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


def test_block_size_follows_the_memory_budget():
    assert choose_block_size(1000, 10_000, memory_budget_bytes=4000 * 25) == 25
    assert choose_block_size(10**9, 10, memory_budget_bytes=1) == 1
    assert choose_block_size(10, 7, memory_budget_bytes=1 << 30) == 7


def test_score_function_path_equals_embedding_path(item_vectors, tmp_path):
    vectors, items = item_vectors
    unit = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=1)
    by_vectors = export_similar_items(tmp_path / "v.parquet", items, embeddings=vectors, k=K, progress=False)
    by_function = export_similar_items(tmp_path / "f.parquet", items, k=K, progress=False,
                                       score_block=lambda index: unit[torch.from_numpy(index)] @ unit.T)
    left, right = read_table(by_vectors.path), read_table(by_function.path)
    pd.testing.assert_frame_equal(left[["item_id", "similar_item_id", "rank"]],
                                  right[["item_id", "similar_item_id", "rank"]])
    np.testing.assert_allclose(left["score"], right["score"], atol=TOLERANCE)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_union_of_shards_equals_the_full_table(item_vectors, tmp_path, suffix):
    vectors, items = item_vectors
    queries = items.ids[::2]
    full = export_similar_items(tmp_path / f"full{suffix}", items, embeddings=vectors, k=K, query_ids=queries,
                                progress=False)
    shard_paths = []
    for index in (2, 0, 1):  # any order
        path = tmp_path / f"part-{index}{suffix}"
        export_similar_items(path, items, embeddings=vectors, k=K, query_ids=queries, shard=f"{index}/3",
                             progress=False)
        shard_paths.append(path)
    merged = merge_shards(shard_paths, tmp_path / f"merged{suffix}", progress=False)
    assert merged.n_rows == full.n_rows == len(queries) * K
    expected = read_table(full.path)
    pd.testing.assert_frame_equal(read_table(merged.path), expected)
    pd.testing.assert_frame_equal(pd.concat([read_table(p) for p in sorted(shard_paths)], ignore_index=True), expected)


def test_shard_metadata_records_its_range(item_vectors, tmp_path):
    vectors, items = item_vectors
    export_similar_items(tmp_path / "s.parquet", items, embeddings=vectors, k=3, shard="1/4", progress=False)
    meta = read_table_metadata(tmp_path / "s.parquet")
    assert meta["shard"] == {"index": 1, "count": 4, "query_start": 420, "query_stop": 841}
    assert meta["settings"]["n_queries_total"] == 1682 and meta["settings"]["k"] == 3
    assert meta["stats"]["n_rows"] == (841 - 420) * 3


def test_merge_names_the_missing_and_the_overlapping_shard(item_vectors, tmp_path):
    vectors, items = item_vectors
    paths = {}
    for spec in ("0/3", "1/3", "2/3"):
        paths[spec] = tmp_path / f"p{spec[0]}.parquet"
        export_similar_items(paths[spec], items, embeddings=vectors, k=2, shard=spec, progress=False)
    with pytest.raises(HybridRecError, match=r"missing shard.*560\.\.1121.*\(shard 1/3\)"):
        merge_shards([paths["0/3"], paths["2/3"]], tmp_path / "m.parquet", progress=False)
    export_similar_items(tmp_path / "half.parquet", items, embeddings=vectors, k=2, shard="0/2", progress=False)
    with pytest.raises(HybridRecError, match=r"overlapping shards: .*half\.parquet .*overlaps .*p0\.parquet"):
        merge_shards([tmp_path / "half.parquet", *paths.values()], tmp_path / "m.parquet", progress=False)
    export_similar_items(tmp_path / "k3.parquet", items, embeddings=vectors, k=3, shard="1/3", progress=False)
    with pytest.raises(HybridRecError, match=r"k3\.parquet is not from the same export.*k is 3"):
        merge_shards([paths["0/3"], tmp_path / "k3.parquet", paths["2/3"]], tmp_path / "m.parquet", progress=False)
    assert not (tmp_path / "m.parquet").exists()


def test_shard_spec_is_checked():
    assert ShardSpec.parse("2/5").query_range(10) == (4, 6)
    with pytest.raises(HybridRecError, match="0..3"):
        ShardSpec.parse("4/4")
    with pytest.raises(HybridRecError, match="i/n"):
        ShardSpec.parse("first")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_failure_mid_write_leaves_no_file(tmp_path, suffix):
    destination = tmp_path / f"table{suffix}"
    schema = table_schema("item_id", "similar_item_id", pa.string(), pa.string())
    rows = pd.DataFrame({"item_id": ["a", "b"], "similar_item_id": ["b", "a"], "score": np.float32([0.5, 0.5]),
                         "rank": [1, 1]})
    with pytest.raises(RuntimeError, match="disk full"):
        with TopKTableWriter(destination, schema, {"settings": {}}, row_group_rows=1) as writer:
            writer.write(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_keeps_the_previous_table(item_vectors, tmp_path):
    vectors, items = item_vectors
    path = tmp_path / "t.csv"
    export_similar_items(path, items, embeddings=vectors, k=2, progress=False)
    before = path.read_bytes(), sidecar_path(path).read_bytes()

    def failing_scores(index):
        raise RuntimeError("scoring failed")

    with pytest.raises(RuntimeError, match="scoring failed"):
        export_similar_items(path, items, score_block=failing_scores, k=2, progress=False)
    assert (path.read_bytes(), sidecar_path(path).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.meta.json"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz"])
def test_round_trip_keeps_string_ids_and_types(tmp_path, suffix):
    items = IdMap(["x,1", "y", "z\"q", "w"], kind="item")  # CSV must quote these
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32)
    summary = export_similar_items(tmp_path / f"t{suffix}", items, embeddings=vectors, k=2, progress=False)
    table = read_table(summary.path)
    assert table.columns.tolist() == ["item_id", "similar_item_id", "score", "rank"]
    assert table["score"].dtype == np.float32 and table["rank"].dtype == np.int64
    assert table.iloc[0].tolist()[:2] == ["x,1", "y"]
    _, neighbours = exact_top_k(vectors, 2, device="cpu")
    assert table["similar_item_id"].tolist() == items.to_ids(neighbours.ravel()).tolist()
    np.testing.assert_allclose(table["score"].iloc[0], 0.9 / np.sqrt(0.82), rtol=1e-6)


def test_unknown_query_ids_are_named(item_vectors, tmp_path):
    vectors, items = item_vectors
    with pytest.raises(HybridRecError, match="unknown item id.*999999"):
        export_similar_items(tmp_path / "t.parquet", items, embeddings=vectors, query_ids=[1, 999999], progress=False)


def test_non_finite_embeddings_are_rejected():
    vectors = np.ones((4, 2), dtype=np.float32)
    vectors[2, 1] = np.nan
    with pytest.raises(HybridRecError, match=r"NaN/inf.*\[2\]"):
        EmbeddingScorer(vectors, device="cpu")


def test_recall_at_k_by_hand():
    from hybridrec.ann_index import recall_at_k

    exact = np.array([[1, 2, 3], [4, 5, -1], [-1, -1, -1]])
    approx = np.array([[3, 9, 1], [5, -1, -1], [7, 8, 9]])
    assert recall_at_k(approx, exact) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_faiss_search_finds_most_exact_neighbours(item_vectors, tmp_path):
    pytest.importorskip("faiss")
    from hybridrec.ann_index import AnnConfig

    vectors, items = item_vectors
    for kind in ("hnsw", "ivf"):
        summary = export_similar_items(tmp_path / f"{kind}.parquet", items, embeddings=vectors, k=K, approx="faiss",
                                       ann_config=AnnConfig(kind=kind), recall_sample=300, progress=False)
        table = read_table(summary.path)
        assert summary.recall_at_k > 0.9
        assert not (table["item_id"] == table["similar_item_id"]).any()
        assert read_table_metadata(summary.path)["settings"]["method"] == f"faiss-{kind}"



def test_fused_cosine_weights_each_modality_and_reweights_missing_images_when_told():
    from hybridrec.features.content_fusion import ContentWeights, fuse_content_features

    text = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    image = np.array([[3.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=np.float32)  # item 2 has no image
    fused = fuse_content_features(text=text, image=image, weights=ContentWeights(text=0.25, image=0.75),
                                  missing="zero")
    cosine = (fused @ fused.T).numpy()
    np.testing.assert_allclose(np.linalg.norm(fused.numpy(), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cosine[0, 1], 0.25 * 1 + 0.75 * 0, rtol=1e-6)  # weights sum to 1: plain mix
    np.testing.assert_allclose(cosine[0, 2], 0.25 * 0 / np.sqrt(0.25 * 1.0), atol=1e-7)
    np.testing.assert_allclose(cosine[2, 2], 1.0, rtol=1e-6)  # text alone carries the imageless item


def test_a_missing_image_is_imputed_from_the_nearest_items_on_text():
    from hybridrec.features.content_fusion import ContentWeights, fuse_content_features

    text = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [0.0, 0.0]], dtype=np.float32)
    image = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]], dtype=np.float32)  # 2 and 3: no photo
    fused = fuse_content_features(text=text, image=image, weights=ContentWeights(text=0.5, image=0.5),
                                  impute_neighbours=1, device="cpu").numpy()
    np.testing.assert_allclose(fused[2, 2:], fused[1, 2:], rtol=1e-6)  # the photo of its nearest item by text
    assert np.abs(fused[3]).sum() == 0  # no content at all: nothing to impute from


def test_attribute_one_hot_counts_list_cells_and_skips_missing_values():
    from hybridrec.features.content_fusion import one_hot_attributes

    items = pd.DataFrame({"colour": ["red", None, "blue"], "tags": [["a", "b"], [], ["b"]]})
    np.testing.assert_array_equal(one_hot_attributes(items, ["colour", "tags"]),
                                  [[0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1]])
