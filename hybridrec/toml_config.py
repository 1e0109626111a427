"""Frozen dataclass configurations from a table of a TOML file, checked key by key.

Every error is a :class:`HybridRecError` naming the file (and the key): a missing or unreadable
file, a TOML syntax error (with its line and column, as ``tomllib`` gives them), a top-level key
that is not a table (``train = 3``), an unknown key,
or a value whose type does not match the dataclass field (``epochs = "two"``). Integers are
accepted for float fields; the dataclass's own ``__post_init__`` then checks the ranges, and its
error is given the file's name too.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

from hybridrec.errors import HybridRecError
from hybridrec.typed_values import conform, describe_type

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

__all__ = ["tomllib", "read_toml", "dataclass_from_toml"]


def read_toml(path: str | Path) -> dict:
    """The parsed TOML document at ``path``.

    Raises:
        HybridRecError: the file is missing or unreadable, not UTF-8, or not valid TOML.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise HybridRecError(f"{path}: config file not found") from None
    except OSError as err:
        raise HybridRecError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise HybridRecError(f"{path}: not a UTF-8 TOML file (byte 0x{err.object[err.start]:02x} at offset "
                             f"{err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise HybridRecError(f"{path}: not valid TOML ({err})") from None


def dataclass_from_toml(cls: type, path: str | Path, section: str):
    """``cls(**values)`` from the ``[section]`` table of ``path`` (an absent table gives the defaults).

    Raises:
        HybridRecError: see the module docstring; each message names ``path`` and the key.
    """
    document = read_toml(path)
    loose = [key for key, value in document.items() if not isinstance(value, dict)]
    if loose:
        raise HybridRecError(f"{path}: top-level key(s) {loose} are not tables; a config holds tables such as "
                             f"[{section}] (e.g. [{section}] then one key = value per line)")
    values = document.get(section, {})
    hints = typing.get_type_hints(cls)
    known = {spec.name for spec in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise HybridRecError(f"{path}: unknown [{section}] key(s) {unknown}; known: {sorted(known)}")
    checked = {}
    for name, value in values.items():
        ok, converted = conform(value, hints[name])
        if not ok:
            raise HybridRecError(f"{path}: [{section}] {name} must be {describe_type(hints[name])}, got {value!r}")
        checked[name] = converted
    try:
        return cls(**checked)
    except HybridRecError as err:  # a range check of __post_init__: say which file holds the value
        raise HybridRecError(f"{path}: [{section}] {err}") from None
