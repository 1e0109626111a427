"""Training configuration: a frozen dataclass with defaults, loadable from TOML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hybridrec.errors import HybridRecError
from hybridrec.toml_config import dataclass_from_toml

LOSSES = ("softmax", "bpr")
NEGATIVES = ("auto", "full", "sampled")
TRAINING_MODES = ("auto", "full_graph", "neighbor_sampled")


@dataclass(frozen=True)
class TrainConfig:
    """How the graph part of the hybrid model is trained.

    Attributes:
        dim: embedding width.
        num_layers: LightGCN propagation layers.
        epochs: maximum passes over the training users.
        batch_size: users per step (full softmax); interactions per in-batch-negative group (sampled
            softmax: each group's positives are negatives for all its interactions; a full-graph
            step takes several groups, see :func:`training.sampling.full_graph_pairs_per_step`, a
            neighbour-sampled step one); ``16 x`` this many interactions per full-graph step (BPR).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        loss: ``"softmax"`` (full-catalog multinomial likelihood) or ``"bpr"`` (sampled negatives).
        temperature: softmax temperature.
        id_dropout: chance of dropping a node's ID embedding per step (cold-start path training).
        cold_item_share: share of warm items trained as cold items each epoch: their ID embedding
            is dropped and their interaction edges leave the propagation graph, so the content and
            attribute path learns to place items that have no interactions at all (ID dropout
            alone still lets their users' messages reach them). 0 turns it off.
        attribute_edge_weight: weight of item/user -> attribute edges relative to interactions.
        eval_every: epochs between validation runs (early stopping, best checkpoint).
        patience: validation runs without improvement before stopping.
        eval_k: cut-off of the validation recall used for early stopping.
        seed: seed for initialisation, shuffling and dropout.
        device: ``"auto"`` (GPU when present), ``"cpu"`` or ``"cuda"``.
        amp: mixed precision on GPU (ignored on CPU).
        negatives: the softmax's negatives. ``"full"``: every item (the full-catalog softmax);
            ``"sampled"``: a sampled softmax per step (each group's positives as in-batch negatives
            plus ``num_negatives`` items drawn per step, logits corrected by the log of each item's
            expected count among the candidates, so the estimate of the partition function is
            unbiased); ``"auto"``: full up to ``full_softmax_max_items`` items, sampled above. BPR
            always samples (one negative per interaction): ``"full"`` is refused with it.
        num_negatives: items drawn per step for the sampled softmax (the whole catalog, exactly the
            full softmax, once it is at least the number of items).
        full_softmax_max_items: largest catalog ``negatives="auto"`` trains with the full softmax;
            larger catalogs also validate on a seeded sample of users.
        training_mode: ``"full_graph"``: propagate over the whole graph every step;
            ``"neighbor_sampled"``: every step propagates over a sampled subgraph around its seed
            users and items (fanout ``num_neighbors``), always with sampled negatives; ``"auto"``:
            full graph up to ``full_graph_max_edges`` edges, neighbour-sampled above (and full graph
            whenever ``negatives="full"`` is asked for).
        full_graph_max_edges: largest training graph (undirected edges: interactions and attribute
            edges) ``training_mode="auto"`` propagates in full.
        num_neighbors: neighbours sampled per node at each hop, one entry per layer (``-1``: all);
            None: ``[10] * num_layers``.
        max_trained_interactions: the most training interactions a whole fit passes over (epochs x
            interactions): on a larger log the epochs are cut to ``max(1, this // interactions)``,
            logged and kept in ``TrainResult.epoch_limit``, so the GNN's cost stops growing with the
            log (MovieLens-100K, 55k positives, keeps all 60 epochs; Gowalla's 0.73M gets 13).
            None: ``epochs`` always.
    """

    dim: int = 64
    num_layers: int = 2
    epochs: int = 60
    batch_size: int = 256
    lr: float = 5e-3
    weight_decay: float = 0.0
    loss: str = "softmax"
    temperature: float = 0.2
    id_dropout: float = 0.2
    cold_item_share: float = 0.1
    attribute_edge_weight: float = 1.0
    eval_every: int = 5
    patience: int = 3
    eval_k: int = 20
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    negatives: str = "auto"
    num_negatives: int = 1024
    full_softmax_max_items: int = 20000
    training_mode: str = "auto"
    full_graph_max_edges: int = 20_000_000
    num_neighbors: list[int] | None = None
    max_trained_interactions: int | None = 10_000_000

    def __post_init__(self) -> None:
        positive = ("dim", "num_layers", "epochs", "batch_size", "eval_every", "patience", "eval_k")
        for name in positive:
            if getattr(self, name) < 1:
                raise HybridRecError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.loss not in LOSSES:
            raise HybridRecError(f"TrainConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise HybridRecError(f"TrainConfig.id_dropout must be in [0, 1), got {self.id_dropout}")
        if not 0.0 <= self.cold_item_share < 1.0:
            raise HybridRecError(f"TrainConfig.cold_item_share must be in [0, 1), got {self.cold_item_share}")
        if self.lr <= 0 or self.temperature <= 0:
            raise HybridRecError("TrainConfig.lr and TrainConfig.temperature must be > 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise HybridRecError(f"TrainConfig.device must be auto, cpu or cuda, got {self.device!r}")
        self._check_sampling()

    def epoch_limit(self, interactions: int) -> int:
        """``epochs``, cut so that epochs x ``interactions`` stays within ``max_trained_interactions``."""
        budget = self.max_trained_interactions
        if budget is None or self.epochs * max(interactions, 1) <= budget:
            return self.epochs
        return max(1, budget // max(interactions, 1))

    def _check_sampling(self) -> None:
        """The negatives and training-mode fields (see the class docstring)."""
        if self.negatives not in NEGATIVES:
            raise HybridRecError(f"TrainConfig.negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.training_mode not in TRAINING_MODES:
            raise HybridRecError(f"TrainConfig.training_mode must be one of {TRAINING_MODES}, "
                                 f"got {self.training_mode!r}")
        if self.max_trained_interactions is not None and (
                not isinstance(self.max_trained_interactions, int) or isinstance(self.max_trained_interactions, bool)
                or self.max_trained_interactions < 1):
            raise HybridRecError(f"TrainConfig.max_trained_interactions must be None or an integer >= 1, "
                                 f"got {self.max_trained_interactions!r}")
        for name, least in (("num_negatives", 1), ("full_softmax_max_items", 0), ("full_graph_max_edges", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise HybridRecError(f"TrainConfig.{name} must be an integer >= {least}, got {value!r}")
        if self.num_neighbors is not None:
            fanouts = self.num_neighbors
            if (not isinstance(fanouts, (list, tuple)) or len(fanouts) != self.num_layers
                    or not all(isinstance(f, int) and not isinstance(f, bool) and (f >= 1 or f == -1) for f in fanouts)):
                raise HybridRecError(f"TrainConfig.num_neighbors must be None or a list of num_layers={self.num_layers} "
                                     f"integers >= 1 (or -1: all neighbours), got {fanouts!r}")
            object.__setattr__(self, "num_neighbors", list(fanouts))
        if self.negatives == "full" and self.loss == "bpr":
            raise HybridRecError("TrainConfig.negatives='full' needs loss='softmax' (BPR always samples its "
                                 "negatives): use negatives='auto' or 'sampled'")
        if self.negatives == "full" and self.training_mode == "neighbor_sampled":
            raise HybridRecError("TrainConfig.negatives='full' needs training_mode='full_graph' or 'auto' (a "
                                 "neighbour-sampled step embeds only its own items, so it samples its negatives)")

    # -- the size rules ------------------------------------------------------------------------
    @property
    def fanouts(self) -> list[int]:
        """``num_neighbors``, or ``[10] * num_layers`` when it is None."""
        return list(self.num_neighbors) if self.num_neighbors is not None else [10] * self.num_layers

    def resolved_training_mode(self, num_edges: int) -> str:
        """``"full_graph"`` or ``"neighbor_sampled"`` for a training graph of ``num_edges``
        undirected edges (``"auto"``: by ``full_graph_max_edges``; full graph whenever
        ``negatives="full"``)."""
        if self.training_mode != "auto":
            return self.training_mode
        if self.negatives == "full" or num_edges <= self.full_graph_max_edges:
            return "full_graph"
        return "neighbor_sampled"

    def resolved_negatives(self, num_items: int, training_mode: str) -> str:
        """``"full"`` or ``"sampled"`` for a catalog of ``num_items`` trained in ``training_mode``
        (``"auto"``: by ``full_softmax_max_items``; BPR and neighbour-sampled steps always sample)."""
        if self.loss == "bpr" or training_mode == "neighbor_sampled":
            return "sampled"
        if self.negatives != "auto":
            return self.negatives
        return "full" if num_items <= self.full_softmax_max_items else "sampled"

    @classmethod
    def from_toml(cls, path: str | Path, section: str = "train") -> "TrainConfig":
        """Read the ``[train]`` table of a TOML file.

        Raises:
            HybridRecError: naming the file (and the key) for a missing file, a TOML syntax error, an
                unknown key or a value of the wrong type (see :mod:`hybridrec.toml_config`).
        """
        return dataclass_from_toml(cls, path, section)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
