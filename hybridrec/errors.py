"""The one exception type raised by hybridrec for bad input, bad configuration or unknown ids."""

from __future__ import annotations


class HybridRecError(ValueError):
    """Raised for any user-facing error: bad files, missing columns, unknown ids, bad configs.

    Messages name the file, line (1-based, header counted as line 1 for CSV) and column
    whenever they are known, so the user can go straight to the problem.
    """


def located(message: str, *, file: object = None, line: int | None = None, column: str | None = None) -> str:
    """Prefix ``message`` with ``file:line [column]`` for the parts that are known."""
    where = []
    if file is not None:
        where.append(str(file) + (f":{line}" if line is not None else ""))
    elif line is not None:
        where.append(f"line {line}")
    if column is not None:
        where.append(f"column {column!r}")
    return (", ".join(where) + ": " + message) if where else message
