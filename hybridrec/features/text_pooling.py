"""How a text checkpoint turns token vectors into one sentence vector, as its own files say.

A sentence-transformers checkpoint names its pooling in ``modules.json`` (the module of type
``sentence_transformers.models.Pooling``) and that module's ``config.json``
(``pooling_mode_mean_tokens``, ``pooling_mode_cls_token``...): mean pooling for
all-MiniLM-L6-v2 and the multilingual ``paraphrase-multilingual-MiniLM-L12-v2``, the first
(CLS) token for BGE-style models, the last token for decoder-style embedders. The same files are
what the ``sentence-transformers`` library reads; they are small JSON, read here directly so
the package does not need that library. A checkpoint without them (a plain ``transformers``
model) is mean-pooled, and that choice is logged.

Every mode's vector is L2-normalised afterwards (similarities are cosines throughout).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)

#: Poolings :func:`pool_tokens` implements, by the sentence-transformers config key that selects each.
POOLING_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                "max": "pooling_mode_max_tokens", "lasttoken": "pooling_mode_lasttoken"}
DEFAULT_POOLING = "mean"
POOLING_MODULE = "sentence_transformers.models.Pooling"


def _read_json(source: Path | str, relative: str) -> dict | list | None:
    """A JSON file of a checkpoint folder, or of a hub name's files in the Hugging Face cache
    (never downloaded); None when absent."""
    if isinstance(source, Path):
        path = source / relative
        if not path.is_file():
            return None
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, relative)
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HybridRecError(f"{path}: unreadable pooling configuration ({err})") from None


def checkpoint_pooling(source: Path | str, name: str) -> str:
    """The pooling (``"mean"``, ``"cls"``, ``"max"`` or ``"lasttoken"``) that the checkpoint at
    ``source`` (a folder, or a hub name looked up in the local cache) declares.

    Raises:
        HybridRecError: the configuration names a pooling this package does not implement (or
            several at once, which sentence-transformers concatenates).
    """
    modules = _read_json(source, "modules.json")
    entry = next((module for module in modules or [] if isinstance(module, dict)
                  and module.get("type") == POOLING_MODULE), None)
    config = None if entry is None else _read_json(source, f"{entry.get('path', '')}/config.json".lstrip("/"))
    if not isinstance(config, dict):
        logger.info("text model %s has no sentence-transformers pooling configuration: mean pooling", name)
        return DEFAULT_POOLING
    chosen = [mode for mode, key in POOLING_KEYS.items() if config.get(key)]
    unsupported = sorted(key for key, value in config.items()
                         if key.startswith("pooling_mode_") and value and key not in POOLING_KEYS.values())
    if unsupported or len(chosen) != 1:
        raise HybridRecError(f"text model {name}: its pooling configuration asks for "
                             f"{', '.join(unsupported + [POOLING_KEYS[m] for m in chosen]) or 'no pooling'}; "
                             f"supported: exactly one of {', '.join(POOLING_KEYS.values())}")
    return chosen[0]


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = DEFAULT_POOLING) -> torch.Tensor:
    """One L2-normalised vector per text from its token vectors.

    Args:
        hidden: ``[batch, tokens, dim]`` the transformer's last hidden states.
        attention_mask: ``[batch, tokens]`` of 0/1 (padding on either side).
        mode: ``"mean"`` (over the mask), ``"cls"`` (the first token), ``"max"`` (over the mask)
            or ``"lasttoken"`` (the last unmasked token).

    Returns:
        ``[batch, dim]``.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    elif mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "max":
        pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    elif mode == "lasttoken":
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * positions).argmax(dim=1)
        pooled = hidden[torch.arange(len(hidden), device=hidden.device), last]
    else:
        raise HybridRecError(f"unknown pooling {mode!r}; known: {', '.join(POOLING_KEYS)}")
    return torch.nn.functional.normalize(pooled, p=2, dim=1)
