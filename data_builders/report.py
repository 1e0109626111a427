"""Counted, reported skips: bad rows are never dropped silently."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from data_builders.errors import HybridRecError, located

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a reader kept and skipped.

    Every skip is counted per ``(file, reason)`` and the first few examples are kept with
    their location. With ``strict=True`` the first skip raises :class:`HybridRecError` instead.
    """

    strict: bool = False
    max_examples: int = 5
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

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

    def note(self, message: str) -> None:
        """Record an informational line (e.g. items without poster) that is not a skip."""
        self.notes.append(message)

    @property
    def total_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def merge(self, other: "LoadReport") -> None:
        self.skipped.update(other.skipped)
        for key, shown in other.examples.items():
            self.examples.setdefault(key, []).extend(shown[: self.max_examples])
        self.notes.extend(other.notes)

    def lines(self) -> list[str]:
        """Human-readable summary lines, one per (file, reason)."""
        out = []
        for (file, reason), count in sorted(self.skipped.items()):
            prefix = f"{file}: " if file else ""
            out.append(f"skipped {count} row(s): {prefix}{reason}")
        out.extend(self.notes)
        return out

    def log(self) -> None:
        for line in self.lines():
            logger.warning(line) if line.startswith("skipped") else logger.info(line)

    def to_dict(self) -> dict:
        return {
            "total_skipped": self.total_skipped,
            "skipped": [{"file": f, "reason": r, "count": int(c)} for (f, r), c in sorted(self.skipped.items())],
            "notes": list(self.notes),
        }
