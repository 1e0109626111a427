"""The three canonical tables every reader produces and every model consumes.

* ``interactions``: ``user_id``, ``item_id``, ``weight`` (float32, > 0), optional ``timestamp``
  (int64 unix seconds), optional ``event`` (str) and ``rating`` (float32, explicit feedback).
* ``items``: ``item_id`` plus text columns (str, "" when missing), categorical columns (str or
  None), multi-valued attribute columns (``list[str]``), numeric columns (float, NaN when missing)
  and an optional image-path column (str or None).
* ``users``: ``user_id`` plus attribute columns (same kinds as items).

A :class:`RecDataset` bundles them with the column roles so later stages never guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport

INTERACTION_COLUMNS = ("user_id", "item_id", "weight")


@dataclass
class ColumnRoles:
    """Which columns of a catalog table play which role.

    Attributes:
        text: free-text columns (title, description) for the text encoder.
        categorical: single-valued attributes, each becomes one attribute node type.
        multi: multi-valued attributes (lists of str), each becomes one attribute node type.
        numeric: numeric columns, bucketed into quantile attribute nodes in the graph.
        image: column holding a local image path, or None.
    """

    text: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    multi: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    image: str | None = None

    @property
    def attributes(self) -> list[str]:
        """All columns that become attribute nodes, in a stable order."""
        return [*self.categorical, *self.multi, *self.numeric]

    def check(self, table: pd.DataFrame, table_name: str) -> None:
        declared = [*self.text, *self.attributes] + ([self.image] if self.image else [])
        missing = [c for c in declared if c not in table.columns]
        if missing:
            raise HybridRecError(f"{table_name} table has no column(s) {missing}; it has {list(table.columns)}")

    def to_dict(self) -> dict:
        return {"text": list(self.text), "categorical": list(self.categorical), "multi": list(self.multi),
                "numeric": list(self.numeric), "image": self.image}

    @classmethod
    def from_dict(cls, values: dict) -> "ColumnRoles":
        return cls(**values)


def infer_attribute_roles(table: pd.DataFrame | None, columns: Sequence[str] | None, what: str) -> ColumnRoles:
    """Split attribute ``columns`` of ``table`` into categorical / multi-valued / numeric by their values.

    Lists (or tuples, arrays) make a multi-valued column, a numeric dtype a numeric one, anything
    else a categorical one. For tables that come without declared roles (a plain DataFrame).

    Args:
        table: the item or user table (None: no roles).
        columns: the attribute columns to classify.
        what: ``"item"`` or ``"user"``, for the error message.

    Raises:
        HybridRecError: naming a column the table lacks.
    """
    roles = ColumnRoles()
    if table is None or not columns:
        return roles
    for column in columns:
        if column not in table.columns:
            raise HybridRecError(f"{what}s table has no column {column!r}; it has {list(table.columns)}")
        values = table[column].dropna()
        if len(values) and values.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            roles.multi.append(column)
        elif pd.api.types.is_numeric_dtype(table[column]):
            roles.numeric.append(column)
        else:
            roles.categorical.append(column)
    return roles


@dataclass
class RecDataset:
    """Canonical interactions + item catalog + user table, with column roles and a load report.

    Items that appear in ``items`` but not in ``interactions`` are cold items; users in ``users``
    with no interaction are cold users. Both are kept.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    item_roles: ColumnRoles = field(default_factory=ColumnRoles)
    user_roles: ColumnRoles = field(default_factory=ColumnRoles)
    name: str = "custom"
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        missing = [c for c in INTERACTION_COLUMNS if c not in self.interactions.columns]
        if missing:
            raise HybridRecError(f"interactions table has no column(s) {missing}")
        if "item_id" not in self.items.columns:
            raise HybridRecError("items table has no column 'item_id'")
        if "user_id" not in self.users.columns:
            raise HybridRecError("users table has no column 'user_id'")
        self.item_roles.check(self.items, "items")
        self.user_roles.check(self.users, "users")

    @property
    def cold_item_ids(self) -> pd.Index:
        """Catalog items with no interaction."""
        return pd.Index(self.items["item_id"]).difference(pd.Index(self.interactions["item_id"].unique()))

    @property
    def cold_user_ids(self) -> pd.Index:
        """Users in the user table with no interaction."""
        return pd.Index(self.users["user_id"]).difference(pd.Index(self.interactions["user_id"].unique()))

    def with_interactions(self, interactions: pd.DataFrame) -> "RecDataset":
        """The same catalog and users with another interaction table (e.g. a training split)."""
        return RecDataset(interactions=interactions, items=self.items, users=self.users,
                          item_roles=self.item_roles, user_roles=self.user_roles, name=self.name,
                          report=self.report)


def content_summary(dataset: RecDataset) -> dict:
    """How many items have text (per text column and any), an image path, and attributes."""
    items = dataset.items
    summary: dict = {"items": len(items), "users": len(dataset.users), "interactions": len(dataset.interactions)}
    has_any_text = pd.Series(False, index=items.index)
    for column in dataset.item_roles.text:
        has_text = items[column].fillna("").astype(str).str.strip() != ""
        summary[f"items_with_{column}"] = int(has_text.sum())
        has_any_text |= has_text
    summary["items_with_text"] = int(has_any_text.sum())
    image = dataset.item_roles.image
    summary["items_with_image"] = int(items[image].notna().sum()) if image else 0
    return summary
