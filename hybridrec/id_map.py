"""External id <-> contiguous index conversion: the only place that knows about indices."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)


class IdMap:
    """Bijective map between external ids (any hashable: int, str) and indices ``0..n-1``.

    Args:
        ids: the external ids in index order; must be unique.
        kind: what the ids name (``"user"``, ``"item"``, ``"genre"``), used in error messages.
    """

    def __init__(self, ids: Iterable, kind: str = "id") -> None:
        self.kind = kind
        self.index_ = pd.Index(list(ids) if not isinstance(ids, (pd.Index, np.ndarray, pd.Series)) else ids)
        if not self.index_.is_unique:
            dupes = self.index_[self.index_.duplicated()].unique()[:10].tolist()
            raise HybridRecError(f"duplicate {kind} ids: {dupes}")

    def __len__(self) -> int:
        return len(self.index_)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self.index_

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.kind == other.kind and self.index_.equals(other.index_)

    def __repr__(self) -> str:
        return f"IdMap(kind={self.kind!r}, n={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """External ids in index order, shape ``[n]``."""
        return self.index_.to_numpy()

    def to_index(self, external_ids: Iterable, *, allow_missing: bool = False) -> np.ndarray:
        """Indices of ``external_ids``, shape ``[len(external_ids)]`` (int64).

        Raises:
            HybridRecError: listing the unknown ids, unless ``allow_missing`` (then they map to -1).
        """
        values = external_ids if isinstance(external_ids, (pd.Index, np.ndarray, pd.Series)) else list(external_ids)
        positions = self.index_.get_indexer(values)
        if not allow_missing and (positions < 0).any():
            unknown = pd.Index(values)[positions < 0].unique()
            shown = unknown[:20].tolist()
            more = f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""
            raise HybridRecError(f"unknown {self.kind} id(s): {shown}{more}")
        return positions.astype(np.int64)

    def to_ids(self, indices: Iterable[int]) -> np.ndarray:
        """External ids of ``indices``, shape ``[len(indices)]``."""
        return self.ids[np.asarray(indices, dtype=np.int64)]

    def extend(self, external_ids: Iterable) -> "IdMap":
        """A new map with unseen ``external_ids`` appended after the existing ones."""
        extra = pd.Index(external_ids).unique().difference(self.index_, sort=False)
        return IdMap(self.index_.append(extra), kind=self.kind)

    def to_frame(self) -> pd.DataFrame:
        """``index``/``id`` table for saving (ids keep their dtype in Parquet)."""
        return pd.DataFrame({"index": np.arange(len(self), dtype=np.int64), "id": self.ids})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, kind: str) -> "IdMap":
        frame = frame.sort_values("index")
        if not np.array_equal(frame["index"].to_numpy(), np.arange(len(frame))):
            raise HybridRecError(f"{kind} id map is not contiguous 0..{len(frame) - 1}")
        return cls(frame["id"].to_numpy(), kind=kind)


def table_id_maps(interactions: pd.DataFrame, items: pd.DataFrame | None,
                  users: pd.DataFrame | None) -> dict[str, IdMap]:
    """The user and item id order every part of a model shares: the table's ids first, then ids
    only the log has (in order of first appearance).

    Args:
        interactions: the log (``user_id``, ``item_id``).
        items, users: the catalog and user table, or None (ids come from the log alone).

    Returns:
        ``{"user": IdMap, "item": IdMap}``.
    """
    maps = {}
    for kind, table in (("user", users), ("item", items)):
        column = f"{kind}_id"
        logged = pd.Index(interactions[column].unique())
        if table is None:
            maps[kind] = IdMap(logged, kind=kind)
            continue
        listed = pd.Index(table[column])
        extra = logged.difference(listed, sort=False)
        if len(extra):
            logger.info("%d %s(s) in the log are not in the %ss table; added without attributes",
                        len(extra), kind, kind)
        maps[kind] = IdMap(listed.append(extra), kind=kind)
    return maps
