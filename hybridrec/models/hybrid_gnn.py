"""The graph part of the hybrid model: content-initialised LightGCN over users, items and attributes.

Node inputs (layer 0):

* items: an ID embedding (dropped at random while training, absent for cold items) plus a gated
  sum of per-modality projections of the item's content (text, image, ...); a modality an item
  lacks uses a learned "missing" vector, and the per-modality gates let training down-weight a
  modality that does not help;
* users: an ID embedding (likewise dropped, absent for cold users); their attributes reach them
  through user -> attribute edges;
* attribute nodes (genre, occupation, price bucket, ...): learned embeddings.

Propagation is LightGCN's light graph convolution (``torch_geometric.nn.LGConv`` with
``normalize=False`` over the symmetric-normalised sparse adjacency of the whole user–item–attribute
graph); the output is the mean of the layer outputs. Because that adjacency is symmetric, the
gradient of ``A @ x`` is ``A @ grad``: :class:`SymmetricPropagation` uses this and trains about 6x
faster on CPU than autograd through a sparse CSR product (which transposes ``A`` every step). The
tests check it against ``LGConv``.

For graphs too large to propagate in full every step, :meth:`HybridGNN.subgraph_inputs` and
:meth:`HybridGNN.propagate_subgraph` compute the same embeddings for the seed nodes of a sampled
subgraph (``LGConv`` along its directed edges); for catalogs too large to score in full,
:func:`sampled_softmax_loss` scores each (user, positive) pair against sampled candidates with
the logQ correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import LGConv
from torch_geometric.utils import to_torch_csr_tensor


def normalized_adjacency(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> Tensor:
    """Symmetric-normalised adjacency ``D^-1/2 A D^-1/2`` as a sparse CSR tensor.

    Args:
        edge_index: ``[2, E]`` with both directions present.
        edge_weight: ``[E]`` non-negative weights.
        num_nodes: total node count.

    Returns:
        ``[num_nodes, num_nodes]`` sparse CSR (float32).
    """
    values = normalized_edge_weight(edge_index, edge_weight, num_nodes)
    return to_torch_csr_tensor(edge_index, values, size=(num_nodes, num_nodes))


def normalized_edge_weight(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> Tensor:
    """The values of :func:`normalized_adjacency`: ``w_uv / sqrt(d_u d_v)`` per edge ``[E]``
    (weighted degrees ``d``; an edge of a node without weight gets 0)."""
    degree = torch.zeros(num_nodes).scatter_add_(0, edge_index[0], edge_weight)
    inv_sqrt = degree.clamp(min=1e-12).pow(-0.5)
    inv_sqrt[degree == 0] = 0.0
    return inv_sqrt[edge_index[0]] * edge_weight * inv_sqrt[edge_index[1]]


class SymmetricPropagation(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A`` ``[n, n]`` and dense ``x`` ``[n, d]``; backward ``A @ grad``."""

    @staticmethod
    def forward(ctx, adjacency: Tensor, x: Tensor) -> Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        return None, ctx.adjacency @ grad


def propagate(adjacency: Tensor, x: Tensor) -> Tensor:
    """One light graph convolution ``A @ x`` (``A`` symmetric-normalised, no self loops) -> ``[n, d]``."""
    return SymmetricPropagation.apply(adjacency, x)


class ModalityFusion(nn.Module):
    """Gated sum of per-modality linear projections, with a learned vector for missing inputs.

    Args:
        modality_dims: name -> input width of each content modality.
        out_dim: model dimension.
    """

    def __init__(self, modality_dims: dict[str, int], out_dim: int) -> None:
        super().__init__()
        self.names = list(modality_dims)
        self.projections = nn.ModuleDict({m: nn.Linear(d, out_dim, bias=False) for m, d in modality_dims.items()})
        self.missing = nn.Parameter(torch.empty(len(self.names), out_dim))
        self.gate_logits = nn.Parameter(torch.empty(len(self.names)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for projection in self.projections.values():
            nn.init.xavier_uniform_(projection.weight)
        nn.init.normal_(self.missing, std=0.01)
        nn.init.zeros_(self.gate_logits)

    @property
    def gates(self) -> Tensor:
        """Current modality weights ``[n_modalities]`` in (0, 2) (1.0 at initialisation)."""
        return 2.0 * torch.sigmoid(self.gate_logits)

    def forward(self, content: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        """``content[m]``: ``[n, d_m]``, ``present[m]``: ``[n]`` bool -> fused ``[n, out_dim]``."""
        fused = 0.0
        for position, name in enumerate(self.names):
            projected = self.projections[name](content[name])
            projected = torch.where(present[name].unsqueeze(1), projected, self.missing[position].expand_as(projected))
            fused = fused + self.gates[position] * projected
        return fused


class HybridGNN(nn.Module):
    """Content-initialised LightGCN over a homogeneous view ``[users | items | attributes]``.

    Args:
        num_users: user nodes (cold users included).
        num_items: item nodes (cold items included).
        num_attributes: attribute nodes of every kind, stacked.
        modality_dims: content modality name -> width (may be empty: IDs only).
        dim: embedding width.
        num_layers: propagation layers.
        id_dropout: probability of dropping a user's or item's ID embedding per training step, so
            the content/attribute path alone yields usable embeddings for cold nodes.
    """

    def __init__(self, num_users: int, num_items: int, num_attributes: int, modality_dims: dict[str, int],
                 dim: int = 64, num_layers: int = 2, id_dropout: float = 0.2) -> None:
        super().__init__()
        self.num_users, self.num_items, self.num_attributes = num_users, num_items, num_attributes
        self.dim, self.num_layers, self.id_dropout = dim, num_layers, id_dropout
        self.user_id = nn.Embedding(num_users, dim)
        self.item_id = nn.Embedding(num_items, dim)
        self.attribute = nn.Embedding(max(num_attributes, 1), dim)
        self.fusion = ModalityFusion(modality_dims, dim) if modality_dims else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for embedding in (self.user_id, self.item_id, self.attribute):
            nn.init.normal_(embedding.weight, std=0.1)
        if self.fusion is not None:
            self.fusion.reset_parameters()

    def node_inputs(self, content: dict[str, Tensor], present: dict[str, Tensor],
                    user_has_id: Tensor, item_has_id: Tensor) -> Tensor:
        """Layer-0 features ``[num_users + num_items + num_attributes, dim]``.

        Args:
            content, present: per-modality item content ``[num_items, d_m]`` and masks ``[num_items]``.
            user_has_id: ``[num_users]`` bool, False for cold (or dropped) users.
            item_has_id: ``[num_items]`` bool, False for cold (or dropped) items.
        """
        user_keep, item_keep = user_has_id.float(), item_has_id.float()
        if self.training and self.id_dropout > 0:
            user_keep = user_keep * (torch.rand_like(user_keep) >= self.id_dropout).float()
            item_keep = item_keep * (torch.rand_like(item_keep) >= self.id_dropout).float()
        users = self.user_id.weight * user_keep.unsqueeze(1)
        items = self.item_id.weight * item_keep.unsqueeze(1)
        if self.fusion is not None:
            items = items + self.fusion(content, present)
        attributes = self.attribute.weight[: self.num_attributes]
        return torch.cat([users, items, attributes], dim=0)

    def subgraph_inputs(self, nodes: Tensor, content: dict[str, Tensor], present: dict[str, Tensor],
                        user_has_id: Tensor, item_has_id: Tensor) -> Tensor:
        """Layer-0 features of some nodes only, ``[n, dim]`` for ``nodes`` ``[n]`` (global indices in
        ``[users | items | attributes]`` order): the rows :meth:`node_inputs` would give them, ID
        dropout included, at a cost that grows with ``n``, not with the graph.

        Args:
            nodes: ``[n]`` int64 node indices (a sampled subgraph's ``n_id``).
            content, present, user_has_id, item_has_id: as for :meth:`node_inputs` (whole tables).
        """
        num_users, num_items = self.num_users, self.num_items
        is_user, is_attribute = nodes < num_users, nodes >= num_users + num_items
        is_item = ~is_user & ~is_attribute
        user_rows, item_rows = nodes[is_user], nodes[is_item] - num_users
        user_keep, item_keep = user_has_id[user_rows].float(), item_has_id[item_rows].float()
        if self.training and self.id_dropout > 0:
            user_keep = user_keep * (torch.rand_like(user_keep) >= self.id_dropout).float()
            item_keep = item_keep * (torch.rand_like(item_keep) >= self.id_dropout).float()
        items = self.item_id(item_rows) * item_keep.unsqueeze(1)
        if self.fusion is not None:
            items = items + self.fusion({name: block[item_rows] for name, block in content.items()},
                                        {name: mask[item_rows] for name, mask in present.items()})
        attributes = self.attribute(nodes[is_attribute] - num_users - num_items)
        stacked = torch.cat([self.user_id(user_rows) * user_keep.unsqueeze(1), items, attributes], dim=0)
        order = torch.cat([torch.nonzero(mask).squeeze(1) for mask in (is_user, is_item, is_attribute)])
        return stacked[torch.argsort(order)]                                   # back to the order of `nodes`

    def propagate_subgraph(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        """Mean of the layer outputs over a sampled subgraph, ``[n, dim]``.

        Each layer is ``LGConv(normalize=False)`` along the directed ``edge_index`` ``[2, E_s]``
        (neighbour -> sampled node, local indices) with ``edge_weight`` ``[E_s]``: the full graph's
        normalised weights scaled so that each node's sum over its sampled neighbours estimates
        its sum over all of them (:func:`training.sampling.subgraph_edge_weight`). Rows of the
        subgraph's seed nodes are what the full-graph :meth:`forward` would estimate for them.
        """
        conv = LGConv(normalize=False)
        outputs = [x]
        for _ in range(self.num_layers):
            outputs.append(conv(outputs[-1], edge_index, edge_weight))
        return torch.stack(outputs).mean(dim=0)

    def layers(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """Every layer's output, ``[num_layers + 1, num_nodes, dim]`` (layer 0 is ``x``)."""
        outputs = [x]
        for _ in range(self.num_layers):
            outputs.append(propagate(adjacency, outputs[-1]))
        return torch.stack(outputs)

    def forward(self, x: Tensor, adjacency: Tensor) -> tuple[Tensor, Tensor]:
        """Propagate and average layers.

        Args:
            x: layer-0 features ``[num_nodes, dim]`` from :meth:`node_inputs`.
            adjacency: normalised symmetric sparse adjacency ``[num_nodes, num_nodes]``.

        Returns:
            (user embeddings ``[num_users, dim]``, item embeddings ``[num_items, dim]``).
        """
        out = self.layers(x, adjacency).mean(dim=0)
        return out[: self.num_users], out[self.num_users: self.num_users + self.num_items]

    @torch.no_grad()
    def infer(self, content: dict[str, Tensor], present: dict[str, Tensor], user_has_id: Tensor,
              item_has_id: Tensor, adjacency: Tensor) -> "GNNEmbeddings":
        """Embeddings after training, in eval mode (no ID dropout), on the CPU.

        Args:
            content, present, user_has_id, item_has_id: as for :meth:`node_inputs`.
            adjacency: normalised adjacency ``[num_nodes, num_nodes]`` over every training edge.

        Returns:
            :class:`GNNEmbeddings` of the users and items.
        """
        self.eval()
        x = self.node_inputs(content, present, user_has_id, item_has_id)
        stacked = self.layers(x, adjacency).cpu()              # [L+1, num_nodes, dim]
        final = stacked.mean(dim=0)
        users, items = slice(0, self.num_users), slice(self.num_users, self.num_users + self.num_items)
        degree = torch.zeros(stacked.shape[1]).scatter_add_(0, adjacency.to_sparse_coo().coalesce().indices()[0].cpu(),
                                                            torch.ones(adjacency._nnz()))
        return GNNEmbeddings(users=final[users].contiguous(), items=final[items].contiguous(),
                             item_layers=stacked[:, items].contiguous(), item_degree=degree[items].contiguous(),
                             attribute_layers=stacked[:, items.stop:].contiguous())


@dataclass(frozen=True)
class GNNEmbeddings:
    """What a trained :class:`HybridGNN` gives the estimator.

    Attributes:
        users: ``[num_users, dim]`` final (layer-averaged) user embeddings.
        items: ``[num_items, dim]`` final item embeddings.
        item_layers: ``[num_layers + 1, num_items, dim]`` per-layer item embeddings (a new user's
            embedding is rebuilt from them by the propagation rule).
        item_degree: ``[num_items]`` item node degrees in the inference graph.
        attribute_layers: ``[num_layers + 1, num_attributes, dim]`` per-layer attribute-node
            embeddings (an item added after training is propagated from them).
    """

    users: Tensor
    items: Tensor
    item_layers: Tensor
    item_degree: Tensor
    attribute_layers: Tensor | None = None


def softmax_loss(user_embeddings: Tensor, item_embeddings: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """Multinomial log-likelihood over the full catalog (Mult-VAE style).

    Args:
        user_embeddings: ``[batch, dim]``.
        item_embeddings: ``[n_items, dim]``.
        targets: ``[batch, n_items]`` non-negative interaction weights (rows may be unnormalised).
        temperature: logits are divided by it.

    Returns:
        Mean over the batch of ``-Σ_i targets_ui log softmax(s_u)_i``.
    """
    logits = user_embeddings @ item_embeddings.T / temperature
    return -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()


def sampled_softmax_loss(user_embeddings: Tensor, positive_embeddings: Tensor, negative_embeddings: Tensor,
                         temperature: float, *, positive_log_counts: Tensor | None = None,
                         negative_log_counts: Tensor | None = None, group_size: int | None = None) -> Tensor:
    """Softmax over sampled candidates with the logQ correction, for ``B`` (user, positive item) pairs.

    Each pair's candidates are the positives of its group (consecutive runs of ``group_size``
    pairs: in-batch negatives) and the ``K`` shared negatives; a candidate ``c`` scores
    ``u · c / temperature - log E_c``, ``E_c`` its expected count among the candidates. Then
    ``Σ_c exp(score_c)`` estimates the full catalog's ``Σ_j exp(u · j / temperature)`` without bias,
    and with every item once as the negatives (no groups, no correction) the loss is exactly the
    full softmax's per-positive term. The pair's own positive must be among its candidates (its
    in-batch slot, or the negatives when they cover the catalog). No ``[B, n_items]`` tensor.

    Args:
        user_embeddings: ``[B, dim]``, one row per pair.
        positive_embeddings: ``[B, dim]``, the pairs' positive items.
        negative_embeddings: ``[K, dim]``, items scored against every pair.
        temperature: logits are divided by it.
        positive_log_counts: ``[B]`` ``log E`` of each pair's positive (None: 0).
        negative_log_counts: ``[K]`` ``log E`` of each negative (None: 0).
        group_size: pairs per in-batch group (None: no in-batch candidates).

    Returns:
        Mean over the pairs of ``-score_positive + logsumexp(scores of the candidates)``.
    """
    positive_logits = (user_embeddings * positive_embeddings).sum(dim=1) / temperature           # [B]
    negative_logits = user_embeddings @ negative_embeddings.T / temperature                      # [B, K]
    if positive_log_counts is not None:
        positive_logits = positive_logits - positive_log_counts
    if negative_log_counts is not None:
        negative_logits = negative_logits - negative_log_counts
    parts = [negative_logits]
    if group_size:
        num_pairs, dim = user_embeddings.shape
        groups = -(-num_pairs // group_size)
        pad = groups * group_size - num_pairs
        users = F.pad(user_embeddings, (0, 0, 0, pad)).view(groups, group_size, dim)
        positives = F.pad(positive_embeddings, (0, 0, 0, pad)).view(groups, group_size, dim)
        in_batch = torch.bmm(users, positives.transpose(1, 2)) / temperature                    # [G, g, g]
        if positive_log_counts is not None:
            in_batch = in_batch - F.pad(positive_log_counts, (0, pad)).view(groups, 1, group_size)
        if pad:
            real = (torch.arange(groups * group_size, device=in_batch.device) < num_pairs).view(groups, 1, group_size)
            in_batch = in_batch.masked_fill(~real, -torch.inf)
        parts.insert(0, in_batch.reshape(groups * group_size, group_size)[:num_pairs])
    log_partition = torch.logsumexp(torch.cat([part.float() for part in parts], dim=1), dim=1)
    return (log_partition - positive_logits.float()).mean()


def bpr_loss(user_embeddings: Tensor, positive_embeddings: Tensor, negative_embeddings: Tensor) -> Tensor:
    """Bayesian personalised ranking of dot-product scores over ``[batch]`` triples.

    ``user_embeddings``, ``positive_embeddings``, ``negative_embeddings``: ``[batch, dim]`` -> scalar
    :func:`bpr_loss_from_scores` of ``s⁺ = u · p`` and ``s⁻ = u · n``.
    """
    positive = (user_embeddings * positive_embeddings).sum(dim=1)
    negative = (user_embeddings * negative_embeddings).sum(dim=1)
    return bpr_loss_from_scores(positive, negative)


def bpr_loss_from_scores(positive_scores: Tensor, negative_scores: Tensor) -> Tensor:
    """The BPR loss ``-log σ(s⁺ - s⁻)`` averaged over the batch (no regularisation: callers add theirs).

    ``positive_scores``, ``negative_scores``: ``[batch]`` scores of each user's positive and sampled
    negative item -> scalar.
    """
    return -F.logsigmoid(positive_scores - negative_scores).mean()


def sampled_negatives(batch_size: int, num_items: int, generator: torch.Generator) -> Tensor:
    """Uniform negative item indices ``[batch_size]`` (collisions with positives are rare and tolerated)."""
    return torch.randint(0, num_items, (batch_size,), generator=generator)

