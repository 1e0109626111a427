"""The user–item–attribute graph as a PyG ``HeteroData``, with its id maps.

Node types: ``user``, ``item`` and one per attribute column (``genres``, ``occupation``,
``age_bucket``...). Edge types (each with its reverse, so message passing runs both ways):

* ``(user, interacts, item)`` / ``(item, rev_interacts, user)``: one edge per user–item pair,
  ``edge_weight`` = summed interaction weight, ``time`` = last timestamp (when known);
* ``(item, has, <attr>)`` / ``(<attr>, rev_has, item)`` and the same for users.

Catalog items without interactions and users without interactions stay as nodes (cold nodes).
The graph is built from whatever interactions it is given: build it from a training split and the
held-out edges are absent in both directions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from hybridrec.atomic import OutputKind, atomic_path
from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap, table_id_maps
from hybridrec.tables import ColumnRoles, RecDataset
from hybridrec.toml_config import dataclass_from_toml

logger = logging.getLogger(__name__)

INTERACTS = ("user", "interacts", "item")
REV_INTERACTS = ("item", "rev_interacts", "user")
#: A saved graph folder: the one kind of folder :meth:`RecGraph.save` replaces.
GRAPH_FOLDER = OutputKind("graph", marker="graph.json", key="node_types")


@dataclass(frozen=True)
class GraphConfig:
    """How tables become a graph.

    Attributes:
        numeric_buckets: quantile buckets per numeric column (e.g. price, age, year).
        item_attributes: build item -> attribute edges.
        user_attributes: build user -> attribute edges.
        weight_column: interaction column used as edge weight (1.0 when absent).
    """

    numeric_buckets: int = 5
    item_attributes: bool = True
    user_attributes: bool = True
    weight_column: str = "weight"

    def __post_init__(self) -> None:
        if self.numeric_buckets < 1:
            raise HybridRecError(f"GraphConfig.numeric_buckets must be >= 1, got {self.numeric_buckets}")

    @classmethod
    def from_toml(cls, path: str | Path, section: str = "graph") -> "GraphConfig":
        """Read the ``[graph]`` table of a TOML file; a bad file, key or value type is an error naming
        the file and key (see :mod:`hybridrec.toml_config`)."""
        return dataclass_from_toml(cls, path, section)


@dataclass
class RecGraph:
    """A ``HeteroData`` plus the id map of every node type and where each attribute came from.

    Attributes:
        data: the PyG graph (``data[node_type].num_nodes``, ``data[edge_type].edge_index: [2, E]``).
        id_maps: node type -> IdMap (users, items, attribute values).
        attribute_sources: attribute node type -> (``"item"`` or ``"user"``, source column).
    """

    data: HeteroData
    id_maps: dict[str, IdMap]
    attribute_sources: dict[str, tuple[str, str]]

    @property
    def num_users(self) -> int:
        return len(self.id_maps["user"])

    @property
    def num_items(self) -> int:
        return len(self.id_maps["item"])

    def node_index(self, node_type: str, external_ids) -> np.ndarray:
        """Indices of external ids of ``node_type`` (unknown ids raise, listing them)."""
        if node_type not in self.id_maps:
            raise HybridRecError(f"unknown node type {node_type!r}; known: {sorted(self.id_maps)}")
        return self.id_maps[node_type].to_index(external_ids)

    def attribute_offsets(self) -> tuple[dict[str, int], int]:
        """Where each attribute node type starts in the homogeneous numbering (users, then items,
        then the attribute types in ``attribute_sources`` order), and the total node count."""
        offsets, total = {}, self.num_users + self.num_items
        for node_type in self.attribute_sources:
            offsets[node_type] = total
            total += len(self.id_maps[node_type])
        return offsets, total

    def homogeneous_edges(self, user_items: sp.spmatrix | None = None,
                          attribute_edge_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Both directions of every user–item and owner–attribute edge in one node numbering.

        Users are ``0..U-1``, items ``U..U+I-1``, attribute nodes follow (:meth:`attribute_offsets`).

        Args:
            user_items: ``[U, I]`` interactions to use as the user–item edges (e.g. a training part
                without the validation hold-out); default: the graph's own, weight 1 each.
            attribute_edge_weight: weight of every owner–attribute edge (user–item edges weigh 1).

        Returns:
            ``edge_index`` ``[2, E]`` (int64) and ``edge_weight`` ``[E]`` (float32): the forward edges
            (user–item, then each attribute type) followed by the same edges reversed.
        """
        n_users = self.num_users
        offsets, _ = self.attribute_offsets()
        if user_items is None:
            rows, cols = self.data[INTERACTS].edge_index.numpy()
        else:
            coo = user_items.tocoo()
            rows, cols = coo.row, coo.col
        sources = [rows.astype(np.int64)]
        targets = [cols.astype(np.int64) + n_users]
        weights = [np.ones(len(rows), dtype=np.float32)]
        for node_type, (owner, _) in self.attribute_sources.items():
            src, dst = self.data[owner, "has", node_type].edge_index.numpy()
            sources.append(src + (0 if owner == "user" else n_users))
            targets.append(dst + offsets[node_type])
            weights.append(np.full(len(src), attribute_edge_weight, dtype=np.float32))
        src, dst, weight = np.concatenate(sources), np.concatenate(targets), np.concatenate(weights)
        edge_index = torch.from_numpy(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]))
        return edge_index, torch.from_numpy(np.concatenate([weight, weight]))

    # -- inspection --------------------------------------------------------------------------
    def summary(self) -> dict:
        """Node and edge counts per type, density, degree statistics, cold counts."""
        user_item = self.data[INTERACTS].edge_index
        user_degree = torch.bincount(user_item[0], minlength=self.num_users)
        item_degree = torch.bincount(user_item[1], minlength=self.num_items)

        def stats(degree: torch.Tensor) -> dict:
            values = degree.double()
            return {"min": int(values.min()), "median": float(values.median()), "mean": round(float(values.mean()), 3),
                    "max": int(values.max())} if len(values) else {}

        return {
            "nodes": {t: int(self.data[t].num_nodes) for t in self.data.node_types},
            "edges": {"__".join(t): int(self.data[t].edge_index.shape[1]) for t in self.data.edge_types},
            "user_item_edges": int(user_item.shape[1]),
            "density": float(user_item.shape[1] / max(self.num_users * self.num_items, 1)),
            "user_degree": stats(user_degree),
            "item_degree": stats(item_degree),
            "cold_items": int((item_degree == 0).sum()),
            "cold_users": int((user_degree == 0).sum()),
            "attribute_sources": {k: list(v) for k, v in self.attribute_sources.items()},
        }

    def to_networkx(self, center: tuple[str, object] | None = None, radius: int = 1) -> nx.Graph:
        """Undirected networkx view, whole or the ego graph within ``radius`` hops of ``center``.

        Nodes are ``(node_type, external_id)`` tuples with a ``type`` attribute; user–item edges carry
        ``weight``. Reverse edge types are folded into the undirected edges.

        Args:
            center: ``(node_type, external_id)`` of the ego node, or None for the whole graph.
            radius: hops around ``center``.
        """
        keep = None
        if center is not None:
            keep = self._k_hop(center, radius)
        graph = nx.Graph()
        for node_type, id_map in self.id_maps.items():
            indices = np.arange(len(id_map)) if keep is None else np.flatnonzero(keep[node_type])
            graph.add_nodes_from(((node_type, external_id), {"type": node_type})
                                 for external_id in id_map.to_ids(indices))
        for src_type, relation, dst_type in self.data.edge_types:
            if relation.startswith("rev_"):
                continue
            store = self.data[(src_type, relation, dst_type)]
            src, dst = store.edge_index.numpy()
            weight = store.edge_weight.numpy() if "edge_weight" in store else np.ones(len(src), dtype=np.float32)
            if keep is not None:
                mask = keep[src_type][src] & keep[dst_type][dst]
                src, dst, weight = src[mask], dst[mask], weight[mask]
            src_ids = self.id_maps[src_type].to_ids(src)
            dst_ids = self.id_maps[dst_type].to_ids(dst)
            graph.add_edges_from(((src_type, s), (dst_type, d), {"relation": relation, "weight": float(w)})
                                 for s, d, w in zip(src_ids, dst_ids, weight))
        return graph

    def _k_hop(self, center: tuple[str, object], radius: int) -> dict[str, np.ndarray]:
        """Boolean masks per node type of the nodes within ``radius`` hops of ``center``."""
        node_type, external_id = center
        reached = {t: np.zeros(len(m), dtype=bool) for t, m in self.id_maps.items()}
        reached[node_type][self.node_index(node_type, [external_id])[0]] = True
        frontier = {t: mask.copy() for t, mask in reached.items()}
        for _ in range(radius):
            step = {t: np.zeros(len(m), dtype=bool) for t, m in self.id_maps.items()}
            for src_type, _, dst_type in self.data.edge_types:
                src, dst = self.data[(src_type, _, dst_type)].edge_index.numpy()
                step[dst_type][dst[frontier[src_type][src]]] = True
            frontier = {t: step[t] & ~reached[t] for t in step}
            for t in reached:
                reached[t] |= step[t]
        return reached

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the graph (tensors, id maps, attribute sources) to folder ``path`` atomically.

        ``overwrite`` replaces a graph saved at ``path`` before; any other non-empty folder, or a
        file, is never replaced (:mod:`hybridrec.atomic`), and raises :class:`HybridRecError`.
        """
        tensors: dict[str, torch.Tensor] = {}
        for node_type in self.data.node_types:
            tensors[f"node/{node_type}/num_nodes"] = torch.tensor(self.data[node_type].num_nodes)
        for edge_type in self.data.edge_types:
            for key, value in self.data[edge_type].items():
                tensors[f"edge/{'__'.join(edge_type)}/{key}"] = value
        with atomic_path(path, kind=GRAPH_FOLDER, overwrite=overwrite) as tmp:
            tmp.mkdir()
            torch.save(tensors, tmp / "graph.pt")
            for node_type, id_map in self.id_maps.items():
                id_map.to_frame().to_parquet(tmp / f"ids_{node_type}.parquet", index=False)
            meta = {"node_types": list(self.id_maps), "attribute_sources": self.attribute_sources}
            (tmp / "graph.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "RecGraph":
        """Read a graph written by :meth:`save`."""
        path = Path(path)
        if not (path / "graph.json").is_file():
            raise HybridRecError(f"{path}: not a saved graph (no graph.json)")
        meta = json.loads((path / "graph.json").read_text(encoding="utf-8"))
        tensors = torch.load(path / "graph.pt", weights_only=True)
        data = HeteroData()
        for key, value in tensors.items():
            kind, name, attribute = key.split("/")
            if kind == "node":
                data[name].num_nodes = int(value)
            else:
                data[tuple(name.split("__"))][attribute] = value
        id_maps = {t: IdMap.from_frame(pd.read_parquet(path / f"ids_{t}.parquet"), kind=t) for t in meta["node_types"]}
        sources = {k: tuple(v) for k, v in meta["attribute_sources"].items()}
        return cls(data=data, id_maps=id_maps, attribute_sources=sources)


def _attribute_values(table: pd.DataFrame, roles: ColumnRoles,
                      config: GraphConfig) -> dict[str, tuple[str, pd.DataFrame]]:
    """Per attribute node name, its source column and a long table (row position, value label)."""
    out = {}
    positions = np.arange(len(table))
    for column in roles.categorical:
        values = table[column]
        present = values.notna() & (values.astype(str).str.strip() != "")
        out[column] = (column, pd.DataFrame({"row": positions[present.to_numpy()],
                                             "value": values[present].astype(str).to_numpy()}))
    for column in roles.multi:
        lists = table[column].apply(lambda v: list(v) if isinstance(v, (list, tuple, np.ndarray)) else
                                    ([] if v is None or (isinstance(v, float) and np.isnan(v)) else [v]))
        lengths = lists.str.len().to_numpy()
        flat = [str(v) for values in lists for v in values]
        out[column] = (column, pd.DataFrame({"row": np.repeat(positions, lengths), "value": flat}))
    for column in roles.numeric:
        values = pd.to_numeric(table[column], errors="coerce")
        present = values.notna().to_numpy()
        if not present.any():
            continue
        buckets = pd.qcut(values[present], q=config.numeric_buckets, duplicates="drop")
        labels = buckets.astype(str).to_numpy()
        out[f"{column}_bucket"] = (column, pd.DataFrame({"row": positions[present], "value": labels}))
    return out


def build_graph(dataset: RecDataset, config: GraphConfig | None = None,
                interactions: pd.DataFrame | None = None, id_maps: dict[str, IdMap] | None = None) -> RecGraph:
    """Build the user–item–attribute graph from canonical tables.

    Args:
        dataset: interactions + catalog + users with their column roles.
        config: bucket counts and which attribute edges to build.
        interactions: use these instead of ``dataset.interactions`` (e.g. a training split); the
            catalog and user table still define the nodes, so held-out items and users stay as
            cold nodes.
        id_maps: the ``"user"`` and ``"item"`` id order to use (an estimator's, so graph and model
            index alike); default :func:`~hybridrec.id_map.table_id_maps` of the tables.

    Returns:
        RecGraph whose ``id_maps['item']`` lists catalog items first (then log-only items) and
        ``id_maps['user']`` lists the user table first (then log-only users).
    """
    config = config or GraphConfig()
    interactions = dataset.interactions if interactions is None else interactions
    items = dataset.items
    users = dataset.users
    if id_maps is None:
        id_maps = table_id_maps(interactions, items, users)
    else:
        id_maps = {"user": id_maps["user"], "item": id_maps["item"]}
        for kind, table in (("user", users), ("item", items)):
            id_maps[kind].to_index(table[f"{kind}_id"].to_numpy())  # raises listing ids the map lacks

    data = HeteroData()
    data["user"].num_nodes = len(id_maps["user"])
    data["item"].num_nodes = len(id_maps["item"])

    rows = id_maps["user"].to_index(interactions["user_id"].to_numpy())
    cols = id_maps["item"].to_index(interactions["item_id"].to_numpy())
    weights = (interactions[config.weight_column].to_numpy(np.float64) if config.weight_column in interactions
               else np.ones(len(rows)))
    pairs = pd.DataFrame({"user": rows, "item": cols, "weight": weights})
    aggregations = {"weight": ("weight", "sum")}
    if "timestamp" in interactions.columns:
        pairs["time"] = interactions["timestamp"].to_numpy(np.int64)
        aggregations["time"] = ("time", "max")
    pairs = pairs.groupby(["user", "item"], sort=True).agg(**aggregations).reset_index()
    edge_index = torch.from_numpy(pairs[["user", "item"]].to_numpy(np.int64).T.copy())
    data[INTERACTS].edge_index = edge_index
    data[INTERACTS].edge_weight = torch.from_numpy(pairs["weight"].to_numpy(np.float32).copy())
    data[REV_INTERACTS].edge_index = edge_index.flip(0)
    data[REV_INTERACTS].edge_weight = data[INTERACTS].edge_weight
    if "time" in pairs:
        data[INTERACTS].time = torch.from_numpy(pairs["time"].to_numpy(np.int64).copy())
        data[REV_INTERACTS].time = data[INTERACTS].time

    attribute_sources: dict[str, tuple[str, str]] = {}
    owners = []
    if config.item_attributes:
        owners.append(("item", items, dataset.item_roles))
    if config.user_attributes:
        owners.append(("user", users, dataset.user_roles))
    attribute_columns = [(owner, column) for owner, table, roles in owners
                         for column in _attribute_values(table, roles, config)]
    clashing = {c for _, c in attribute_columns if sum(1 for _, other in attribute_columns if other == c) > 1}
    for owner, table, roles in owners:
        for column, (source_column, long_table) in _attribute_values(table, roles, config).items():
            node_type = f"{owner}_{column}" if column in clashing or column in ("user", "item") else column
            values = pd.Index(pd.unique(long_table["value"]))
            values = values.sort_values() if not column.endswith("_bucket") else values
            if column.endswith("_bucket"):
                order = pd.Series(values).str.extract(r"\(?\[?(-?[0-9.e+]+)")[0].astype(float).argsort().to_numpy()
                values = values[order]
            id_maps[node_type] = IdMap(values, kind=node_type)
            attribute_sources[node_type] = (owner, source_column)
            data[node_type].num_nodes = len(values)
            owner_index = id_maps[owner].to_index(table[f"{owner}_id"].to_numpy()[long_table["row"].to_numpy()])
            value_index = id_maps[node_type].to_index(long_table["value"].to_numpy())
            pair_index = torch.from_numpy(np.unique(np.stack([owner_index, value_index]), axis=1))
            data[(owner, "has", node_type)].edge_index = pair_index
            data[(node_type, "rev_has", owner)].edge_index = pair_index.flip(0)
    data.validate(raise_on_error=True)
    return RecGraph(data=data, id_maps=id_maps, attribute_sources=attribute_sources)
