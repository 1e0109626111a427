"""Training configuration: a frozen dataclass with defaults, loadable from TOML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hybridrec.errors import HybridRecError
from hybridrec.toml_config import dataclass_from_toml

LOSSES = ("softmax", "bpr")


@dataclass(frozen=True)
class TrainConfig:
    """How the graph part of the hybrid model is trained.

    Attributes:
        dim: embedding width.
        num_layers: LightGCN propagation layers.
        epochs: maximum passes over the training users.
        batch_size: users per step (softmax loss) or interactions per step (BPR).
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
