"""Filters on the canonical interactions table.

Each is a pure function returning ``(filtered, counts)``; ``counts["rows_removed"]`` is always
there. Given a :class:`LoadReport`, removals are also recorded there (exact duplicates as counted
skips, which strict mode turns into errors; chosen reductions such as k-core as notes), so nothing
is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from data_builders.parsing import skip_rows
from hybridrec.errors import HybridRecError
from hybridrec.load_report import LoadReport

logger = logging.getLogger(__name__)

DEDUPE_POLICIES = ("none", "exact", "first", "last", "max", "sum")
# Columns that make two rows "the same event" for the "exact" policy, when present.
EVENT_COLUMNS = ("user_id", "item_id", "event", "timestamp", "weight", "rating")


def _require(interactions: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in interactions.columns]
    if missing:
        raise HybridRecError(f"{what} needs interaction column(s) {missing}; "
                             f"the table has {list(interactions.columns)}")


def _record(report: LoadReport | None, message: str) -> None:
    if report is not None:
        report.note(message)
    logger.info(message)


def k_core(interactions: pd.DataFrame, min_user: int = 5, min_item: int = 5, *,
           report: LoadReport | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the largest subset where every user has >= ``min_user`` and every item >= ``min_item`` rows.

    Removing sparse users can make items sparse and vice versa, so this repeats to a fixed point.
    Counts rows, so deduplicate first if repeated events should count once.

    Returns:
        ``(filtered, counts)`` with ``rows_removed``, ``users_removed``, ``items_removed`` and
        ``iterations`` (passes until nothing changed).
    """
    for name, value in (("min_user", min_user), ("min_item", min_item)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise HybridRecError(f"k_core: {name} must be a non-negative integer, got {value!r}")
    _require(interactions, ["user_id", "item_id"], "k_core")
    users, user_ids = pd.factorize(interactions["user_id"])
    items, item_ids = pd.factorize(interactions["item_id"])
    keep = np.ones(len(interactions), dtype=bool)
    iterations = 0
    while True:
        iterations += 1
        user_counts = np.bincount(users[keep], minlength=len(user_ids))
        item_counts = np.bincount(items[keep], minlength=len(item_ids))
        still = keep & (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        if np.array_equal(still, keep):
            break
        keep = still
    filtered = interactions.loc[keep]
    counts = {
        "rows_removed": int((~keep).sum()),
        "users_removed": len(user_ids) - int(np.unique(users[keep]).size),
        "items_removed": len(item_ids) - int(np.unique(items[keep]).size),
        "iterations": iterations,
    }
    _record(report, f"k-core (min_user={min_user}, min_item={min_item}): removed {counts['rows_removed']} "
                    f"interaction(s), {counts['users_removed']} user(s), {counts['items_removed']} item(s) "
                    f"in {iterations} pass(es)")
    return filtered, counts


def implicit_positives(interactions: pd.DataFrame, min_rating: float | None = 4.0, *, min_positives: int = 0,
                       unit_weights: bool = True,
                       report: LoadReport | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep rows with ``rating >= min_rating`` as positives (the rating column stays).

    The one positives filter of the package: ``hybridrec train --min-rating`` uses the defaults
    (positives of weight 1), the evaluation splits (:func:`evaluation.splitters.make_split`) keep
    the table's weights and drop users with too few positives.

    Args:
        min_rating: the lowest rating kept (compared in float64); None keeps every row and needs
            no rating column.
        min_positives: then keep only users with at least this many distinct items (one pass,
            items are not filtered); 0 keeps every user.
        unit_weights: give every kept row weight 1 (float32); False keeps the table's weights.

    Returns:
        ``(filtered, {"rows_removed": n})``; rows keep their order and index.
    """
    keep = np.ones(len(interactions), dtype=bool)
    if min_rating is not None:
        _require(interactions, ["rating"], "implicit_positives")
        keep = (interactions["rating"].to_numpy(dtype=np.float64, na_value=np.nan) >= min_rating)
    users_removed = 0
    if min_positives > 0:
        per_user = interactions.loc[keep].groupby("user_id", sort=False)["item_id"].nunique()
        users_removed = int((per_user < min_positives).sum())
        keep &= interactions["user_id"].isin(per_user.index[per_user >= min_positives]).to_numpy()
    filtered = interactions.loc[keep].copy()
    if unit_weights:
        filtered["weight"] = np.ones(len(filtered), dtype=np.float32)
    counts = {"rows_removed": int((~keep).sum())}
    rules = ([f"rating >= {min_rating}"] if min_rating is not None else []) + (
        [f"users with >= {min_positives} items"] if min_positives > 0 else [])
    _record(report, f"implicit positives ({', '.join(rules) or 'no filter'}): removed {counts['rows_removed']} "
                    "interaction(s)" + (f", {users_removed} user(s)" if min_positives > 0 else ""))
    return filtered, counts


def _order(interactions: pd.DataFrame, by_weight: bool = False) -> np.ndarray:
    """Positions sorted by (weight when asked, then) timestamp; ties keep row order."""
    keys = []
    if "timestamp" in interactions.columns:
        keys.append(interactions["timestamp"].to_numpy())
    if by_weight:
        keys.append(interactions["weight"].to_numpy(dtype=np.float64))
    if not keys:
        return np.arange(len(interactions))
    return np.lexsort([np.arange(len(interactions)), *keys])


def _one_per_pair(interactions: pd.DataFrame, order: np.ndarray, keep: str) -> np.ndarray:
    """Mask keeping one row per user-item pair: the ``keep`` ("first"/"last") one in ``order``."""
    pairs = interactions[["user_id", "item_id"]].iloc[order]
    repeated = pairs.duplicated(keep=keep).to_numpy()
    mask = np.ones(len(interactions), dtype=bool)
    mask[order[repeated]] = False
    return mask


def deduplicate(interactions: pd.DataFrame, policy: str = "exact", *, report: LoadReport | None = None,
                file: object = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Resolve repeated events.

    Policies:
        ``"none"``: unchanged.
        ``"exact"``: drop rows identical to an earlier row in every canonical column present
            (user, item, event, timestamp, weight, rating); each is a counted skip
            "duplicate event" (naming ``file`` and the row's line when the table has ``__line__``).
        ``"first"`` / ``"last"``: one row per user-item pair, the earliest / latest by timestamp
            (row order without timestamps).
        ``"max"``: one row per pair, the one with the largest weight (ties: the latest).
        ``"sum"``: one row per pair, the latest, with the pair's summed weight.

    Rows keep their original order. Returns ``(filtered, {"rows_removed": n})``.
    """
    if policy not in DEDUPE_POLICIES:
        raise HybridRecError(f"unknown dedupe policy {policy!r}; choose one of {list(DEDUPE_POLICIES)}")
    _require(interactions, ["user_id", "item_id"], "deduplicate")
    if policy == "none" or len(interactions) == 0:
        return interactions, {"rows_removed": 0}
    if policy == "exact":
        key = [c for c in EVENT_COLUMNS if c in interactions.columns]
        repeated = interactions.duplicated(subset=key, keep="first").to_numpy()
        if report is not None:
            filtered = skip_rows(interactions, repeated, "duplicate event (same " + ", ".join(key)
                                 + " as an earlier row)", file=file, report=report)
        else:
            filtered = interactions.loc[~repeated]
        return filtered, {"rows_removed": int(repeated.sum())}

    if policy in ("max", "sum"):
        _require(interactions, ["weight"], f"dedupe policy {policy!r}")
    if policy == "max":
        mask = _one_per_pair(interactions, _order(interactions, by_weight=True), "last")
    else:
        mask = _one_per_pair(interactions, _order(interactions), "first" if policy == "first" else "last")
    filtered = interactions.loc[mask]
    if policy == "sum":
        pair_codes = _pair_codes(interactions)
        sums = np.bincount(pair_codes, weights=interactions["weight"].to_numpy(dtype=np.float64))
        filtered = filtered.copy()
        filtered["weight"] = sums[pair_codes[mask]].astype(interactions["weight"].dtype)
    removed = int((~mask).sum())
    _record(report, f"dedupe {policy!r}: merged {removed} repeated user-item row(s)"
                    + (f" in {file}" if file is not None else ""))
    return filtered, {"rows_removed": removed}


def _pair_codes(interactions: pd.DataFrame) -> np.ndarray:
    """One integer code per distinct (user_id, item_id) pair."""
    users = pd.factorize(interactions["user_id"])[0].astype(np.int64)
    items, item_ids = pd.factorize(interactions["item_id"])
    return pd.factorize(users * max(len(item_ids), 1) + items)[0]

