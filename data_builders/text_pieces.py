"""A text file as UTF-8 bytes in pieces that end at a line end, and the line where each record starts.

:class:`TextPieces` is the stream Arrow's text readers read: pieces of about :data:`PIECE_BYTES`,
gunzipped (by the magic bytes), checked (UTF-8) or transcoded (other ASCII-compatible encodings)
to UTF-8 so that a bad byte is an error naming file, line and column, with a leading byte-order mark
removed. Before Arrow sees a piece, :class:`RecordLines` notes the 1-based line on which every
record in it starts: CSV records end at line ends outside double quotes and empty lines are none
(as in ``pyarrow.csv``); JSON Lines records are the lines that are not only white space. Arrow
numbers the rows it rejects by the same count, so every row it keeps or rejects gets its line.

What the two could read differently (a double quote inside a field, a carriage return that does
not end a line, a quoted field left open at the end, an encoding that is not ASCII-compatible) raises
:class:`PythonReaderNeeded`; the readers in :mod:`data_builders.arrow_tables` then leave the file to
the Python reader of :mod:`data_builders.parsing`.
"""

from __future__ import annotations

import codecs
import collections
import gzip
import io
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hybridrec.errors import HybridRecError, located

#: Raw bytes read at a time (a piece is cut back to its last line end); Arrow parses blocks of this size.
PIECE_BYTES = 1 << 22
BOM = b"\xef\xbb\xbf"
#: Stands for a separator of several bytes (``"::"``) in what Arrow reads: pyarrow.csv takes one byte.
PLACEHOLDER = b"\x1f"
NEWLINE, CR, QUOTE = 10, 13, 34
#: A JSON number -0 (Arrow reads it as the integer 0); dates such as 2020-09-13 never match.
NEGATIVE_ZERO = re.compile(rb"-0(?![0-9.eE])")


class PythonReaderNeeded(Exception):
    """Raised while a file is fed to Arrow when only the Python reader reads it as documented; the
    message says why. Internal to ``data_builders``: the Arrow readers turn it into a fallback."""


def undecodable(path: Path, *, byte: int, line: int, encoding: str, line_prefix: bytes, first_line: bytes,
                sep: str | None = None, names: Sequence[str] | None = None) -> HybridRecError:
    """The error for a byte that is not ``encoding``: file, line, column (when ``sep`` tells it), a hint.

    Args:
        line_prefix: the raw bytes of the bad byte's line before it (its field is counted there).
        first_line: the raw first line of the file (the header, for the column name).
    """
    column = None
    sep_bytes = (sep or "").encode("ascii", errors="ignore")
    if sep_bytes and (names is not None or line > 1):
        if names is None:
            header = first_line.decode("latin-1").rstrip("\r").lstrip("\ufeff\xef\xbb\xbf")
            names = [name.strip() for name in header.split(sep)]
        field_index = line_prefix.count(sep_bytes)
        column = names[field_index] if field_index < len(names) else None
    return HybridRecError(located(f"cannot decode byte 0x{byte:02x} as {encoding}; pass the file's encoding "
                                  "(--encoding latin-1 on the command line, encoding='latin-1' in Python)",
                                  file=path, line=line, column=column))


def header_names(fields: Sequence[str], path: Path, line: int = 1) -> list[str]:
    """Stripped header names (from ``line``); blank ones become ``unnamed_<n>``; duplicates are an error."""
    names = [field_text.strip() or f"unnamed_{j}" for j, field_text in enumerate(fields)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise HybridRecError(located(f"duplicate column name {name!r} in the header", file=path, line=line,
                                         column=name))
        seen.add(name)
    return names


def _ascii_compatible(encoding: str) -> bool:
    probe = "\n\r\t ,;|:\"'#_azAZ09"
    try:
        return probe.encode(encoding) == probe.encode("ascii")
    except (UnicodeError, LookupError):
        return False


class TextPieces(io.RawIOBase):
    """A text file as UTF-8 bytes, read by Arrow as a stream, in pieces that end at a line end.

    Each piece is given to ``on_piece(piece, final, newlines)`` before Arrow reads it. ``replace``
    (a separator of several bytes) is replaced by :data:`PLACEHOLDER`; ``json`` looks for ``-0``.

    Raises:
        HybridRecError: missing file, corrupt gzip, unknown encoding, a byte that is not ``encoding``.
    """

    def __init__(self, path: Path, encoding: str, *, on_piece: Callable[[bytes, bool, int], None],
                 sep: str | None = None, names: Sequence[str] | None = None, replace: bytes | None = None,
                 json: bool = False):
        super().__init__()
        if not path.is_file():
            raise HybridRecError(f"{path}: file not found")
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise HybridRecError(f"{path}: unknown encoding {encoding!r}") from None
        if codec not in ("utf-8", "utf-8-sig") and not _ascii_compatible(encoding):
            raise PythonReaderNeeded(f"its encoding {encoding!r} is not ASCII-compatible")
        self.path, self.encoding, self._sep, self._names = path, encoding, sep, names
        self._utf8 = codec in ("utf-8", "utf-8-sig")
        self._on_piece, self._replace, self._json = on_piece, replace, json
        self._lines = 0  # line ends before the next piece
        self._first_line: bytes | None = None
        self.has_content = False  # a byte that is not white space (before decoding, like the Python reader)
        self.negative_zero = False  # a JSON "-0", which Arrow reads as the integer 0
        self._pieces = self._generate()
        self._piece, self._offset = b"", 0
        self._buffered: collections.deque[bytes] = collections.deque()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Stop reading (the file is closed)."""
        self._pieces.close()
        super().close()

    def _raw_chunks(self):
        with open(self.path, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(self.path, "rb") as handle:
            while True:
                try:
                    chunk = handle.read(PIECE_BYTES)
                except (OSError, EOFError, zlib.error) as err:
                    if not gzipped:
                        raise
                    raise HybridRecError(f"{self.path}: corrupt gzip file ({err})") from None
                yield chunk
                if not chunk:
                    return

    def _generate(self):
        carry = b""
        for chunk in self._raw_chunks():
            if chunk:
                block = carry + chunk
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    carry = block
                    continue
                raw, carry = block[:cut], block[cut:]
                yield self._convert(raw, final=False)
            else:
                yield self._convert(carry, final=True)

    def _convert(self, raw: bytes, *, final: bool) -> bytes:
        """One piece: decoded, checked, with its BOM and separator handled; indexed; its lines counted."""
        if not self.has_content:
            self.has_content = bool(raw.strip())
        first = self._first_line is None
        if first:
            self._first_line = raw[: raw.find(b"\n")]
        piece = raw
        if not raw.isascii():
            try:
                text = raw.decode(self.encoding)
                piece = raw if self._utf8 else text.encode("utf-8")
            except UnicodeDecodeError as err:
                line_start = raw.rfind(b"\n", 0, err.start) + 1
                raise undecodable(self.path, byte=raw[err.start], line=self._lines + raw.count(b"\n", 0, err.start) + 1,
                                  encoding=self.encoding, line_prefix=raw[line_start:err.start],
                                  first_line=self._first_line, sep=self._sep, names=self._names) from None
        while first and piece.startswith(BOM):
            piece = piece[len(BOM):]
        if self._replace:
            if PLACEHOLDER in piece:
                raise PythonReaderNeeded("its separator has several bytes and the file holds the byte 0x1f")
            piece = piece.replace(self._replace, PLACEHOLDER)
        if self._json and not self.negative_zero and b"-0" in piece and NEGATIVE_ZERO.search(piece):
            self.negative_zero = True
        newlines = raw.count(b"\n")
        self._on_piece(piece, final, newlines)
        self._lines += newlines
        return piece

    def peek(self) -> bytes:
        """The next unread piece, kept for :meth:`read` (``b""`` at the end of the file)."""
        piece = next(self._pieces, b"")
        self._buffered.append(piece)
        return piece

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes: the rest of the current piece, or the next piece whole (not copied)."""
        while self._offset >= len(self._piece):
            piece = self._buffered.popleft() if self._buffered else next(self._pieces, None)
            if piece is None:
                return b""
            self._piece, self._offset = piece, 0
        size = len(self._piece) if size is None or size < 0 else size
        if self._offset == 0 and size >= len(self._piece):
            self._offset = len(self._piece)
            return self._piece
        part = self._piece[self._offset:self._offset + size]
        self._offset += len(part)
        return part


class RecordLines:
    """The 1-based line on which each record starts, in file order, as pieces of text arrive.

    CSV (``quoting``: double quotes honoured): a record ends at a line end outside quotes; an empty
    line (or a lone ``"\\r"``) is no record, a line of white space is one (as in pyarrow.csv).
    JSON Lines (``json``): one record per line that is not only white space.
    """

    def __init__(self, *, sep: int | None = None, quoting: bool = False, json: bool = False):
        self._sep, self._quoting, self._json = sep, quoting, json
        self._parts: collections.deque[np.ndarray] = collections.deque()
        self._first = 1  # ordinal of the first record in _parts
        self.count = 0
        self._lines = 0
        self._in_quotes, self._open_line = False, 0

    def _push(self, lines: np.ndarray) -> None:
        if len(lines):
            self._parts.append(lines.astype(np.int64, copy=False))
            self.count += len(lines)

    def add(self, piece: bytes, final: bool, newlines: int) -> None:
        """Index one piece (it ends at a line end unless ``final``) that holds ``newlines`` line ends."""
        if not piece:
            if final and self._in_quotes:
                raise PythonReaderNeeded("a quoted field is not closed at the end of the file")
            return
        returns = b"\r" in piece
        lone_cr = returns and piece.count(b"\r") != piece.count(b"\r\n")
        quotes = self._quoting and (self._in_quotes or b'"' in piece)
        if lone_cr and not quotes:
            raise PythonReaderNeeded("it has carriage returns that do not end a line")
        if not quotes and not self._has_blank_lines(piece, returns):
            records = newlines + (0 if piece.endswith(b"\n") or not piece else 1)
            self._push(np.arange(self._lines + 1, self._lines + 1 + records))
        else:
            self._scan(np.frombuffer(piece, np.uint8), final, quotes, lone_cr)
        self._lines += newlines

    def _has_blank_lines(self, piece: bytes, returns: bool) -> bool:
        blank = piece.startswith((b"\n", b"\r\n")) or b"\n\n" in piece or (returns and b"\n\r\n" in piece)
        if self._json:  # conservative: any line that starts with white space is looked at
            blank = blank or piece.startswith((b" ", b"\t")) or b"\n " in piece or b"\n\t" in piece
        return blank

    def _scan(self, chars: np.ndarray, final: bool, quotes: bool, lone_cr: bool) -> None:
        """Records of a piece with quotes or blank lines, from the positions of its line ends and quotes."""
        newlines = np.flatnonzero(chars == NEWLINE)
        ends, in_quotes = newlines, False
        if quotes:
            positions = np.flatnonzero(chars == QUOTE)
            parity = int(self._in_quotes)
            closing = (np.arange(len(positions)) + parity) % 2 == 1
            opening = positions[~closing]
            before = np.where(opening > 0, chars[np.maximum(opening - 1, 0)], NEWLINE)
            after_at = positions[closing] + 1
            after = np.where(after_at < len(chars), chars[np.minimum(after_at, len(chars) - 1)], NEWLINE)
            if not (np.isin(before, (self._sep, NEWLINE, QUOTE)).all()
                    and np.isin(after, (self._sep, NEWLINE, CR, QUOTE)).all()):
                raise PythonReaderNeeded("a double quote opens or closes inside a field")
            ends = newlines[(np.searchsorted(positions, newlines) + parity) % 2 == 0]
            if lone_cr:  # Arrow takes a lone "\r" outside quotes for a line end, the Python reader does not
                returns = np.flatnonzero(chars == CR)
                lone = returns[chars[np.minimum(returns + 1, len(chars) - 1)] != NEWLINE]
                if ((np.searchsorted(positions, lone) + parity) % 2 == 0).any():
                    raise PythonReaderNeeded("it has carriage returns that do not end a line outside quotes")
            in_quotes = (len(positions) + parity) % 2 == 1
        starts = np.concatenate(([0], ends + 1))
        stops = np.concatenate((ends, [len(chars)]))
        lines = self._lines + 1 + np.searchsorted(newlines, starts)
        if self._json:
            text = np.concatenate(([0], np.cumsum(~np.isin(chars, (32, 9, CR, NEWLINE)))))
            present = text[stops] > text[starts]
        else:
            present = (stops > starts) & ~((stops - starts == 1) & (chars[np.minimum(starts, len(chars) - 1)] == CR))
        if self._in_quotes:  # the first segment closes the record left open by the last piece
            lines[0], present[0] = self._open_line, True
        self._push(lines[:-1][present[:-1]])
        if in_quotes:
            if final:
                raise PythonReaderNeeded("a quoted field is not closed at the end of the file")
            self._open_line = int(lines[-1])
        elif final and present[-1]:
            self._push(lines[-1:])
        self._in_quotes = in_quotes

    @property
    def in_quotes(self) -> bool:
        """Whether the text indexed so far ends inside a quoted field."""
        return self._in_quotes

    def ordinal_of(self, line: int) -> int:
        """The ordinal of the record starting on ``line`` (among those not yet taken)."""
        lines = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.int64)
        at = int(np.searchsorted(lines, line))
        if at >= len(lines) or lines[at] != line:
            raise PythonReaderNeeded("pyarrow does not start a record where its header starts")
        return self._first + at

    def lines_of(self, ordinals: np.ndarray) -> np.ndarray:
        """Lines of records ``ordinals`` (1-based, increasing); records before the last are forgotten."""
        if not len(ordinals):
            return np.zeros(0, dtype=np.int64)
        last = int(ordinals[-1])
        if last > self.count:
            raise PythonReaderNeeded("pyarrow and the line index count its records differently")
        need, taken, held = last - self._first + 1, [], 0
        while held < need:
            taken.append(self._parts.popleft())
            held += len(taken[-1])
        window = np.concatenate(taken) if len(taken) > 1 else taken[0]
        if held > need:
            self._parts.appendleft(window[need:])
        lines = window[np.asarray(ordinals, dtype=np.int64) - self._first]
        self._first = last + 1
        return lines
