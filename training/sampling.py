"""What a sampled training step draws: negative items (with their logQ correction) and subgraphs.

* :class:`NegativeSampler`: the ``num_negatives`` items a sampled-softmax step scores against every
  pair, and the log expected count of each item among a pair's candidates (its group's in-batch
  positives plus those draws), the correction that makes the sampled partition function unbiased.
* :func:`full_graph_pairs_per_step`: how many interactions one full-graph step takes, so that an
  epoch costs about linear in the interactions.
* :class:`NeighborSubgraphSampler` and :func:`subgraph_loader`: mini-batches of interactions, each
  with the subgraph around its users, positive and negative items, through PyG's
  :class:`~torch_geometric.loader.LinkLoader` (the loader behind ``LinkNeighborLoader``) in its
  ``"triplet"`` layout (``src_index``, ``dst_pos_index``, ``dst_neg_index``).

The neighbour sampler is plain torch (PyG's own needs ``pyg-lib`` or ``torch-sparse``, and draws
from a random state of its own): every draw comes from the trainer's ``torch.Generator``, so a run
is reproducible and resumes from a checkpoint exactly. Every per-step cost grows with the batch
and the fanout, never with the number of users or items.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import LinkLoader
from torch_geometric.sampler import BaseSampler, EdgeSamplerInput, NegativeSampling, NodeSamplerInput, SamplerOutput

logger = logging.getLogger(__name__)

DISTRIBUTIONS = ("uniform", "popularity")
#: How the drawn negatives are distributed: ``"popularity"``, ``(training interactions + 1) **
#: POPULARITY_POWER`` (the +1 keeps items without interactions among the negatives, as the full
#: softmax has them), or ``"uniform"``. Measured without the +1, 3 epochs each, validation
#: recall@20 after epochs 1-3: MovieLens-100K (dim 16) popularity 0.204, 0.271, 0.291 vs uniform
#: 0.197, 0.266, 0.290; Gowalla (dim 64) 0.119, 0.145, 0.163 vs 0.119, 0.144, 0.161; the draws
#: cost the same (``searchsorted`` over a precomputed CDF).
NEGATIVE_DISTRIBUTION = "popularity"
POPULARITY_POWER = 0.75


class NegativeSampler:
    """Negative items for sampled steps, and the logQ correction of every candidate.

    A pair's candidates are the positives of its in-batch group (``group_size`` pairs drawn in a
    random order, so item ``j`` comes ``group_size * count_j / N`` times on average) and the
    ``num_negatives`` draws from ``probabilities`` (``num_negatives * p_j`` times). The log of that
    expected count, subtracted from the candidate's logit, makes ``Σ_c exp(logit_c)`` an unbiased
    estimate of the full catalog's partition function.

    Args:
        item_counts: ``[n_items]`` training interactions per item.
        num_negatives: items drawn per step.
        group_size: pairs per in-batch group (0: no in-batch candidates).
        distribution: ``"popularity"`` (``(count + 1) ** 0.75``) or ``"uniform"``.

    Once ``num_negatives >= n_items`` the candidates are the whole catalog once each
    (:attr:`covers_catalog`): no in-batch group and no correction, i.e. the full softmax.
    """

    def __init__(self, item_counts: Tensor, num_negatives: int, group_size: int,
                 distribution: str = NEGATIVE_DISTRIBUTION) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        counts = item_counts.detach().to(torch.float64).cpu()
        self.num_items, self.num_negatives, self.distribution = len(counts), num_negatives, distribution
        self.covers_catalog = num_negatives >= self.num_items
        self.group_size = 0 if self.covers_catalog else group_size
        if distribution == "uniform":
            probabilities = torch.full((self.num_items,), 1.0 / self.num_items, dtype=torch.float64)
        else:
            weights = (counts + 1).pow(POPULARITY_POWER)
            probabilities = weights / weights.sum()
        self.probabilities = probabilities
        self.cdf = torch.cumsum(probabilities, dim=0)
        expected = self.group_size * counts / counts.sum().clamp(min=1) + num_negatives * probabilities
        self.log_expected = expected.log().to(torch.float32)           # [n_items]; -inf: never a candidate

    def draw(self, generator: torch.Generator, count: int | None = None) -> Tensor:
        """``[count]`` item indices (``num_negatives`` by default; every item once when the draws
        cover the catalog), with replacement, in ``O(count log n_items)``."""
        count = self.num_negatives if count is None else count
        if self.covers_catalog and count == self.num_negatives:
            return torch.arange(self.num_items)
        if self.distribution == "uniform":
            return torch.randint(0, self.num_items, (count,), generator=generator)
        uniform = torch.rand(count, generator=generator, dtype=torch.float64)
        return torch.searchsorted(self.cdf, uniform, right=True).clamp(max=self.num_items - 1)

    def log_counts(self, items: Tensor) -> Tensor | None:
        """``log E`` of ``items`` ``[n] -> [n]`` on their device; None when the draws cover the catalog."""
        if self.covers_catalog:
            return None
        if self.log_expected.device != items.device:                   # moved once, not every step
            self.log_expected = self.log_expected.to(items.device)
        return self.log_expected[items]


#: Scored candidates per pair and step, per directed edge and layer of the propagation (see
#: :func:`full_graph_pairs_per_step`). Measured on Gowalla (2 CPU cores, dim 64): a full-graph
#: step's fixed part (propagation forward and backward, layer-0 inputs, Adam) took 0.65 s, a
#: group of 256 pairs x 1,280 candidates 10.5 ms; with 4 the propagation costs about 1.7x the
#: scoring. Of 1, 4 and 8, 4 reached the best validation recall per second (3 epochs: 0.164 in
#: 187 s; 8: 0.140 in 161 s; 1: 0.152 after its first epoch, 236 s).
SPARSE_COST = 4


def full_graph_pairs_per_step(num_edges: int, num_layers: int, group_size: int, candidates: int) -> int:
    """Interactions per full-graph step of the sampled softmax: whole groups of ``group_size``.

    A full-graph step has a fixed part, the propagation over the whole graph (forward and
    backward, ``~ num_layers * num_edges * dim`` sparse multiply-adds, ``num_edges`` directed),
    and a part per pair, scoring it against ``candidates`` items (``~ candidates * dim``). The rule

        ``B = group_size * ceil(SPARSE_COST * num_layers * num_edges / (group_size * candidates))``

    takes enough pairs that the scoring is a fixed share of every step, so an epoch of ``N``
    interactions costs a constant times ``N * candidates * dim``: linear in the interactions,
    with ``N / B ~ N * candidates / (SPARSE_COST * num_layers * num_edges)`` propagations, a
    number that stays put as the graph grows (``num_edges ~ 2 N``). User batches of a fixed size
    instead pay one propagation per ``batch_size`` users (users x edges per epoch). Small graphs
    get one group per step.
    """
    groups = max(1, math.ceil(SPARSE_COST * num_layers * num_edges / (group_size * max(candidates, 1))))
    return groups * group_size


class NeighborSubgraphSampler(BaseSampler):
    """Uniform fanout neighbour sampling over a homogeneous graph, seeded by a ``torch.Generator``.

    Hop ``h`` expands the nodes first reached at hop ``h - 1`` (the seeds at hop 1): a node of
    in-degree at most ``num_neighbors[h]`` (or any, for ``-1``) keeps every incoming edge, one of
    higher degree keeps ``num_neighbors[h]`` drawn uniformly with replacement. Each node is
    expanded once; :meth:`scale_edge_weight` reweights the kept edges so that a node's sum over
    its sampled neighbours estimates its sum over all of them without bias.

    Args:
        edge_index: ``[2, E]`` directed edges (both directions of every undirected edge).
        num_nodes: nodes of the graph.
        num_neighbors: fanout per hop (one per propagation layer).
        generator: the source of every draw.
        negatives: draws each batch's negative items (:meth:`sample_from_edges`); None: none.
        item_offset: node index of item 0 (items are nodes ``item_offset..``).
        negatives_per_pair: one negative per pair (BPR) instead of the sampler's ``num_negatives``.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, num_neighbors: list[int], generator: torch.Generator, *,
                 negatives: NegativeSampler | None = None, item_offset: int = 0,
                 negatives_per_pair: bool = False) -> None:
        target = edge_index[1]
        order = torch.argsort(target, stable=True)
        self.in_degree = torch.bincount(target, minlength=num_nodes)                  # [num_nodes]
        self.colptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(self.in_degree, dim=0)])
        self.sources, self.edge_ids = edge_index[0][order], order                    # CSC by target
        self.num_neighbors, self.generator = list(num_neighbors), generator
        self.negatives, self.item_offset, self.negatives_per_pair = negatives, item_offset, negatives_per_pair

    # -- PyG's sampler interface ---------------------------------------------------------------
    def sample_from_nodes(self, inputs: NodeSamplerInput) -> SamplerOutput:
        """The subgraph around ``inputs.node`` (deduplicated; seeds first in ``node``)."""
        seeds, inverse = torch.unique(inputs.node, return_inverse=True)
        out = self._subgraph(seeds)
        out.metadata = (inputs.input_id, inverse)
        return out

    def sample_from_edges(self, inputs: EdgeSamplerInput, neg_sampling: NegativeSampling | None = None) -> SamplerOutput:
        """The subgraph around a batch of (user, item) pairs and its negative items.

        ``metadata`` is PyG's triplet layout: ``(input_id, src_index [B], dst_pos_index [B],
        dst_neg_index, None)``, local indices; ``dst_neg_index`` holds the batch's shared negatives
        ``[K]`` (``[B]``, one per pair, with ``negatives_per_pair``). The pairs' columns are node
        indices (items offset by ``item_offset``).
        """
        users, positives = inputs.row, inputs.col
        num_pairs = len(users)
        if self.negatives is None:
            negatives = torch.zeros(0, dtype=torch.long)
        else:
            count = num_pairs if self.negatives_per_pair else None
            negatives = self.negatives.draw(self.generator, count) + self.item_offset
        seeds, inverse = torch.unique(torch.cat([users, positives, negatives]), return_inverse=True)
        out = self._subgraph(seeds)
        out.metadata = (inputs.input_id, inverse[:num_pairs], inverse[num_pairs:2 * num_pairs],
                        inverse[2 * num_pairs:], None)
        return out

    # -- sampling ------------------------------------------------------------------------------
    def _incoming(self, frontier: Tensor, fanout: int) -> tuple[Tensor, Tensor]:
        """Positions in the CSC arrays of the kept incoming edges of ``frontier`` ``[n]``, and the
        position in ``frontier`` of each edge's target."""
        degree, start = self.in_degree[frontier], self.colptr[frontier]
        take_all = torch.ones_like(degree, dtype=torch.bool) if fanout < 0 else degree <= fanout
        counts = degree[take_all]
        first = torch.cumsum(counts, dim=0) - counts
        within = torch.arange(int(counts.sum())) - first.repeat_interleave(counts)
        positions = [start[take_all].repeat_interleave(counts) + within]
        targets = [torch.nonzero(take_all).squeeze(1).repeat_interleave(counts)]
        many = ~take_all
        if bool(many.any()):
            draws = torch.rand(int(many.sum()), fanout, generator=self.generator, dtype=torch.float64)
            offsets = (draws * degree[many].unsqueeze(1)).long().clamp(max=degree[many].unsqueeze(1) - 1)
            positions.append((start[many].unsqueeze(1) + offsets).reshape(-1))
            targets.append(torch.nonzero(many).squeeze(1).repeat_interleave(fanout))
        return torch.cat(positions), torch.cat(targets)

    def _subgraph(self, seeds: Tensor) -> SamplerOutput:
        """Hop by hop from ``seeds`` ``[S]`` (unique): nodes, local edges, original edge ids."""
        nodes, frontier, known = [seeds], seeds, torch.sort(seeds).values
        sources, targets, edges, edge_counts = [], [], [], []
        for fanout in self.num_neighbors:
            positions, target_of = self._incoming(frontier, fanout)
            hop_sources = self.sources[positions]
            sources.append(hop_sources)
            targets.append(frontier[target_of])
            edges.append(self.edge_ids[positions])
            edge_counts.append(len(positions))
            reached = torch.unique(hop_sources)
            found = torch.searchsorted(known, reached).clamp(max=max(len(known) - 1, 0))
            fresh = reached[known[found] != reached] if len(known) else reached
            nodes.append(fresh)
            known = torch.sort(torch.cat([known, fresh])).values
            frontier = fresh
        node = torch.cat(nodes)
        ordered, permutation = torch.sort(node)

        def local(global_index: Tensor) -> Tensor:
            return permutation[torch.searchsorted(ordered, global_index)]

        return SamplerOutput(node=node, row=local(torch.cat(sources)), col=local(torch.cat(targets)),
                             edge=torch.cat(edges), batch=None, num_sampled_nodes=[len(part) for part in nodes],
                             num_sampled_edges=edge_counts)

    def scale_edge_weight(self, batch: Data) -> Data:
        """``batch.edge_weight`` times ``degree / kept`` of each edge's target: the sum over a
        node's kept neighbours then estimates the sum over all of them (exact where all were kept).
        A ``transform`` of the loader."""
        kept = torch.bincount(batch.edge_index[1], minlength=batch.num_nodes)
        target = batch.edge_index[1]
        batch.edge_weight = batch.edge_weight * (self.in_degree[batch.n_id[target]] / kept[target]).to(batch.edge_weight.dtype)
        return batch


def subgraph_loader(edge_index: Tensor, normalized_weight: Tensor, num_nodes: int, pairs: Tensor, *,
                    num_neighbors: list[int], batch_size: int, generator: torch.Generator,
                    negatives: NegativeSampler | None, item_offset: int, negatives_per_pair: bool = False) -> LinkLoader:
    """Shuffled mini-batches of ``batch_size`` interactions with their sampled subgraphs.

    Args:
        edge_index: ``[2, E]`` the training graph (both directions), node order ``[users | items | ...]``.
        normalized_weight: ``[E]`` its symmetric-normalised weights (``normalized_edge_weight``).
        num_nodes: nodes of the graph.
        pairs: ``[2, N]`` (user node, item node) training interactions, the loader's seed edges.
        num_neighbors, generator, negatives, item_offset, negatives_per_pair: see
            :class:`NeighborSubgraphSampler`; the shuffle draws from ``generator`` too.

    Returns:
        A :class:`~torch_geometric.loader.LinkLoader` whose batches are :class:`Data` with
        ``n_id`` (global node ids), local ``edge_index``, ``edge_weight`` (rescaled, see
        :meth:`NeighborSubgraphSampler.scale_edge_weight`), ``src_index``, ``dst_pos_index``
        and ``dst_neg_index``.
    """
    sampler = NeighborSubgraphSampler(edge_index, num_nodes, num_neighbors, generator, negatives=negatives,
                                      item_offset=item_offset, negatives_per_pair=negatives_per_pair)
    graph = Data(edge_index=edge_index, edge_weight=normalized_weight, num_nodes=num_nodes)
    return LinkLoader(graph, link_sampler=sampler, edge_label_index=pairs, neg_sampling=NegativeSampling("triplet"),
                      transform=sampler.scale_edge_weight, batch_size=batch_size, shuffle=True, generator=generator)
