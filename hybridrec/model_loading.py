"""Reading a saved model folder safely: which class may be built, with which parameters, and the
checks that turn every truncated or corrupt file into one :class:`HybridRecError` naming it.

A folder written by :meth:`hybridrec.recommender_base.RecommenderBase.save` holds ``config.json``
(``class``, ``module``, ``params``), ``user_ids.parquet``, ``item_ids.parquet`` and ``state.pt``.

Which class is built:
    Every subclass of ``RecommenderBase`` registers itself here by its class name (the name ``save``
    writes), when its module is imported. Loading looks the saved name up in that registry and
    nothing else: ``config.json`` never names code to run, and its ``module`` value is information
    only, never imported. A class must therefore be imported before a model of it is loaded
    (``import evaluation.baselines`` for the baselines; the ``hybridrec`` command does it for every
    command given ``--model``); the error for an unregistered class names the module to import.

Which parameters:
    ``params`` must name parameters of the class's ``__init__`` (keyword arguments only); each value
    must fit the parameter's annotation, or the type of its default when it has none.
"""

from __future__ import annotations

import inspect
import json
import logging
import pickle
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import scipy.sparse as sp
import torch

from hybridrec.errors import HybridRecError, located
from hybridrec.id_map import IdMap
from hybridrec.typed_values import conform, describe_type

logger = logging.getLogger(__name__)

#: Prefix of the subclass's tensors in ``state.pt`` (``_load_state`` gets them without it).
MODEL_STATE_PREFIX = "model."

# class name -> the distinct classes (by module and qualified name) registered under it.
_REGISTRY: dict[str, dict[str, type]] = {}


def register_recommender(cls: type) -> None:
    """Make ``cls`` loadable by its name (called by ``RecommenderBase.__init_subclass__``).

    Redefining the same class (same module and qualified name) replaces it. Two different classes
    with one name are both kept; a saved model naming that class is then refused as ambiguous.
    """
    classes = _REGISTRY.setdefault(cls.__name__, {})
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    if classes and qualified not in classes:
        logger.warning("recommender class name %r is used by %s and %s: saved models naming it cannot be "
                       "loaded", cls.__name__, ", ".join(classes), qualified)
    classes[qualified] = cls


def registered_recommenders() -> dict[str, type]:
    """Name -> class of every unambiguously registered recommender."""
    return {name: next(iter(classes.values())) for name, classes in _REGISTRY.items() if len(classes) == 1}


def short_reason(err: BaseException, limit: int = 240) -> str:
    """One line from an exception's message (torch's and pyarrow's run over several lines)."""
    text = str(err)
    marker = "WeightsUnpickler error:"  # torch's weights_only refusal: the reason follows the marker
    if marker in text:
        text = text[text.index(marker):]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = " ".join(lines[:2]) if lines and lines[0] == marker else (lines[0] if lines else "")
    reason = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


# -- config.json ------------------------------------------------------------------------------------
def read_config(path: Path) -> dict:
    """The parsed ``config.json`` at ``path``: an object with a string ``class`` and an object ``params``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise HybridRecError(located(f"cannot read the model config: {short_reason(err)}", file=path)) from err
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise HybridRecError(located(f"not valid JSON (truncated?): {err.msg} (column {err.colno})",
                                     file=path, line=err.lineno)) from err
    if not isinstance(config, dict):
        raise HybridRecError(located(f"expected a JSON object with keys 'class' and 'params', got "
                                     f"{type(config).__name__}", file=path))
    for key, kind, kind_name in (("class", str, "a string"), ("params", dict, "an object")):
        if key not in config:
            raise HybridRecError(located(f"missing key {key!r}", file=path))
        if not isinstance(config[key], kind):
            raise HybridRecError(located(f"key {key!r} must be {kind_name}, got {config[key]!r}", file=path))
    return config


def resolve_class(config: dict, path: Path) -> type:
    """The registered class that ``config['class']`` names (see the module docstring)."""
    name, module = config["class"], config.get("module")
    classes = _REGISTRY.get(name, {})
    if len(classes) > 1:
        raise HybridRecError(located(f"key 'class': {name!r} is ambiguous, several recommender classes have that "
                                     f"name: {sorted(classes)}", file=path))
    if not classes:
        known = sorted(registered_recommenders())
        where = (f"import {module} (the module the folder names)" if isinstance(module, str) and module.isascii()
                 and all(part.isidentifier() for part in module.split(".")) else "import the module that defines it")
        raise HybridRecError(located(
            f"key 'class': {name!r} is not a known recommender class (known: {known}); {where} before loading: "
            f"loading builds only registered classes and never imports the 'module' key "
            f"(hybridrec's baselines: import evaluation.baselines)", file=path))
    return next(iter(classes.values()))


def checked_params(cls: type, params: dict, path: Path) -> dict:
    """``params`` if every name is a keyword parameter of ``cls.__init__`` and every value fits its
    annotation (or its default's type), and no parameter without a default is missing."""
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError, AttributeError, SyntaxError) as err:  # fall back to the defaults' types
        logger.debug("annotations of %s.__init__ do not evaluate (%s); checking by defaults", cls.__name__, err)
        hints = {}
    accepted = {name: parameter for name, parameter in signature.parameters.items()
                if name != "self" and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)}
    for name, value in params.items():
        if name not in accepted:
            raise HybridRecError(located(f"key 'params.{name}': unknown parameter of {cls.__name__}; "
                                         f"it takes {sorted(accepted)}", file=path))
        parameter = accepted[name]
        annotation = hints.get(name, parameter.annotation)
        if isinstance(annotation, str):  # unevaluated string annotation: use the default's type
            annotation = inspect.Parameter.empty
        if annotation is inspect.Parameter.empty and parameter.default not in (inspect.Parameter.empty, None):
            annotation = type(parameter.default)
        if not conform(value, annotation)[0]:
            raise HybridRecError(located(f"key 'params.{name}': {cls.__name__} expects {describe_type(annotation)}, "
                                         f"got {value!r}", file=path))
    missing = [name for name, parameter in accepted.items()
               if parameter.default is inspect.Parameter.empty and name not in params]
    if missing:
        raise HybridRecError(located(f"key 'params': missing required parameter(s) {missing} of {cls.__name__}",
                                     file=path))
    return params


def build_from_config(cls: type, params: dict, path: Path):
    """``cls(**params)`` after :func:`checked_params`, its values checked (``_check_params``, as
    ``fit`` does); the constructor's and the check's refusals name ``path``."""
    params = checked_params(cls, params, path)
    try:
        model = cls(**params)
        model._check_params()
        return model
    except (TypeError, ValueError) as err:  # HybridRecError is a ValueError
        reason = str(err) if isinstance(err, HybridRecError) else short_reason(err)
        raise HybridRecError(located(f"key 'params': {reason}", file=path)) from err


# -- id tables and state ----------------------------------------------------------------------------
def read_id_map(path: Path, kind: str) -> IdMap:
    """The id map saved at ``path`` (an ``index``/``id`` Parquet table)."""
    if not path.is_file():
        raise HybridRecError(located("missing: the model folder is incomplete", file=path))
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as err:
        raise HybridRecError(located(f"not a readable Parquet id table (truncated?): {short_reason(err)}",
                                     file=path)) from err
    missing = [column for column in ("index", "id") if column not in frame.columns]
    if missing:
        raise HybridRecError(located(f"id table lacks column(s) {missing}; found {list(frame.columns)}", file=path))
    try:
        return IdMap.from_frame(frame, kind=kind)
    except (HybridRecError, TypeError) as err:
        raise HybridRecError(located(str(err), file=path)) from err


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``state.pt`` (``torch.load(weights_only=True)``), as a str -> Tensor dict."""
    if not path.is_file():
        raise HybridRecError(located("missing: the model folder is incomplete", file=path))
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError, AttributeError,
            ImportError, IndexError) as err:
        raise HybridRecError(located(f"not a readable model state (truncated or corrupt?): {short_reason(err)}",
                                     file=path)) from err
    if not isinstance(state, dict):
        raise HybridRecError(located(f"expected a dict of tensors, got {type(state).__name__}", file=path))
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise HybridRecError(located(f"key {key!r} holds {type(value).__name__}, not a tensor", file=path))
    return state


def _sizes(n_users: int, n_items: int) -> dict[str, int]:
    return {"users": n_users, "items": n_items}


def _where(n_users: int, n_items: int) -> str:
    return f"user_ids.parquet holds {n_users} users and item_ids.parquet {n_items} items"


def check_state(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple], *, n_users: int, n_items: int,
                integer: Iterable[str] = ()) -> None:
    """Refuse ``state`` unless its keys are exactly ``expected``'s and each tensor has that shape.

    Args:
        state: the subclass's tensors (keys without :data:`MODEL_STATE_PREFIX`).
        expected: key -> shape; each entry an int, ``"users"``, ``"items"`` or None (any size).
        integer: keys whose tensors hold indices (integer dtype); the others must be floating.
    """
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise HybridRecError(f"missing state key(s) {[MODEL_STATE_PREFIX + k for k in missing]}")
    if extra:
        raise HybridRecError(f"unexpected state key(s) {[MODEL_STATE_PREFIX + k for k in extra]} for this model's "
                             f"parameters; expected {sorted(MODEL_STATE_PREFIX + k for k in expected)}")
    sizes, integer = _sizes(n_users, n_items), set(integer)
    for key, shape in expected.items():
        tensor, name = state[key], MODEL_STATE_PREFIX + key
        wanted = tuple(sizes.get(dim, dim) for dim in shape)
        actual = tuple(tensor.shape)
        if len(actual) != len(wanted) or any(w is not None and a != w for a, w in zip(actual, wanted)):
            symbolic = tuple("*" if dim is None else dim for dim in shape)
            raise HybridRecError(f"state key {name!r} has shape {actual}, expected {symbolic} = "
                                 f"{tuple('*' if w is None else w for w in wanted)} ({_where(n_users, n_items)})")
        is_index = not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.bool
        if not (is_index if key in integer else tensor.is_floating_point()):
            raise HybridRecError(f"state key {name!r} has dtype {tensor.dtype}, expected "
                                 f"{'an integer' if key in integer else 'a floating'} dtype")


def coo_from_state(state: Mapping[str, torch.Tensor], prefix: str, shape: tuple[str, str], *,
                   n_users: int, n_items: int) -> sp.csr_matrix:
    """The sparse matrix saved as ``{prefix}_row/_col/_value`` (equal-length 1-d tensors), checked to fit
    ``shape`` (``"users"`` / ``"items"`` per axis)."""
    keys = [f"{prefix}_{part}" for part in ("row", "col", "value")]
    missing = [key for key in keys if key not in state]
    if missing:
        raise HybridRecError(f"missing state key(s) {missing}")
    row, col, value = (state[key] for key in keys)
    for key, tensor, integer in zip(keys, (row, col, value), (True, True, False)):
        if tensor.dim() != 1 or tensor.is_floating_point() == integer or tensor.dtype == torch.bool:
            raise HybridRecError(f"state key {key!r} must be a 1-d {'integer' if integer else 'float'} tensor, "
                                 f"got shape {tuple(tensor.shape)} dtype {tensor.dtype}")
    if not len(row) == len(col) == len(value):
        raise HybridRecError(f"state keys {keys} have unequal lengths {[len(row), len(col), len(value)]}")
    dims = tuple(_sizes(n_users, n_items)[axis] for axis in shape)
    for key, tensor, axis, size in zip(keys, (row, col), shape, dims):
        if len(tensor) and (int(tensor.min()) < 0 or int(tensor.max()) >= size):
            raise HybridRecError(f"state key {key!r} holds indices {int(tensor.min())}..{int(tensor.max())}, outside "
                                 f"0..{size - 1} ({_where(n_users, n_items)})")
    return sp.csr_matrix((value.numpy().astype(np.float32), (row.numpy(), col.numpy())), shape=dims,
                         dtype=np.float32)
