"""The user–item–attribute graph on real MovieLens-100K."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hybridrec.errors import HybridRecError
from hybridrec.graph import GraphConfig, RecGraph, build_graph


@pytest.fixture(scope="module")
def graph(movielens) -> RecGraph:
    return build_graph(movielens)


def test_movielens_counts(graph):
    summary = graph.summary()
    assert summary["nodes"]["user"] == 943
    assert summary["nodes"]["item"] == 1682
    assert summary["nodes"]["genres"] == 19
    assert summary["nodes"]["occupation"] == 21
    assert summary["user_item_edges"] == 100_000
    assert summary["cold_items"] == 0 and summary["cold_users"] == 0


def test_every_edge_type_has_its_reverse(graph):
    for src, relation, dst in graph.data.edge_types:
        reverse = (dst, relation[4:], src) if relation.startswith("rev_") else (dst, "rev_" + relation, src)
        assert torch.equal(graph.data[(src, relation, dst)].edge_index.flip(0), graph.data[reverse].edge_index)


def test_edge_weights_are_the_ratings(movielens, graph):
    row = movielens.interactions.iloc[123]
    user = graph.node_index("user", [row.user_id])[0]
    item = graph.node_index("item", [row.item_id])[0]
    store = graph.data["user", "interacts", "item"]
    match = (store.edge_index[0] == user) & (store.edge_index[1] == item)
    assert match.sum() == 1
    assert store.edge_weight[match].item() == pytest.approx(row.rating)


def test_item_genres_round_trip(movielens, graph):
    """Toy Story's genre edges lead back to its genres by external id."""
    toy_story = graph.node_index("item", [1])[0]
    edges = graph.data["item", "has", "genres"].edge_index
    genre_index = edges[1, edges[0] == toy_story].numpy()
    assert set(graph.id_maps["genres"].to_ids(genre_index)) == {"Animation", "Children's", "Comedy"}


def test_id_maps_round_trip(graph):
    ids = np.array([1, 50, 1682])
    assert list(graph.id_maps["item"].to_ids(graph.node_index("item", ids))) == list(ids)
    with pytest.raises(HybridRecError, match="unknown item id"):
        graph.node_index("item", [1, 99999])


def test_unknown_item_without_interactions_keeps_attributes(movielens):
    """Items held out of the log stay as cold nodes with their attribute edges; so do users."""
    interactions = movielens.interactions
    held_items = [1, 2, 3]
    held_users = [10, 11]
    train = interactions[~interactions.item_id.isin(held_items) & ~interactions.user_id.isin(held_users)]
    graph = build_graph(movielens, interactions=train)
    summary = graph.summary()
    assert summary["nodes"]["item"] == 1682 and summary["nodes"]["user"] == 943
    expected_cold_items = 1682 - train.item_id.nunique()  # the held items, plus any only the held users rated
    assert expected_cold_items >= 3
    assert summary["cold_items"] == expected_cold_items and summary["cold_users"] == 2
    edges = graph.data["user", "interacts", "item"].edge_index
    held_index = graph.node_index("item", held_items)
    assert not np.isin(edges[1].numpy(), held_index).any()
    assert not np.isin(graph.data["item", "rev_interacts", "user"].edge_index[0].numpy(), held_index).any()
    attribute_edges = graph.data["item", "has", "genres"].edge_index
    assert np.isin(held_index, attribute_edges[0].numpy()).all()
    user_edges = graph.data["user", "has", "occupation"].edge_index
    assert np.isin(graph.node_index("user", held_users), user_edges[0].numpy()).all()


def test_duplicate_events_merge_into_one_weighted_edge(movielens):
    extra = movielens.interactions.iloc[[0, 0]].assign(weight=np.float32(2.0))
    interactions = pd.concat([movielens.interactions, extra], ignore_index=True)
    graph = build_graph(movielens, interactions=interactions)
    assert graph.summary()["user_item_edges"] == 100_000
    first = movielens.interactions.iloc[0]
    store = graph.data["user", "interacts", "item"]
    match = (store.edge_index[0] == graph.node_index("user", [first.user_id])[0]) & \
            (store.edge_index[1] == graph.node_index("item", [first.item_id])[0])
    assert store.edge_weight[match].item() == pytest.approx(first.rating + 4.0)


def test_numeric_buckets_follow_config(movielens):
    graph = build_graph(movielens, GraphConfig(numeric_buckets=3))
    assert graph.summary()["nodes"]["age_bucket"] == 3
    assert graph.attribute_sources["age_bucket"] == ("user", "age")


def test_config_from_toml_rejects_unknown_keys(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[graph]\nnumeric_buckets = 4\n")
    assert GraphConfig.from_toml(good).numeric_buckets == 4
    bad = tmp_path / "bad.toml"
    bad.write_text("[graph]\nbuckets = 4\n")
    with pytest.raises(HybridRecError, match="unknown \\[graph\\] key"):
        GraphConfig.from_toml(bad)


def test_networkx_ego_graph(graph):
    ego = graph.to_networkx(center=("item", 1), radius=1)
    toy_story_raters = (graph.data["user", "interacts", "item"].edge_index[1] == graph.node_index("item", [1])[0]).sum()
    neighbours = list(ego.neighbors(("item", 1)))
    assert sum(1 for node_type, _ in neighbours if node_type == "user") == int(toy_story_raters)
    assert ("genres", "Animation") in neighbours
    assert ego.nodes[("item", 1)]["type"] == "item"


def test_networkx_whole_graph_counts(graph):
    whole = graph.to_networkx()
    assert whole.number_of_nodes() == sum(graph.summary()["nodes"].values())
    undirected_edges = sum(count for name, count in graph.summary()["edges"].items() if "__rev_" not in name)
    assert whole.number_of_edges() == undirected_edges


def test_save_load_round_trip(graph, tmp_path):
    graph.save(tmp_path / "graph")
    loaded = RecGraph.load(tmp_path / "graph")
    assert loaded.summary() == graph.summary()
    assert loaded.id_maps["occupation"] == graph.id_maps["occupation"]
    for edge_type in graph.data.edge_types:
        assert torch.equal(loaded.data[edge_type].edge_index, graph.data[edge_type].edge_index)


def test_load_rejects_non_graph_folder(tmp_path):
    with pytest.raises(HybridRecError, match="not a saved graph"):
        RecGraph.load(tmp_path)
