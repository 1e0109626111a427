"""The data the GNN trainer trains on (:class:`GraphTrainingData`), and its fingerprint: what a
checkpoint records so that training resumes only on the data it was written for."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

#: Bump when :meth:`GraphTrainingData.fingerprint` changes what it covers.
FINGERPRINT_FORMAT = 1


def _array_bytes(value: torch.Tensor | np.ndarray) -> np.ndarray:
    """``value`` as a C-contiguous CPU numpy array (bfloat16 by its bit pattern)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.view(torch.int16)
        value = value.contiguous().numpy()
    return np.ascontiguousarray(value)


def _digest(arrays: list[torch.Tensor | np.ndarray]) -> str:
    """SHA-256 over each array's dtype, shape and bytes, in order: equal data, equal digest in every process."""
    digest = hashlib.sha256()
    for value in arrays:
        array = _array_bytes(value)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def _csr_arrays(matrix: sp.csr_matrix | None) -> list[np.ndarray]:
    """A CSR matrix in canonical form (sorted, duplicates summed) as fixed-dtype arrays."""
    if matrix is None:
        return [np.zeros(0, dtype=np.int64)]
    canonical = sp.csr_matrix(matrix, copy=True)
    canonical.sum_duplicates()
    return [np.asarray(canonical.shape, dtype=np.int64), canonical.indptr.astype(np.int64),
            canonical.indices.astype(np.int64), canonical.data.astype(np.float64)]


@dataclass
class GraphTrainingData:
    """Everything one training step needs, as tensors.

    Attributes:
        adjacency: normalised sparse adjacency ``[num_nodes, num_nodes]``.
        content: modality -> item content ``[num_items, d_m]``.
        present: modality -> ``[num_items]`` bool, whether the item has that modality.
        user_has_id: ``[num_users]`` bool, users with training interactions.
        item_has_id: ``[num_items]`` bool, items with training interactions.
        train: ``[num_users, num_items]`` training interactions (CSR).
        valid: ``[num_users, num_items]`` held-out validation positives (CSR), or None.
        edge_index, edge_weight: the edges ``adjacency`` was normalised from (``[2, E]`` with both
            directions, ``[E]``; kept on the CPU), in :class:`HybridGNN`'s node order ``[users |
            items | attributes]``; with them, training can take items' interaction edges out
            (``TrainConfig.cold_item_share``). None: no cold-item simulation.
    """

    adjacency: torch.Tensor
    content: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    user_has_id: torch.Tensor
    item_has_id: torch.Tensor
    train: sp.csr_matrix
    valid: sp.csr_matrix | None = None
    edge_index: torch.Tensor | None = None
    edge_weight: torch.Tensor | None = None

    def fingerprint(self) -> dict:
        """What this data is, for checking that a checkpoint was trained on it.

        Sizes (users, items, attribute nodes, training/validation interactions, graph edges),
        content dims per block, and two SHA-256 digests over the tensors' bytes: one of the
        training and validation interactions, the graph edges and weights (the normalised
        adjacency when no edges are given) and the ID masks; one of the content blocks and their
        presence masks. Deterministic (same data, same fingerprint in every process) and cheap
        (one pass over the bytes). Only numbers and strings, so it saves in a checkpoint.
        """
        num_users, num_items = self.train.shape
        if self.edge_index is not None:
            edges = [self.edge_index.to(torch.int64), self.edge_weight.to(torch.float32)]
            num_edges = int(self.edge_index.shape[1])
        elif self.adjacency.layout == torch.strided:
            edges, num_edges = [self.adjacency], int(torch.count_nonzero(self.adjacency))
        else:
            coo = self.adjacency.detach().cpu().to_sparse_coo().coalesce()
            edges, num_edges = [coo.indices(), coo.values()], int(coo.values().numel())
        interactions = [*_csr_arrays(self.train), *_csr_arrays(self.valid), *edges,
                        np.asarray(self.adjacency.shape, dtype=np.int64), self.user_has_id, self.item_has_id]
        content = []
        for name in sorted(self.content):
            content += [np.frombuffer(name.encode(), dtype=np.uint8), self.content[name], self.present[name]]
        return {
            "format": FINGERPRINT_FORMAT, "num_users": int(num_users), "num_items": int(num_items),
            "num_attribute_nodes": int(self.adjacency.shape[0]) - int(num_users) - int(num_items),
            "train_interactions": int(self.train.nnz),
            "valid_interactions": 0 if self.valid is None else int(self.valid.nnz), "edges": num_edges,
            "content_dims": {name: int(block.shape[1]) for name, block in sorted(self.content.items())},
            "interactions_sha256": _digest(interactions), "content_sha256": _digest(content),
        }

    def graph_edges(self) -> int:
        """Undirected edges of the training graph (interactions and attribute edges), for
        ``TrainConfig.full_graph_max_edges``."""
        directed = self.edge_index.shape[1] if self.edge_index is not None else self.adjacency._nnz()
        return int(directed) // 2

    def to(self, device: torch.device) -> "GraphTrainingData":
        return dataclasses.replace(
            self, adjacency=self.adjacency.to(device),
            content={k: v.to(device) for k, v in self.content.items()},
            present={k: v.to(device) for k, v in self.present.items()},
            user_has_id=self.user_has_id.to(device), item_has_id=self.item_has_id.to(device))
