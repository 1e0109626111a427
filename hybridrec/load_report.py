"""Counted, reported skips and conversions: bad rows are never dropped, nor values changed, silently."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from hybridrec.errors import HybridRecError, located

logger = logging.getLogger(__name__)


def location(file: object = None, line: int | None = None, column: str | None = None) -> str | None:
    """``file:line[:column]`` (the parts that are known), or None when the line is unknown."""
    if line is None:
        return None
    where = f"{file}:{line}" if file is not None else f"line {line}"
    return where + (f":{column}" if column is not None else "")


@dataclass
class LoadReport:
    """What a reader kept, changed and skipped.

    Every skip is counted per ``(file, reason)``; the first few examples are kept with their
    location (``examples``: located messages; ``locations``: ``file:line[:column]``). Values that
    were kept but converted on a per-value guess (a timestamp in another unit than the rest of its
    column, say) are counted the same way under ``changed`` / ``changed_locations``. With
    ``strict=True`` the first skip raises :class:`HybridRecError` instead. ``rows_read`` counts the
    data rows each file gave its reader, the skipped ones included (blank lines and the header not).
    """

    strict: bool = False
    max_examples: int = 5
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    locations: dict = field(default_factory=dict)
    changed: Counter = field(default_factory=Counter)
    changed_locations: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    rows_read: Counter = field(default_factory=Counter)

    def read(self, file: object, rows: int) -> None:
        """Record that ``file`` gave its reader ``rows`` data rows (kept or skipped)."""
        self.rows_read[str(file)] += int(rows)

    def skip(self, reason: str, *, file: object = None, line: int | None = None,
             column: str | None = None, count: int = 1) -> None:
        """Record ``count`` skipped rows for ``reason`` (or raise when strict)."""
        if count <= 0:
            return
        message = located(reason, file=file, line=line, column=column)
        if self.strict:
            raise HybridRecError(message + " (strict mode: skips are errors)")
        key = (str(file) if file is not None else "", reason)
        self.skipped[key] += count
        shown = self.examples.setdefault(key, [])
        if len(shown) < self.max_examples:
            shown.append(message)
        self._add_location(self.locations, key, location(file, line, column))

    def change(self, reason: str, *, file: object = None, lines: Sequence[int] = (), column: str | None = None,
               count: int | None = None) -> None:
        """Record ``count`` values (default ``len(lines)``) kept but converted for ``reason``; the first
        few ``lines`` are kept as locations."""
        count = len(lines) if count is None else count
        if count <= 0:
            return
        key = (str(file) if file is not None else "", reason)
        self.changed[key] += count
        for line in list(lines)[: self.max_examples]:
            self._add_location(self.changed_locations, key, location(file, int(line), column))

    def _add_location(self, where: dict, key: tuple[str, str], place: str | None) -> None:
        shown = where.setdefault(key, [])
        if place is not None and len(shown) < self.max_examples:
            shown.append(place)

    def note(self, message: str) -> None:
        """Record an informational line (e.g. items without poster) that is not a skip."""
        self.notes.append(message)

    @property
    def total_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def merge(self, other: "LoadReport") -> None:
        self.skipped.update(other.skipped)
        self.changed.update(other.changed)
        self.rows_read.update(other.rows_read)
        for mine, theirs in ((self.examples, other.examples), (self.locations, other.locations),
                             (self.changed_locations, other.changed_locations)):
            for key, shown in theirs.items():
                kept = mine.setdefault(key, [])
                kept.extend(shown[: max(0, self.max_examples - len(kept))])
        self.notes.extend(other.notes)

    def reasons(self, file: object) -> list[tuple[str, int]]:
        """``(reason, count)`` of every skip recorded for ``file``, most frequent first."""
        counts = [(reason, int(count)) for (name, reason), count in self.skipped.items() if name == str(file)]
        return sorted(counts, key=lambda pair: (-pair[1], pair[0]))

    def lines(self) -> list[str]:
        """Human-readable summary lines, one per (file, reason), with the first locations."""
        out = []
        for kind, counts, places in (("skipped", self.skipped, self.locations),
                                     ("changed", self.changed, self.changed_locations)):
            noun = "row(s)" if kind == "skipped" else "value(s)"
            for (file, reason), count in sorted(counts.items()):
                prefix = f"{file}: " if file else ""
                shown = places.get((file, reason), [])
                at = f" (at {', '.join(shown)}{', ...' if count > len(shown) else ''})" if shown else ""
                out.append(f"{kind} {count} {noun}: {prefix}{reason}{at}")
        out.extend(self.notes)
        return out

    def log(self) -> None:
        """Skips and changed values at WARNING (the CLI shows them), notes at INFO."""
        for line in self.lines():
            logger.warning(line) if line.startswith(("skipped", "changed")) else logger.info(line)

    def to_dict(self) -> dict:
        """JSON-ready: rows read per file, counts per (file, reason) with their first locations, and the notes."""
        return {
            "rows_read": {file: int(rows) for file, rows in sorted(self.rows_read.items())},
            "total_skipped": self.total_skipped,
            "skipped": [{"file": f, "reason": r, "count": int(c), "locations": list(self.locations.get((f, r), []))}
                        for (f, r), c in sorted(self.skipped.items())],
            "changed": [{"file": f, "reason": r, "count": int(c),
                         "locations": list(self.changed_locations.get((f, r), []))}
                        for (f, r), c in sorted(self.changed.items())],
            "notes": list(self.notes),
        }
