"""Plumbing shared by the text and image encoders for pretrained weight files: a content
fingerprint (it names the feature cache, so new weights never reuse old vectors) and a fast check
of whether a download host answers (offline machines fail fast instead of hanging)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path, *, chars: int = 16) -> str:
    """First ``chars`` hex digits of the SHA-256 of a file (memoised per path, size and mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key][:chars]


def host_reachable(host: str, port: int = 443, timeout_seconds: float = 2.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout_seconds`` (never hangs)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            return True
    except OSError:
        return False
