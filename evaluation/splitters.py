"""Seeded, reproducible train/valid/test splits of an interaction table.

Every splitter returns a :class:`Split`: three disjoint interaction tables (rows keep all their
columns) and a JSON-ready ``spec`` (kind, ratios, seed, sizes) that travels into reports.

Kinds (see :data:`SPLIT_KINDS`):

* ``random``: per user, a seeded random ``test_ratio`` (and ``valid_ratio``) of their rows.
* ``temporal``: one global time cut; the latest ``test_ratio`` of all rows is test.
* ``user-temporal``: per user, their latest ``test_ratio`` of rows is test.
* ``leave-last``: per user, the last row is test (the one before it valid, with validation).
* ``cold-item``: a seeded ``cold_share`` of the items leaves training with all its rows;
  the remaining rows are split per user at random.
* ``cold-user``: the same with users.

Per-user counts round half up (``floor(n * ratio + 0.5)``) and always leave at least one training
row, so users with a single row stay in training. Temporal kinds need a ``timestamp`` column; equal
timestamps keep the table's row order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from data_builders.filters import implicit_positives
from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)

SPLIT_KINDS = ("random", "temporal", "user-temporal", "leave-last", "cold-item", "cold-user", "given")


@dataclass(frozen=True)
class SplitConfig:
    """How to split.

    Attributes:
        kind: one of :data:`SPLIT_KINDS`.
        test_ratio: share of rows (per user, or global for ``temporal``) held out for test;
            for cold kinds, the share of the warm rows. Ignored by ``leave-last``.
        valid_ratio: share held out for validation, kept apart from test (0: no validation).
            ``leave-last`` holds out one validation row per user when it is > 0.
        cold_share: for cold kinds, the share of items (users) whose rows all leave training.
            They are divided between test and validation in the ratio ``test_ratio:valid_ratio``.
        seed: seeds every random choice.
        min_rating: when set, only rows with ``rating >= min_rating`` are kept (positives).
        min_positives: then only users with at least this many distinct items are kept.
    """

    kind: str = "random"
    test_ratio: float = 0.2
    valid_ratio: float = 0.0
    cold_share: float = 0.2
    seed: int = 0
    min_rating: float | None = None
    min_positives: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise HybridRecError(f"SplitConfig.kind: unknown split {self.kind!r}; choose from {list(SPLIT_KINDS)}")
        for name in ("test_ratio", "valid_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise HybridRecError(f"SplitConfig.{name} must be in [0, 1), got {value}")
        if self.test_ratio + self.valid_ratio >= 1.0:
            raise HybridRecError(f"SplitConfig.test_ratio + valid_ratio must be < 1, got "
                                 f"{self.test_ratio} + {self.valid_ratio}")
        if self.test_ratio + self.valid_ratio == 0.0 and self.kind not in ("leave-last", "cold-item", "cold-user",
                                                                            "given"):
            raise HybridRecError(f"SplitConfig.test_ratio: a {self.kind!r} split needs test_ratio > 0")
        if not 0.0 < self.cold_share < 1.0:
            raise HybridRecError(f"SplitConfig.cold_share must be in (0, 1), got {self.cold_share}")
        if self.min_positives < 0:
            raise HybridRecError(f"SplitConfig.min_positives must be >= 0, got {self.min_positives}")


@dataclass(frozen=True, eq=False)
class Split:
    """Disjoint train / valid / test interaction tables and how they were made.

    Attributes:
        train, valid, test: interaction tables (``valid`` may be empty).
        spec: JSON-ready description: kind, ratios, seed, filter, sizes.
        cold_item_ids: items held out of training by a ``cold-item`` split (else empty).
        cold_user_ids: users held out of training by a ``cold-user`` split (else empty).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    spec: dict
    cold_item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cold_user_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def sizes(self) -> dict[str, int]:
        """Row, user and item counts of each part."""
        return self.spec["sizes"]

    def summary(self) -> str:
        """One line: kind, seed and sizes."""
        sizes = self.sizes
        return (f"{self.spec['kind']} split (seed {self.spec['seed']}): train {sizes['train']:,} rows / "
                f"{sizes['train_users']:,} users / {sizes['train_items']:,} items, valid {sizes['valid']:,}, "
                f"test {sizes['test']:,} rows / {sizes['test_users']:,} users / {sizes['test_items']:,} items")


# -- per-user positions ---------------------------------------------------------------------

def _positions_within_user(user_codes: np.ndarray, sort_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: its 0-based position among its user's rows ordered by ``sort_key`` (then row
    order), and its user's row count. Both ``[n_rows]``."""
    n_rows = len(user_codes)
    order = np.lexsort((np.arange(n_rows), sort_key, user_codes))
    counts = np.bincount(user_codes)
    group_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(n_rows, dtype=np.int64)
    position[order] = np.arange(n_rows) - group_start[user_codes[order]]
    return position, counts[user_codes]


def _held_out_counts(row_counts: np.ndarray, test_ratio: float, valid_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Test and validation rows per user (round half up, at least one training row left)."""
    n_test = np.floor(row_counts * test_ratio + 0.5).astype(np.int64)
    n_test = np.minimum(n_test, row_counts - 1)
    n_valid = np.floor(row_counts * valid_ratio + 0.5).astype(np.int64)
    n_valid = np.minimum(n_valid, row_counts - 1 - n_test)
    return n_test, n_valid


def _assign_per_user(interactions: pd.DataFrame, sort_key: np.ndarray, test_ratio: float,
                     valid_ratio: float, *, latest_held_out: bool) -> np.ndarray:
    """Part of each row (0 train, 1 valid, 2 test) for a per-user split ordered by ``sort_key``.

    With ``latest_held_out`` the last rows go to test (and the ones before them to valid);
    otherwise the first rows in ``sort_key`` order do (a random key makes that a random choice).
    """
    user_codes = pd.factorize(interactions["user_id"])[0]
    position, row_counts = _positions_within_user(user_codes, sort_key)
    n_test, n_valid = _held_out_counts(row_counts, test_ratio, valid_ratio)
    if latest_held_out:
        position = row_counts - 1 - position
    part = np.zeros(len(interactions), dtype=np.int8)
    part[position < n_test + n_valid] = 1
    part[position < n_test] = 2
    return part


def _timestamps(interactions: pd.DataFrame, kind: str) -> np.ndarray:
    if "timestamp" not in interactions.columns:
        raise HybridRecError(f"a {kind!r} split needs a 'timestamp' column; interactions has "
                             f"{list(interactions.columns)}")
    return interactions["timestamp"].to_numpy(np.int64)


def _check_interactions(interactions: pd.DataFrame) -> None:
    missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
    if missing:
        raise HybridRecError(f"interactions has no column(s) {missing}; found {list(interactions.columns)}")
    if len(interactions) == 0:
        raise HybridRecError("interactions is empty: nothing to split")


def _build_split(interactions: pd.DataFrame, part: np.ndarray, spec: dict, *,
                 cold_item_ids: np.ndarray | None = None, cold_user_ids: np.ndarray | None = None) -> Split:
    tables = [interactions.loc[part == code].reset_index(drop=True) for code in (0, 1, 2)]
    train, valid, test = tables
    spec = dict(spec)
    spec["sizes"] = {
        "train": len(train), "valid": len(valid), "test": len(test),
        "train_users": int(train["user_id"].nunique()), "train_items": int(train["item_id"].nunique()),
        "valid_users": int(valid["user_id"].nunique()),
        "test_users": int(test["user_id"].nunique()), "test_items": int(test["item_id"].nunique()),
        "held_out_items": 0 if cold_item_ids is None else len(cold_item_ids),
        "held_out_users": 0 if cold_user_ids is None else len(cold_user_ids),
    }
    split = Split(train=train, valid=valid, test=test, spec=spec,
                  cold_item_ids=np.asarray([] if cold_item_ids is None else cold_item_ids),
                  cold_user_ids=np.asarray([] if cold_user_ids is None else cold_user_ids))
    logger.info("%s", split.summary())
    return split


def _spec(kind: str, seed: int | None, **extra) -> dict:
    return {"kind": kind, "seed": seed, **extra}


# -- splitters ------------------------------------------------------------------------------

#: The column a reader with a published split (e.g. :mod:`data_builders.lightgcn`) marks rows with.
GIVEN_SPLIT_COLUMN = "split"
_GIVEN_PARTS = {"train": 0, "valid": 1, "test": 2}


def given_split(interactions: pd.DataFrame) -> Split:
    """The split the data came with: its ``split`` column says ``train``, ``valid`` or ``test``
    for every row (a published train/test pair, scored exactly as published)."""
    _check_interactions(interactions)
    if GIVEN_SPLIT_COLUMN not in interactions.columns:
        raise HybridRecError(f"a 'given' split needs a {GIVEN_SPLIT_COLUMN!r} column (train/valid/test) in the "
                             "interactions, as readers of published splits give (e.g. --dataset gowalla)")
    labels = interactions[GIVEN_SPLIT_COLUMN].astype(str)
    unknown = sorted(set(labels.unique()) - set(_GIVEN_PARTS))
    if unknown:
        raise HybridRecError(f"column {GIVEN_SPLIT_COLUMN!r} holds {unknown}; expected train, valid or test")
    part = labels.map(_GIVEN_PARTS).to_numpy()
    return _build_split(interactions.drop(columns=[GIVEN_SPLIT_COLUMN]), part, _spec("given", None))


def random_split(interactions: pd.DataFrame, *, test_ratio: float = 0.2, valid_ratio: float = 0.0,
                 seed: int = 0) -> Split:
    """Per user, a seeded random ``test_ratio`` of rows to test and ``valid_ratio`` to valid."""
    _check_interactions(interactions)
    random_key = np.random.default_rng(seed).random(len(interactions))
    part = _assign_per_user(interactions, random_key, test_ratio, valid_ratio, latest_held_out=False)
    return _build_split(interactions, part, _spec("random", seed, test_ratio=test_ratio, valid_ratio=valid_ratio))


def temporal_split(interactions: pd.DataFrame, *, test_ratio: float = 0.2, valid_ratio: float = 0.0) -> Split:
    """One global time cut: the latest ``test_ratio`` of rows is test, the ``valid_ratio`` before it valid.

    Users and items first seen after the cut are cold in the test set.
    """
    _check_interactions(interactions)
    timestamps = _timestamps(interactions, "temporal")
    n_rows = len(interactions)
    order = np.lexsort((np.arange(n_rows), timestamps))
    n_test = int(np.floor(n_rows * test_ratio + 0.5))
    n_valid = int(np.floor(n_rows * valid_ratio + 0.5))
    part = np.zeros(n_rows, dtype=np.int8)
    part[order[n_rows - n_test - n_valid:]] = 1
    part[order[n_rows - n_test:]] = 2
    cut = timestamps[order[n_rows - n_test - n_valid]] if n_test + n_valid else None
    return _build_split(interactions, part, _spec("temporal", None, test_ratio=test_ratio, valid_ratio=valid_ratio,
                                                  train_until_timestamp=None if cut is None else int(cut)))


def user_temporal_split(interactions: pd.DataFrame, *, test_ratio: float = 0.2, valid_ratio: float = 0.0) -> Split:
    """Per user, their latest ``test_ratio`` of rows to test and the ``valid_ratio`` before to valid."""
    _check_interactions(interactions)
    part = _assign_per_user(interactions, _timestamps(interactions, "user-temporal"), test_ratio, valid_ratio,
                            latest_held_out=True)
    return _build_split(interactions, part, _spec("user-temporal", None, test_ratio=test_ratio,
                                                  valid_ratio=valid_ratio))


def leave_last_out_split(interactions: pd.DataFrame, *, with_valid: bool = False) -> Split:
    """Per user, the latest row to test (and the one before to valid with ``with_valid``).

    Users keep at least one training row, so users with one row (two with validation) stay in training.
    """
    _check_interactions(interactions)
    timestamps = _timestamps(interactions, "leave-last")
    user_codes = pd.factorize(interactions["user_id"])[0]
    position, row_counts = _positions_within_user(user_codes, timestamps)
    from_last = row_counts - 1 - position
    part = np.zeros(len(interactions), dtype=np.int8)
    part[(from_last == 0) & (row_counts >= 2)] = 2
    if with_valid:
        part[(from_last == 1) & (row_counts >= 3)] = 1
    return _build_split(interactions, part, _spec("leave-last", None, with_valid=with_valid))


def _choose_held_out(ids: np.ndarray, share: float, test_ratio: float, valid_ratio: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded choice of ``share`` of ``ids`` (sorted first, so row order does not matter), divided
    into test and validation ids in the ratio ``test_ratio:valid_ratio``."""
    ids = np.sort(ids)
    n_held = min(max(1, int(np.floor(len(ids) * share + 0.5))), len(ids) - 1)
    held = ids[rng.permutation(len(ids))[:n_held]]
    valid_fraction = valid_ratio / (test_ratio + valid_ratio) if valid_ratio > 0 else 0.0
    n_valid = int(np.floor(n_held * valid_fraction + 0.5))
    return np.sort(held[n_valid:]), np.sort(held[:n_valid])


def _cold_split(interactions: pd.DataFrame, column: str, kind: str, *, cold_share: float, test_ratio: float,
                valid_ratio: float, seed: int) -> Split:
    _check_interactions(interactions)
    rng = np.random.default_rng(seed)
    ids = pd.unique(interactions[column].to_numpy())
    if len(ids) < 2:
        raise HybridRecError(f"a {kind!r} split needs at least 2 distinct {column} values, got {len(ids)}")
    test_ids, valid_ids = _choose_held_out(ids, cold_share, test_ratio, valid_ratio, rng)
    values = interactions[column]
    in_test, in_valid = values.isin(test_ids).to_numpy(), values.isin(valid_ids).to_numpy()
    part = np.zeros(len(interactions), dtype=np.int8)
    warm = ~(in_test | in_valid)
    if test_ratio + valid_ratio > 0 and warm.any():
        random_key = rng.random(int(warm.sum()))
        part[warm] = _assign_per_user(interactions.loc[warm], random_key, test_ratio, valid_ratio,
                                      latest_held_out=False)
    part[in_valid] = 1
    part[in_test] = 2
    held = np.sort(np.concatenate([test_ids, valid_ids]))
    spec = _spec(kind, seed, cold_share=cold_share, test_ratio=test_ratio, valid_ratio=valid_ratio,
                 **{f"held_out_{column.removesuffix('_id')}s_test": len(test_ids),
                    f"held_out_{column.removesuffix('_id')}s_valid": len(valid_ids)})
    if column == "item_id":
        return _build_split(interactions, part, spec, cold_item_ids=held)
    return _build_split(interactions, part, spec, cold_user_ids=held)


def cold_item_split(interactions: pd.DataFrame, *, cold_share: float = 0.2, test_ratio: float = 0.2,
                    valid_ratio: float = 0.0, seed: int = 0) -> Split:
    """A seeded ``cold_share`` of items leaves training with all its rows (they stay in the catalog).

    Held-out items' rows go to test (a ``valid_ratio / (test_ratio + valid_ratio)`` share of the
    items to valid instead); the other rows are split per user at random with the same ratios.
    """
    return _cold_split(interactions, "item_id", "cold-item", cold_share=cold_share, test_ratio=test_ratio,
                       valid_ratio=valid_ratio, seed=seed)


def cold_user_split(interactions: pd.DataFrame, *, cold_share: float = 0.2, test_ratio: float = 0.2,
                    valid_ratio: float = 0.0, seed: int = 0) -> Split:
    """A seeded ``cold_share`` of users leaves training with all its rows (their attributes stay
    in the users table); the rest is split as in :func:`cold_item_split`."""
    return _cold_split(interactions, "user_id", "cold-user", cold_share=cold_share, test_ratio=test_ratio,
                       valid_ratio=valid_ratio, seed=seed)


def make_split(interactions: pd.DataFrame, config: SplitConfig) -> Split:
    """Apply ``config``'s positives filter (if any) and its splitter; the filter goes into ``spec``."""
    filtered = interactions
    if config.min_rating is not None or config.min_positives > 0:
        filtered, _ = implicit_positives(interactions, min_rating=config.min_rating,
                                         min_positives=config.min_positives, unit_weights=False)
        filtered = filtered.reset_index(drop=True)
        if len(filtered) == 0:
            raise HybridRecError(f"no interactions left after the positives filter (min_rating={config.min_rating}, "
                                 f"min_positives={config.min_positives})")
    if config.kind == "given":
        split = given_split(filtered)
    elif config.kind == "random":
        split = random_split(filtered, test_ratio=config.test_ratio, valid_ratio=config.valid_ratio, seed=config.seed)
    elif config.kind == "temporal":
        split = temporal_split(filtered, test_ratio=config.test_ratio, valid_ratio=config.valid_ratio)
    elif config.kind == "user-temporal":
        split = user_temporal_split(filtered, test_ratio=config.test_ratio, valid_ratio=config.valid_ratio)
    elif config.kind == "leave-last":
        split = leave_last_out_split(filtered, with_valid=config.valid_ratio > 0)
    elif config.kind == "cold-item":
        split = cold_item_split(filtered, cold_share=config.cold_share, test_ratio=config.test_ratio,
                                valid_ratio=config.valid_ratio, seed=config.seed)
    else:
        split = cold_user_split(filtered, cold_share=config.cold_share, test_ratio=config.test_ratio,
                                valid_ratio=config.valid_ratio, seed=config.seed)
    split.spec["filter"] = {"min_rating": config.min_rating, "min_positives": config.min_positives,
                            "rows_before": len(interactions), "rows_after": len(filtered)}
    return split
