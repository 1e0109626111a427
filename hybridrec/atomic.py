"""Atomic writes: a crash never leaves a half-written file or folder that looks complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Works for files and folders (the caller creates whichever it needs at the yielded path).
    On error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = scratch / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            # A folder cannot be replaced in one rename: move the old one aside first.
            backup = scratch / (path.name + ".old")
            os.replace(path, backup)
        os.replace(target, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
