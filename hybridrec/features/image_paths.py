"""Image file paths of items, confined to the image folder they were given.

The one place that turns an image column, an ``--image-pattern`` or a folder of ``<id>.jpg`` files
into local paths. When an image folder is given, every path is resolved (``..``, absolute paths and
symlinks followed) and one that lands outside the folder is refused: that item gets no image, and
the refusal is counted with its item, row and path, never silently dropped. Absolute paths are only
taken as they are when no image folder is given (the user named the files on purpose).
"""

from __future__ import annotations

import os
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hybridrec.errors import HybridRecError, located

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
OUTSIDE_IMAGE_DIR = "image path outside --image-dir"
MAX_EXAMPLES = 5


def validate_image_pattern(pattern: str, *, flag: str = "--image-pattern") -> str:
    """Check that ``pattern`` uses only the plain field ``{item_id}`` (at least once); return it.

    Attribute or index access (``{item_id.x}``, ``{item_id[0]}``), other fields, conversions and
    format specs are refused, so filling the pattern can never fail.

    Raises:
        HybridRecError: one line naming ``flag`` and what is wrong.
    """
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as err:
        raise HybridRecError(f"{flag} {pattern!r} is not a valid pattern ({err}); use e.g. '{{item_id}}.jpg'") from None
    fields = 0
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name != "item_id" or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise HybridRecError(f"{flag} {pattern!r} may only use {{item_id}}, found {shown}")
        fields += 1
    if not fields:
        raise HybridRecError(f"{flag} {pattern!r} does not contain {{item_id}}; every item would share one file")
    return pattern


@dataclass(frozen=True)
class RefusedImagePath:
    """An image path that was not used: the item, where it came from, the path and why."""

    item_id: object
    row: int  # 1-based row of the items table
    line: int | None  # 1-based line in the file, when known
    path: str
    reason: str


@dataclass
class ImagePaths:
    """Local image path per item (``None`` where it has none) and what was refused.

    Attributes:
        paths: one entry per item, in order.
        refused: paths not used, with location and reason.
        urls: values that were URLs (not fetched; the item has no image).
        file, column: where the values came from, for messages.
    """

    paths: list[str | None]
    refused: list[RefusedImagePath] = field(default_factory=list)
    urls: int = 0
    file: object = None
    column: str | None = None

    def lines(self) -> list[str]:
        """One warning line per reason for refusing paths, with the first few examples located."""
        out = []
        for reason in dict.fromkeys(refusal.reason for refusal in self.refused):
            cases = [refusal for refusal in self.refused if refusal.reason == reason]
            shown = "; ".join(located(f"item {case.item_id!r} (row {case.row}): {case.path}", file=self.file,
                                      line=case.line, column=self.column) for case in cases[:MAX_EXAMPLES])
            more = f"; and {len(cases) - MAX_EXAMPLES} more" if len(cases) > MAX_EXAMPLES else ""
            out.append(f"skipped {len(cases)} image path(s): {reason}; those items have no image: {shown}{more}")
        return out


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, Path)):
        return str(value).strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value, not a missing one
        return False


def _confined(candidate: Path, root: Path | None) -> tuple[Path | None, str]:
    """``(resolved candidate, "")`` when it lies inside ``root`` (already resolved), else ``(None, reason)``.

    Without a root the candidate is returned unchecked.
    """
    if root is None:
        return candidate, ""
    try:
        resolved = candidate.resolve()
    except RuntimeError:  # Path.resolve's report of a symbolic link loop
        return None, "image path cannot be resolved (a symbolic link loop)"
    except OSError as err:
        return None, f"image path cannot be resolved ({err.strerror or err})"
    return (resolved, "") if resolved.is_relative_to(root) else (None, OUTSIDE_IMAGE_DIR)


def resolve_image_paths(item_ids: Sequence, values: Sequence | None = None, *,
                        image_dir: str | Path | None = None, pattern: str | None = None,
                        base_dir: str | Path | None = None, file: object = None, column: str | None = None,
                        lines: Sequence[int] | None = None) -> ImagePaths:
    """Image path of each item, refusing those that leave ``image_dir``.

    Exactly one source of names is used:

    * ``values`` (an image column): a relative value is joined to ``image_dir`` (else ``base_dir``,
      else the working folder); an absolute one is used as is. URLs are counted, not fetched.
    * ``pattern`` (e.g. ``"{item_id}.jpg"``, see :func:`validate_image_pattern`): ``image_dir / name``.
    * neither: ``image_dir/<id>`` with one of :data:`IMAGE_SUFFIXES` where such a file exists (``.jpg`` first).

    With ``image_dir``, each path is resolved and kept only inside ``image_dir`` (reason
    :data:`OUTSIDE_IMAGE_DIR`); kept paths are returned resolved. Without it, paths are not confined.

    Args:
        item_ids: one id per item.
        values: image column values, one per item, or None.
        image_dir: the folder images must stay in (must exist when given).
        pattern: file name pattern inside ``image_dir`` when there are no ``values``.
        base_dir: folder relative values are joined to without ``image_dir`` (e.g. the catalog's).
        file, column, lines: where the items came from (``lines`` are 1-based file lines), for messages.

    Raises:
        HybridRecError: ``image_dir`` is not a folder, a bad ``pattern``, or no ``image_dir`` to
            apply a pattern or a lookup to.
    """
    item_ids = list(item_ids)
    if values is not None and len(values) != len(item_ids):
        raise HybridRecError(f"{len(values)} image values for {len(item_ids)} items")
    root = None
    if image_dir is not None:
        if not Path(image_dir).is_dir():
            raise HybridRecError(f"--image-dir {image_dir}: image folder not found")
        root = Path(image_dir).resolve()
    elif values is None:
        raise HybridRecError("an image pattern or file lookup needs an image folder (--image-dir)")
    lines = list(lines) if lines is not None else [None] * len(item_ids)
    result = ImagePaths(paths=[], file=file, column=column)

    def keep(position: int, candidate: Path, shown: str) -> None:
        confined, reason = _confined(candidate, root)
        if confined is None:
            result.refused.append(RefusedImagePath(item_ids[position], position + 1, lines[position], shown, reason))
        result.paths.append(None if confined is None else str(confined))

    if values is not None:
        base = Path(image_dir if image_dir is not None else base_dir if base_dir is not None else ".").absolute()
        for position, value in enumerate(values):
            if _is_missing(value):
                result.paths.append(None)
            elif "://" in str(value):
                result.urls += 1
                result.paths.append(None)
            else:
                keep(position, base / str(value).strip(), str(value).strip())  # an absolute value replaces base
    elif pattern is not None:
        validate_image_pattern(pattern)
        for position, item_id in enumerate(item_ids):
            name = pattern.format(item_id=item_id)
            keep(position, Path(image_dir).absolute() / name, name)
    else:
        by_stem: dict[str, str] = {}
        with os.scandir(root) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                if suffix.lower() in IMAGE_SUFFIXES and (stem not in by_stem or suffix.lower() == ".jpg"):
                    by_stem[stem] = entry.name
        for position, item_id in enumerate(item_ids):
            name = by_stem.get(str(item_id))
            if name is None:
                result.paths.append(None)
            else:
                keep(position, root / name, name)
    return result
