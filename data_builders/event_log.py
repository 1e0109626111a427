"""Generic event logs (CSV/TSV, Parquet, JSON Lines) plus optional item and user tables -> RecDataset.

A :class:`ColumnMapping` names the log's columns. Weights come from a weight column, or from the
event type through ``event_weights``, or are 1. A log that carries its own train/test assignment
keeps it: a column named ``split`` (values ``train`` / ``test``) stays in the interactions, for
``SplitConfig(kind="given")``. Every dropped row is a counted skip in the dataset's report (an error
with ``strict=True``): unparsable values, unknown event types or split labels, items missing from
the catalog, duplicate events.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from data_builders.catalog import empty_attributes, read_items, read_users
from data_builders.filters import DEDUPE_POLICIES, deduplicate
from data_builders.parsing import LINE, as_strings, parse_numeric, read_table, require_columns, require_rows, skip_rows
from data_builders.timestamps import parse_timestamps
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport
from hybridrec.tables import ColumnRoles, RecDataset

logger = logging.getLogger(__name__)

DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 1.0, "cart": 3.0, "purchase": 5.0}
# Unknown event types are counted per type for this many types, the rest together.
MAX_NAMED_EVENT_TYPES = 10
#: The log column holding a row's own train/test assignment, kept under this name when present
#: (the column ``evaluation.splitters.given_split`` reads), and the labels it may hold.
SPLIT_COLUMN = "split"
SPLIT_LABELS = ("train", "test")


@dataclass(frozen=True)
class ColumnMapping:
    """Which log column holds each canonical interaction field.

    ``user_id`` and ``item_id`` must exist. The optional fields are used when the named column
    exists; a name changed from its default must exist, and ``None`` ignores the field. ``weight``
    and ``rating`` may name the same column (weight by rating).
    """

    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str | None = "timestamp"
    event: str | None = "event"
    weight: str | None = "weight"
    rating: str | None = None

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            optional = spec.name not in ("user_id", "item_id")
            if (value is None and not optional) or (value is not None and (not isinstance(value, str) or not value)):
                raise HybridRecError(f"ColumnMapping.{spec.name} must be a column name"
                                     + (" or None" if optional else "") + f", got {value!r}")
        named = [(spec.name, getattr(self, spec.name)) for spec in fields(self) if getattr(self, spec.name)]
        for i, (role, column) in enumerate(named):
            for other, other_column in named[i + 1:]:
                if column == other_column and {role, other} != {"weight", "rating"}:
                    raise HybridRecError(f"ColumnMapping.{role} and ColumnMapping.{other} both name column {column!r}")

    def required(self) -> list[str]:
        """Columns the log must have: ids, the rating when set, and optional fields renamed from their default."""
        columns = [self.user_id, self.item_id]
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in ("timestamp", "event", "weight") and value is not None and value != spec.default:
                columns.append(value)
        if self.rating is not None:
            columns.append(self.rating)
        return list(dict.fromkeys(columns))


def _check_event_weights(event_weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(event_weights, Mapping) or not event_weights:
        raise HybridRecError(f"event_weights must be a non-empty mapping of event type to weight, "
                             f"got {event_weights!r}")
    checked = {}
    for event, weight in event_weights.items():
        try:
            value = float(weight)
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value) or value <= 0:
            raise HybridRecError(f"event_weights[{event!r}] must be a number > 0, got {weight!r}")
        checked[str(event)] = value
    return checked


def interactions_from_table(raw: pd.DataFrame, *, file: object, report: LoadReport,
                            columns: ColumnMapping = ColumnMapping(),
                            event_weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Canonical interactions from a raw log table (with ``__line__``, which is kept).

    Ids become strings. Rows with a missing id, an unparsable timestamp/weight/rating, a weight
    <= 0, an event type not in the weights or a ``split`` label other than ``train`` / ``test``
    are counted skips naming file, line and column.

    Returns:
        ``user_id``, ``item_id`` (str), ``weight`` (float32), and when present ``timestamp``
        (int64 unix seconds), ``event`` (str), ``rating`` (float32), ``split`` (str: ``train`` or
        ``test``; a column of that name that ``columns`` does not give another role), plus ``__line__``.
    """
    require_columns(raw, columns.required(), file=file)
    present = {name: getattr(columns, name) for name in ("timestamp", "event", "weight", "rating")
               if getattr(columns, name) is not None and getattr(columns, name) in raw.columns}
    if event_weights is not None:
        event_weights = _check_event_weights(event_weights)
        if "event" not in present:
            raise HybridRecError(f"{file}: event_weights given but the log has no event column {columns.event!r}")
    source = list(dict.fromkeys([columns.user_id, columns.item_id, *present.values()]))
    has_split = SPLIT_COLUMN in raw.columns and SPLIT_COLUMN not in source
    table = raw[source + [SPLIT_COLUMN] * has_split + [LINE]].copy()
    for column, name in ((columns.user_id, "user id"), (columns.item_id, "item id")):
        table[column] = as_strings(table[column])
        table = skip_rows(table, (table[column] == "").to_numpy(), f"missing {name}", file=file, report=report,
                          column=column)
    if has_split:
        table = _check_split_labels(table, file=file, report=report)
    if "timestamp" in present:
        table = parse_timestamps(table, present["timestamp"], file=file, report=report)
    for name in ("rating", "weight"):
        if name in present:
            table = parse_numeric(table, present[name], file=file, report=report)

    if "event" in present and (event_weights is not None or "weight" not in present):
        if "weight" in present:
            report.note(f"{file}: weights come from event_weights; column {present['weight']!r} is not used")
        table, weights = _event_weights(table, present["event"], event_weights or dict(DEFAULT_EVENT_WEIGHTS),
                                        file=file, report=report)
    elif "weight" in present:
        weights = table[present["weight"]].to_numpy(np.float64)
    else:
        weights = np.ones(len(table))
    positive = weights > 0
    table = table.assign(__weight__=weights)
    table = skip_rows(table, ~positive, "weight must be > 0", file=file, report=report, column=present.get("weight"))

    interactions = pd.DataFrame({
        "user_id": table[columns.user_id].astype("str").reset_index(drop=True),
        "item_id": table[columns.item_id].astype("str").reset_index(drop=True),
        "weight": table["__weight__"].to_numpy(np.float32),
    })
    if "timestamp" in present:
        interactions["timestamp"] = table[present["timestamp"]].to_numpy(np.int64)
    if "event" in present:
        interactions["event"] = as_strings(table[present["event"]]).astype("str").reset_index(drop=True)
    if "rating" in present:
        interactions["rating"] = table[present["rating"]].to_numpy(np.float32)
    if has_split:
        interactions[SPLIT_COLUMN] = table[SPLIT_COLUMN].astype("str").reset_index(drop=True)
    interactions[LINE] = table[LINE].to_numpy()
    return interactions


def _check_split_labels(table: pd.DataFrame, *, file: object, report: LoadReport) -> pd.DataFrame:
    """``table`` with its ``split`` labels trimmed; rows with a missing label or one not in
    :data:`SPLIT_LABELS` are counted skips (with their lines)."""
    table[SPLIT_COLUMN] = as_strings(table[SPLIT_COLUMN])
    table = skip_rows(table, (table[SPLIT_COLUMN] == "").to_numpy(), "missing split label", file=file,
                      report=report, column=SPLIT_COLUMN)
    unknown = ~table[SPLIT_COLUMN].isin(SPLIT_LABELS).to_numpy()
    return skip_rows(table, unknown, "split label must be " + " or ".join(repr(label) for label in SPLIT_LABELS),
                     file=file, report=report, column=SPLIT_COLUMN)


def _log_columns(columns: ColumnMapping) -> list[str]:
    """The log columns ``columns`` can use, and ``split`` (the reader keeps only these)."""
    named = (columns.user_id, columns.item_id, columns.timestamp, columns.event, columns.weight, columns.rating,
             SPLIT_COLUMN)
    return list(dict.fromkeys(name for name in named if name is not None))


def _event_weights(table: pd.DataFrame, column: str, event_weights: dict[str, float], *, file: object,
                   report: LoadReport) -> tuple[pd.DataFrame, np.ndarray]:
    """Weight per row from its event type; unknown types are counted skips, per type."""
    events = as_strings(table[column])
    known = events.isin(list(event_weights)).to_numpy()
    if not known.all():
        allowed = sorted(event_weights)
        unknown_types = pd.unique(events[~known])
        for event in unknown_types[:MAX_NAMED_EVENT_TYPES]:
            table = skip_rows(table, (events.loc[table.index] == event).to_numpy(),
                              f"unknown event type {event!r} (event_weights has {allowed})",
                              file=file, report=report, column=column)
        rest = ~events.loc[table.index].isin(list(event_weights)).to_numpy()
        table = skip_rows(table, rest, f"unknown event type (event_weights has {allowed})", file=file,
                          report=report, column=column)
        events = events.loc[table.index]
    codes, types = pd.factorize(events)
    weights = np.array([event_weights[event] for event in types], dtype=np.float64)[codes]
    return table, weights


def assemble_dataset(interactions: pd.DataFrame, *, items: pd.DataFrame | None, users: pd.DataFrame | None,
                     item_roles: ColumnRoles | None = None, user_roles: ColumnRoles | None = None,
                     log_file: object, item_column: str = "item_id", dedupe: str = "exact",
                     report: LoadReport, name: str = "custom") -> RecDataset:
    """Join a parsed log (with ``__line__``) with its item and user tables into a RecDataset.

    With an item table, log rows whose item is not in it are counted skips ("item not in the item
    catalog", column ``item_column``). Users missing from the user table are kept and get empty
    attributes. Catalog items and users without interactions are kept (cold). Without tables, they
    are built from the ids in the log. Then ``dedupe`` is applied.

    Raises:
        HybridRecError: no interaction is left.
    """
    item_roles = item_roles or ColumnRoles()
    user_roles = user_roles or ColumnRoles()
    if items is not None:
        unknown = ~interactions["item_id"].isin(items["item_id"]).to_numpy()
        interactions = skip_rows(interactions, unknown, "item not in the item catalog", file=log_file,
                                 report=report, column=item_column)
    interactions, _ = deduplicate(interactions, dedupe, report=report, file=log_file)
    require_rows(interactions, file=log_file, report=report)

    if items is None:
        items = empty_attributes(pd.unique(interactions["item_id"]), item_roles, "item_id")
    if users is None:
        users = empty_attributes(pd.unique(interactions["user_id"]), user_roles, "user_id")
    else:
        log_users = pd.unique(interactions["user_id"])
        absent = log_users[~pd.Index(log_users).isin(users["user_id"])]
        if len(absent):
            report.note(f"{log_file}: {len(absent)} user(s) are not in the user table (kept without attributes)")
            extra = empty_attributes(absent, user_roles, "user_id").astype({"user_id": users["user_id"].dtype})
            users = pd.concat([users.drop(columns=[LINE], errors="ignore"), extra], ignore_index=True)
    dataset = RecDataset(
        interactions=interactions.drop(columns=[LINE], errors="ignore").reset_index(drop=True),
        items=items.drop(columns=[LINE], errors="ignore").reset_index(drop=True),
        users=users.drop(columns=[LINE], errors="ignore").reset_index(drop=True),
        item_roles=item_roles, user_roles=user_roles, name=name, report=report)
    cold_items, cold_users = len(dataset.cold_item_ids), len(dataset.cold_user_ids)
    if cold_items or cold_users:
        report.note(f"{cold_items} item(s) and {cold_users} user(s) have no interaction (kept as cold)")
    return dataset


def load_from_files(interactions_path: str | Path, items_path: str | Path | None = None,
                    users_path: str | Path | None = None, *, columns: ColumnMapping = ColumnMapping(),
                    event_weights: Mapping[str, float] | None = None, item_id_col: str = "item_id",
                    item_text_cols: Sequence[str] = (), item_categorical_cols: Sequence[str] = (),
                    item_multi_cols: Sequence[str] = (), multi_sep: str = "|",
                    item_numeric_cols: Sequence[str] = (), item_image_col: str | None = None,
                    image_dir: str | Path | None = None, user_id_col: str = "user_id",
                    user_text_cols: Sequence[str] = (), user_categorical_cols: Sequence[str] = (),
                    user_multi_cols: Sequence[str] = (), user_numeric_cols: Sequence[str] = (),
                    dedupe: str = "exact", strict: bool = False, encoding: str = "utf-8") -> RecDataset:
    """Load an event log and optional item and user tables into a RecDataset.

    Args:
        interactions_path: the log (``.csv``, ``.tsv``, ``.parquet`` or a partitioned Parquet folder,
            ``.jsonl``/``.json``; ``.gz`` ok), read in record batches by pyarrow (see
            :mod:`data_builders.parsing`); only the columns ``columns`` names are kept, and a
            ``split`` column (``train`` / ``test`` per row, for ``SplitConfig(kind="given")``).
        items_path, users_path: optional catalog files (same formats).
        columns: which log columns hold user, item, timestamp, event, weight and rating.
        event_weights: weight per event type; by default ``DEFAULT_EVENT_WEIGHTS`` when the log
            has an event column and no weight column. Given explicitly, it wins over a weight column.
        item_*_cols, multi_sep, item_image_col, image_dir: item columns by role (see
            :func:`data_builders.catalog.read_items`).
        user_*_cols: user columns by role.
        dedupe: duplicate-event policy (see :func:`data_builders.filters.deduplicate`).
        strict: raise on the first skipped row instead of counting it.
        encoding: text encoding of all files.

    Returns:
        RecDataset with string ids, ``name`` the log's file stem, and the load report (whose
        ``rows_read`` counts the rows each file gave, before skips: a log's rows/s for a benchmark).

    Raises:
        HybridRecError: bad arguments, missing file or column, undecodable or empty file, nothing
            usable left, or (strict) any skipped row.
    """
    if dedupe not in DEDUPE_POLICIES:
        raise HybridRecError(f"unknown dedupe policy {dedupe!r}; choose one of {list(DEDUPE_POLICIES)}")
    if items_path is None and (item_text_cols or item_categorical_cols or item_multi_cols or item_numeric_cols
                               or item_image_col or image_dir):
        raise HybridRecError("item columns or image_dir were given without items_path")
    if users_path is None and (user_text_cols or user_categorical_cols or user_multi_cols or user_numeric_cols):
        raise HybridRecError("user columns were given without users_path")
    report = LoadReport(strict=strict)
    log_file = Path(interactions_path)
    raw = read_table(log_file, report=report, encoding=encoding, columns=_log_columns(columns))
    interactions = interactions_from_table(raw, file=log_file, report=report, columns=columns,
                                           event_weights=event_weights)
    require_rows(interactions, file=log_file, report=report)

    items = item_roles = None
    if items_path is not None:
        items, item_roles = read_items(items_path, item_id_col=item_id_col, text_cols=item_text_cols,
                                       categorical_cols=item_categorical_cols, multi_cols=item_multi_cols,
                                       multi_sep=multi_sep, numeric_cols=item_numeric_cols,
                                       image_col=item_image_col, image_dir=image_dir, report=report,
                                       encoding=encoding)
    users = user_roles = None
    if users_path is not None:
        users, user_roles = read_users(users_path, user_id_col=user_id_col, text_cols=user_text_cols,
                                       categorical_cols=user_categorical_cols, multi_cols=user_multi_cols,
                                       multi_sep=multi_sep, numeric_cols=user_numeric_cols, report=report,
                                       encoding=encoding)
    dataset = assemble_dataset(interactions, items=items, users=users, item_roles=item_roles,
                               user_roles=user_roles, log_file=log_file, item_column=columns.item_id,
                               dedupe=dedupe, report=report, name=log_file.name.split(".")[0])
    report.log()
    return dataset
