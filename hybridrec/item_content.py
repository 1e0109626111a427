"""Item content as named blocks (attribute flags, one text embedding per column, image embedding).

Each block keeps its own identity: the cold-start map weighs blocks separately (folding an overview
into the title text before encoding measured clearly worse than keeping two embeddings), and the
GNN projects each modality with its own gated linear layer.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hybridrec.graph import RecGraph
from hybridrec.id_map import IdMap

logger = logging.getLogger(__name__)


def default_feature_cache() -> Path:
    """``$HYBRIDREC_CACHE_DIR/features`` or ``~/.cache/hybridrec/features``."""
    base = os.environ.get("HYBRIDREC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hybridrec")
    return Path(base) / "features"


@dataclass
class ItemContent:
    """Content blocks aligned with an item id map.

    Attributes:
        blocks: block name -> ``[n_items, d]`` float32 (zero rows where absent).
        present: block name -> ``[n_items]`` bool.
    """

    blocks: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dims(self) -> dict[str, int]:
        return {name: block.shape[1] for name, block in self.blocks.items()}

    def matrix(self, weights: dict[str, float]) -> np.ndarray:
        """``[n_items, Σ d]`` concatenation of the blocks, each scaled by ``weights[name]`` (default 1)."""
        if not self.blocks:
            raise ValueError("no content blocks")
        return np.hstack([weights.get(name, 1.0) * block for name, block in self.blocks.items()]).astype(np.float32)


def attribute_flags(graph: RecGraph) -> np.ndarray:
    """Item -> attribute incidence ``[n_items, n_item_attribute_values]`` (0/1) over all item attributes."""
    columns = []
    for node_type, (owner, _) in graph.attribute_sources.items():
        if owner != "item":
            continue
        src, dst = graph.data["item", "has", node_type].edge_index.numpy()
        columns.append(sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)),
                                     shape=(graph.num_items, len(graph.id_maps[node_type]))))
    if not columns:
        return np.zeros((graph.num_items, 0), dtype=np.float32)
    return sp.hstack(columns).toarray().astype(np.float32)


def encode_item_content(items: pd.DataFrame | None, item_ids: IdMap, *, text_cols: list[str],
                        image_col: str | None, cache_dir: str | Path | None = None, text_encoder=None,
                        image_encoder=None, device: str = "auto", progress: bool = True) -> ItemContent:
    """Encode each text column and the image column of ``items`` into blocks aligned with ``item_ids``.

    Items in ``item_ids`` but not in ``items`` (log-only items) get absent rows.
    """
    content = ItemContent()
    if items is None or (not text_cols and image_col is None):
        return content
    from hybridrec.features.feature_cache import encode_items

    cache_dir = Path(cache_dir) if cache_dir is not None else default_feature_cache()
    rows = item_ids.to_index(items["item_id"].to_numpy())
    n_items = len(item_ids)
    for column in text_cols:
        features = encode_items(items, text_cols=[column], cache_dir=cache_dir, text_encoder=text_encoder,
                                device=device, progress=progress)
        block = np.zeros((n_items, features.text.shape[1]), dtype=np.float32)
        block[rows] = features.text
        present = np.zeros(n_items, dtype=bool)
        present[rows] = ~features.text_empty
        content.blocks[f"text:{column}"], content.present[f"text:{column}"] = block, present
    if image_col is not None:
        features = encode_items(items, image_col=image_col, cache_dir=cache_dir, image_encoder=image_encoder,
                                device=device, progress=progress)
        image = features.image / np.maximum(np.linalg.norm(features.image, axis=1, keepdims=True), 1e-12)
        block = np.zeros((n_items, image.shape[1]), dtype=np.float32)
        block[rows] = image
        present = np.zeros(n_items, dtype=bool)
        present[rows] = features.image_present
        content.blocks["image"], content.present["image"] = block, present
    return content
