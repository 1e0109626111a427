"""Whether a plain value read from a file (JSON, TOML) fits a Python type annotation.

One rule for every boundary that turns file values into typed arguments: the TOML configs
(:mod:`hybridrec.toml_config`) and the ``params`` of a saved model's ``config.json``
(:mod:`hybridrec.model_loading`). ``bool`` is never an ``int``; an integer is a ``float``; JSON and
TOML arrays stand for any sequence, tables for any mapping; a path is a string; an annotation this
module does not know is checked with ``isinstance``.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from pathlib import Path

_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
              collections.abc.Iterable, collections.abc.Collection, collections.abc.Set)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}


def conform(value: object, annotation: object) -> tuple[bool, object]:
    """``(whether value fits annotation, the value converted to it)``.

    Conversions: an integer for a ``float`` becomes a float; an array for a ``tuple`` or ``list``
    becomes that container (items converted); anything else is returned as it is.
    """
    if annotation in (inspect.Parameter.empty, typing.Any, object):
        return True, value
    if annotation is None or annotation is type(None):
        return value is None, value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            ok, converted = conform(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is typing.Literal:
        return value in args, value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        return fits, float(value) if fits else value
    if annotation is str or annotation is Path:  # paths are written as strings
        return isinstance(value, str), value
    container = origin or annotation
    if container in _SEQUENCES:
        if not isinstance(value, list):
            return False, value
        if container is tuple and args and args[-1] is not Ellipsis:
            pairs = [conform(item, arg) for item, arg in zip(value, args)] if len(value) == len(args) else None
        else:
            item_type = args[0] if args else typing.Any
            pairs = [conform(item, item_type) for item in value]
        if pairs is None or not all(ok for ok, _ in pairs):
            return False, value
        items = [converted for _, converted in pairs]
        return True, (container(items) if container in (tuple, list) else value)
    if container in _MAPPINGS:
        if not isinstance(value, dict):
            return False, value
        key_type, value_type = args if len(args) == 2 else (typing.Any, typing.Any)
        return all(conform(k, key_type)[0] and conform(v, value_type)[0] for k, v in value.items()), value
    return isinstance(annotation, type) and isinstance(value, annotation), value


def describe_type(annotation: object) -> str:
    """Words for an annotation: "an integer", "a string or nothing", "a list of integers"."""
    origin = typing.get_origin(annotation)
    if annotation is None or annotation is type(None):
        return "nothing"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(option) for option in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(annotation))
    if origin in (tuple, list):
        item_types = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        return "a list" + (f" of {describe_type(item_types[0]).removeprefix('an ').removeprefix('a ')}s"
                           if item_types else "")
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation).replace("typing.", "")))
