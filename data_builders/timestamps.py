"""Timestamps of any common form -> int64 unix seconds, with the unit decided per value.

Numeric timestamps are read as seconds, milli-, micro- or nanoseconds since the epoch by each
value's own magnitude (:data:`TIMESTAMP_UNITS`), never by the column's median, so one seconds value
in a milliseconds column stays in its year. A column whose values come in more than one unit is
reported (each unit's count and first lines, under the load report's ``changed``); with
``strict=True`` it is an error naming the file, the column and the first line in a minority unit.
ISO-8601 strings (naive ones taken as UTC) and datetime columns are read as they are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_builders.parsing import LINE, numeric_values, skip_rows
from hybridrec.errors import HybridRecError, located
from hybridrec.load_report import LoadReport

# Numeric timestamps above these magnitudes are taken as milli-, micro- or nanoseconds (seconds below
# 1e11 reach the year 5138; milliseconds below it end in March 1973).
TIMESTAMP_UNITS = ((1e11, 10**3, "milliseconds"), (1e14, 10**6, "microseconds"), (1e17, 10**9, "nanoseconds"))
UNIT_NAMES = ("seconds",) + tuple(unit for _, _, unit in TIMESTAMP_UNITS)
UNIT_DIVISORS = np.array([1] + [divisor for _, divisor, _ in TIMESTAMP_UNITS], dtype=np.float64)


def _datetime_seconds(values: pd.Series) -> np.ndarray:
    """Unix seconds (float, NaN for NaT) of a datetime Series; naive times are taken as UTC."""
    if values.dt.tz is None:
        values = values.dt.tz_localize("UTC")
    seconds = (values - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=np.float64, na_value=np.nan)


def timestamp_units(values: np.ndarray) -> np.ndarray:
    """Index into :data:`UNIT_NAMES` of each numeric timestamp, by its magnitude (0 = seconds)."""
    magnitude = np.abs(np.nan_to_num(values))
    units = np.zeros(len(values), dtype=np.int64)
    for code, (threshold, _, _) in enumerate(TIMESTAMP_UNITS, start=1):
        units[magnitude > threshold] = code
    return units


def _numeric_seconds(seconds: np.ndarray, numeric: np.ndarray, table: pd.DataFrame, raw: pd.Series, column: str, *,
                     file: object, report: LoadReport) -> np.ndarray:
    """``seconds`` with each numeric value divided by its own unit; one unit is a note, several are reported."""
    units = timestamp_units(seconds)
    present, counts = np.unique(units[numeric], return_counts=True)
    if len(present) == 1:
        if present[0]:
            report.note(located(f"timestamps read as {UNIT_NAMES[present[0]]} since the epoch", file=file,
                                column=column))
        return np.where(numeric, np.floor(seconds / UNIT_DIVISORS[units]), seconds)
    lines = table[LINE].to_numpy() if LINE in table.columns else None
    order = np.argsort(-counts, kind="stable")
    summary = ", ".join(f"{int(counts[i])} as {UNIT_NAMES[present[i]]}" for i in order)
    majority = present[order[0]]
    if report.strict:
        first = int(np.flatnonzero(numeric & (units != majority))[0])
        raise HybridRecError(located(
            f"timestamps mix units ({summary}, by magnitude); value {raw.iloc[first]!r} is not in "
            f"{UNIT_NAMES[majority]} like most (strict mode: a mixed-unit column is an error)",
            file=file, line=int(lines[first]) if lines is not None else None, column=column))
    mixed = " and ".join(UNIT_NAMES[unit] for unit in present)
    for unit in present:
        flagged = numeric & (units == unit)
        reason = f"timestamp read as {UNIT_NAMES[unit]} by its magnitude (the column mixes {mixed})"
        report.change(reason, file=file, column=column, count=int(flagged.sum()),
                      lines=lines[flagged][: report.max_examples] if lines is not None else ())
    return np.where(numeric, np.floor(seconds / UNIT_DIVISORS[units]), seconds)


def parse_timestamps(table: pd.DataFrame, column: str, *, file: object, report: LoadReport) -> pd.DataFrame:
    """Convert ``column`` to int64 unix seconds; blank or unparsable values are counted skips.

    Accepts numbers (seconds, or milli-, micro- or nanoseconds decided per value by magnitude: see
    the module docstring), ISO-8601 strings (naive ones taken as UTC) and datetime columns.

    Raises:
        HybridRecError: in strict mode, a skipped value or a column mixing units.
    """
    raw = table[column]
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        seconds = _datetime_seconds(raw)
        blank = np.isnan(seconds)
    else:
        seconds, blank = numeric_values(raw)
        numeric = ~np.isnan(seconds)
        if numeric.any():
            seconds = _numeric_seconds(seconds, numeric, table, raw, column, file=file, report=report)
        wanted = ~numeric & ~blank
        if wanted.any():
            texts = pd.Series(raw.to_numpy()[wanted], dtype="str").str.strip()
            parsed = pd.to_datetime(texts, errors="coerce", utc=True, format="ISO8601")
            retry = parsed.isna().to_numpy()
            if retry.any():
                parsed[retry] = pd.to_datetime(texts[retry], errors="coerce", utc=True, format="mixed")
            seconds[wanted] = _datetime_seconds(parsed)
    table = table.copy()
    table[column] = seconds
    keep = np.ones(len(table), dtype=bool)
    for reason, flagged in (("missing timestamp", blank), ("cannot parse timestamp", np.isnan(seconds) & ~blank)):
        if flagged.any():
            skip_rows(table.assign(**{column: raw.to_numpy()}), flagged, reason, file=file, report=report,
                      column=column)
            keep &= ~flagged
    table = table.loc[keep]
    table[column] = table[column].to_numpy(np.int64)
    return table
