"""Atomic, non-destructive writes: a crash never leaves a half-written output that looks complete,
and writing an output never destroys something that is not a previous output of the same kind.

Every output (a table, a report, a checkpoint, a model or graph folder, a feature-cache folder) is
written under a hidden scratch folder beside it, ``.NAME.PID.XXXXXX.tmp/``, and renamed onto
``NAME`` only once complete. The rules for what may already be at ``NAME``:

- Nothing there: always fine.
- A **file** output (``kind=FILE``) replaces only a regular file (or a link, which is replaced, not
  followed); a folder, a device or a pipe at ``NAME`` is refused, whatever ``overwrite`` says.
- A **folder** output (``kind=OutputKind("model", marker="config.json", key="class")``) replaces
  an empty folder, or a folder that is recognisably a previous output of that kind: it holds the
  kind's marker file, a JSON object with the kind's key. Any other folder, a file or a symbolic
  link is refused, whatever ``overwrite`` says.
- ``overwrite`` decides whether a previous output of the same kind is replaced. The library
  defaults to ``overwrite=True`` (``model.save(path)`` twice replaces the first model); the
  command line defaults to refusing and replaces only with ``--overwrite``, checked before any work
  by :func:`check_writable`, which names the flag.

A process killed with SIGKILL leaves its scratch folder behind. The next write of the same output
reaps it: only scratch folders named for this output, whose writer process (the PID in the name)
is dead or started after the folder was made (a reused PID). A previous folder is swapped with
the new one in one step where the system allows (Linux ``renameat2``); elsewhere it is moved aside
first, and if the writer died before moving the new one in, the reaper puts it back. Writers on
other machines sharing the folder over a network are not told apart by PID: do not point two
machines at one output.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)

SCRATCH_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"


@dataclass(frozen=True)
class OutputKind:
    """What an output is: a file, or a folder recognised by a JSON marker file inside it.

    Args:
        name: what the output holds, for messages ("model", "graph").
        marker: for a folder output, the file inside it that identifies it (``None``: a file output).
        key: a key the marker's JSON object must hold.
    """

    name: str
    marker: str | None = None
    key: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.marker is not None

    def recognises(self, folder: Path) -> bool:
        """Whether ``folder`` holds this kind's marker file with its key."""
        try:
            content = json.loads((folder / self.marker).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(content, dict) and (self.key is None or self.key in content)


#: A single-file output (table, report, checkpoint).
FILE = OutputKind("file")


def existing_output_problem(path: Path, kind: OutputKind, overwrite: bool) -> tuple[str, bool] | None:
    """Why ``path`` may not be written as a ``kind`` output, or ``None`` when it may.

    Returns ``(reason, only_overwrite)``; ``only_overwrite`` is True when ``overwrite`` would allow it.
    """
    if not os.path.lexists(path):
        return None
    if not kind.is_folder:
        if path.is_symlink() and not path.exists():
            return None  # a dangling link: replacing the link loses nothing
        if path.is_dir():
            return "is a directory; this output is a file, and a directory is never replaced by one", False
        if not stat.S_ISREG(path.stat().st_mode):
            return "exists and is not a regular file (a device, pipe or socket); refusing to replace it", False
        return None if overwrite else ("already exists", True)
    if path.is_symlink():
        return f"is a symbolic link; a {kind.name} folder never replaces one", False
    if not path.is_dir():
        return f"exists and is not a folder; a {kind.name} folder never replaces a file", False
    if not any(path.iterdir()):
        return None
    if not kind.recognises(path):
        return (f"exists and is not a previous {kind.name} folder (no {kind.marker} with {kind.key!r}); "
                "refusing to replace it: choose another path or remove it yourself"), False
    return None if overwrite else (f"already holds a {kind.name}", True)


def _raise_if_refused(path: Path, kind: OutputKind, overwrite: bool, *, arg: str | None, hint: str) -> None:
    problem = existing_output_problem(path, kind, overwrite)
    if problem is None:
        return
    reason, only_overwrite = problem
    where = f"{arg} {path}" if arg else str(path)
    raise HybridRecError(f"{where}: {reason}" + (f"; {hint}" if only_overwrite else ""))


# -- stale scratch folders ---------------------------------------------------------------------

def _scratch_pattern(name: str) -> re.Pattern:
    """``.NAME.PID.XXXXXXXX.tmp`` (``tempfile``'s random part has no dots, so another output's
    scratch, such as ``.NAME.5.PID.XXXXXXXX.tmp`` of ``NAME.5``, never matches)."""
    return re.compile(re.escape(f".{name}.") + r"(\d+)\.[a-z0-9_]+" + re.escape(SCRATCH_SUFFIX))


def _process_started_after(pid: int, when: float) -> bool:
    """Whether process ``pid`` started after time ``when`` (Linux ``/proc``; False when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        start_ticks = int(fields[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK") > when + 1.0  # btime has 1 s resolution
    except (OSError, ValueError, IndexError, StopIteration):
        return False


def _writer_alive(pid: int, created: float) -> bool:
    """Whether process ``pid`` lives and may have made a scratch entry last changed at ``created``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's live process
    return not _process_started_after(pid, created)


def reap_stale_scratch(path: str | Path) -> list[Path]:
    """Remove scratch folders that dead writers of ``path`` left beside it; return them.

    Only folders named ``.NAME.PID.*.tmp`` for this ``path`` whose writer is gone are touched. If
    ``path`` is missing and such a folder holds the previous output moved aside (``NAME.old``),
    that output is moved back first.
    """
    path = Path(path)
    pattern = _scratch_pattern(path.name)
    reaped = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return reaped
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match:
            continue
        try:
            created = entry.lstat().st_mtime
        except OSError:
            continue
        if _writer_alive(int(match.group(1)), created):
            continue
        if entry.is_symlink() or not entry.is_dir():  # a probe file of check_writable
            entry.unlink(missing_ok=True)
            reaped.append(entry)
            continue
        backup = entry / (path.name + OLD_SUFFIX)
        if os.path.lexists(backup) and not os.path.lexists(path):
            os.replace(backup, path)
            logger.warning("%s: restored the previous output that an interrupted write had moved aside", path)
        shutil.rmtree(entry, ignore_errors=True)
        logger.info("removed %s, left by an interrupted write", entry)
        reaped.append(entry)
    return reaped


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2():
    """libc's ``renameat2``, or ``None`` where there is none (not Linux, old glibc)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one step (``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # this system or file system cannot swap: the caller falls back to two renames
    raise OSError(error, os.strerror(error), str(second))


# -- writing -----------------------------------------------------------------------------------

def check_writable(path: str | Path, *, arg: str | None = None, kind: OutputKind = FILE,
                   overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind`` output; return it.

    Called at the command-line boundary (``arg`` names the flag, e.g. ``"--out"``): the existing
    output rules of this module apply (a previous output is replaced only with ``overwrite``), and a
    probe file is created and removed in the nearest existing folder above ``path``. Stale scratch
    folders of ``path`` are reaped.

    Raises:
        HybridRecError: naming ``arg`` and ``path``, and saying to pass ``--overwrite`` where that helps.
    """
    path = Path(path)
    where = f"{arg} {path}" if arg else str(path)
    reap_stale_scratch(path)
    _raise_if_refused(path, kind, overwrite, arg=arg, hint="pass --overwrite to replace it")
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HybridRecError(f"{where}: cannot be written: {ancestor} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=SCRATCH_SUFFIX, dir=ancestor)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise HybridRecError(f"{where}: cannot be written: cannot create files in {ancestor} "
                             f"({err.strerror or err})") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, *, kind: OutputKind = FILE, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The caller creates a file (``kind=FILE``) or a folder (a folder ``kind``, whose marker file the
    caller writes) at the yielded path. What may already be at ``path`` follows the module rules;
    a refusal happens before the body runs. On error the temporary is removed and ``path`` is
    untouched.

    Raises:
        HybridRecError: ``path`` may not be replaced, or its folder cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HybridRecError(f"{path}: cannot create its folder {path.parent} ({err.strerror or err})") from None
    reap_stale_scratch(path)
    _raise_if_refused(path, kind, overwrite, arg=None, hint="pass overwrite=True to replace it")
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=SCRATCH_SUFFIX,
                                        dir=path.parent))
    except OSError as err:
        raise HybridRecError(f"{path}: cannot write in {path.parent} ({err.strerror or err})") from None
    target = scratch / path.name
    try:
        yield target
        # Checked again: another writer may have put something at ``path`` meanwhile.
        _raise_if_refused(path, kind, overwrite, arg=None, hint="pass overwrite=True to replace it")
        backup = scratch / (path.name + OLD_SUFFIX)
        try:
            if kind.is_folder and path.is_dir() and not path.is_symlink():
                # A folder cannot be replaced by a plain rename. Swap the two in one step where the
                # system can; else move the old one aside first (a stale-scratch reaper puts it back
                # if the process dies in between).
                if not _exchange(target, path):
                    os.replace(path, backup)
                    os.replace(target, path)
            else:
                os.replace(target, path)
        except OSError as err:
            if os.path.lexists(backup) and not os.path.lexists(path):
                os.replace(backup, path)
            raise HybridRecError(f"{path}: cannot move the finished output into place "
                                 f"({err.strerror or err})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
