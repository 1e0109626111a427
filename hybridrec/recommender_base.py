"""The contract every recommender in hybridrec obeys (the hybrid model and every baseline).

``fit(interactions, items=None, users=None) -> self``, ``recommend(user_ids, k, filter_seen,
candidates)``, ``similar_items(item_ids, k)``, ``save(path)`` / ``load(path)``, and scikit-learn's
``get_params`` / ``set_params`` (so ``sklearn.base.clone`` works; values are checked in ``fit``).
Four capabilities are optional: ``item_vectors()``, ``recommend_for_history(item_ids, k)``,
``item_similarity_pairs(item_index, columns)`` and ``similar_item_candidates(item_index)``;
a model without them raises :class:`MissingCapabilityError` (a :class:`HybridRecError`) when asked,
and ``hasattr`` says whether it has them. Subclasses only
implement the tensor parts: :meth:`_fit`, :meth:`score_users` and (optionally)
:meth:`item_similarity` and the state they save; id handling, filtering, top-k and persistence
live here once. :meth:`RecommenderBase.rank_users` is the same ranking on internal indices, for
evaluation. Rankings come from :func:`hybridrec.topk.ranked_top_k`, the one top-k (ties broken
by the lower item index).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from hybridrec import model_loading
from hybridrec.atomic import OutputKind, atomic_path
from hybridrec.errors import HybridRecError, located
from hybridrec.id_map import IdMap, table_id_maps
from hybridrec.tables import RecDataset
from hybridrec.topk import ranked_top_k, seeded_tie_keys

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
#: Keys of ``state.pt`` outside the subclass's ``model.*`` tensors: the training matrix.
_MATRIX_KEYS = ("user_items_row", "user_items_col", "user_items_value")
#: A saved model folder: the one kind of folder :meth:`RecommenderBase.save` replaces.
MODEL_FOLDER = OutputKind("model", marker=CONFIG_FILE, key="class")


class MissingCapabilityError(HybridRecError, AttributeError):
    """A model lacks an optional capability (:attr:`RecommenderBase.item_vectors`,
    :attr:`RecommenderBase.recommend_for_history`, :attr:`RecommenderBase.item_similarity_pairs`,
    :attr:`RecommenderBase.similar_item_candidates`). Also an ``AttributeError``, so that
    ``hasattr(model, name)`` tells whether the model has it."""


def interaction_matrix(interactions: pd.DataFrame, user_ids: IdMap, item_ids: IdMap,
                       weight_column: str | None = "weight") -> sp.csr_matrix:
    """Sparse ``[n_users, n_items]`` matrix of summed interaction weights (1.0 without weights)."""
    rows = user_ids.to_index(interactions["user_id"].to_numpy())
    cols = item_ids.to_index(interactions["item_id"].to_numpy())
    if weight_column is not None and weight_column in interactions.columns:
        values = interactions[weight_column].to_numpy(np.float32)
    else:
        values = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(user_ids), len(item_ids)), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def interaction_recency(interactions: pd.DataFrame, user_ids: IdMap, item_ids: IdMap) -> sp.csr_matrix:
    """``[n_users, n_items]`` float64 with :func:`interaction_matrix`'s sparsity: for each pair, the
    rank (from 1) of its latest row in the table ordered by ``timestamp``, equal timestamps in row
    order, as the temporal splitters order them (the later, the larger).

    Raises:
        HybridRecError: the table has no ``timestamp`` column.
    """
    if "timestamp" not in interactions.columns:
        raise HybridRecError("a validation hold-out by time (validation_order='latest') needs a 'timestamp' column; "
                             f"interactions has {list(interactions.columns)}")
    order = np.lexsort((np.arange(len(interactions)), interactions["timestamp"].to_numpy(np.int64)))
    rank = np.empty(len(order), dtype=np.float64)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.float64)
    rows = user_ids.to_index(interactions["user_id"].to_numpy())
    cols = item_ids.to_index(interactions["item_id"].to_numpy())
    latest = pd.DataFrame({"row": rows, "col": cols, "rank": rank}).groupby(["row", "col"], sort=False)["rank"].max()
    matrix = sp.csr_matrix((latest.to_numpy(), (latest.index.get_level_values(0), latest.index.get_level_values(1))),
                           shape=(len(user_ids), len(item_ids)))
    matrix.sort_indices()
    return matrix


def top_k_frame(values: torch.Tensor, indices: torch.Tensor, query_ids: np.ndarray, result_ids: IdMap,
                query_column: str, result_column: str) -> pd.DataFrame:
    """Long table from :func:`ranked_top_k` output ``[n_queries, k]`` (index ``-1`` entries dropped).

    A row may therefore hold fewer than ``k`` results when fewer items were eligible.
    """
    k = indices.shape[1]
    values_np, indices_np = values.numpy(), indices.numpy()
    keep = indices_np >= 0
    query_ids = np.asarray(query_ids)
    return pd.DataFrame({
        query_column: np.repeat(query_ids, k).reshape(-1, k)[keep],
        result_column: result_ids.to_ids(indices_np[keep]),
        "score": values_np[keep].astype(np.float32),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), (len(values_np), 1))[keep],
    })


def _as_array(values: Iterable) -> np.ndarray:
    """External ids as a 1-d array (a lone string or number counts as one id)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = [values]
    if isinstance(values, (np.ndarray, pd.Index, pd.Series)):
        return np.asarray(values)
    # Through pd.Index so that mixed ints and strings stay as they are (numpy would stringify them).
    return pd.Index(list(values), tupleize_cols=False).to_numpy()


class RecommenderBase:
    """Shared estimator logic; see the module docstring for the contract.

    Learned attributes (after ``fit``):
        user_ids_ (IdMap): every user in ``interactions`` or ``users``.
        item_ids_ (IdMap): every item in ``interactions`` or ``items`` (cold items included).
        user_items_ (scipy.sparse.csr_matrix): training interactions ``[n_users, n_items]``.
    """

    #: Users per scoring batch in ``recommend``; bounds memory at ``batch x n_items`` floats.
    recommend_batch_size = 1024
    #: Whether the cosine of :attr:`item_vectors` is this model's item–item similarity (exports
    #: then score the vectors alone). False: the vectors only propose candidates that
    #: :meth:`item_similarity` re-ranks (a two-stage approximate search).
    similarity_is_vector_cosine = True

    def __init_subclass__(cls, **kwargs) -> None:
        """Register every subclass by name: :meth:`load` builds only registered classes."""
        super().__init_subclass__(**kwargs)
        model_loading.register_recommender(cls)

    # -- parameters (scikit-learn style) ---------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments as given (``deep`` is there for scikit-learn: nothing is nested)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params) -> "RecommenderBase":
        """Set constructor arguments by name, as scikit-learn does; return ``self``.

        Values are checked when :meth:`fit` (or :meth:`load`) runs, not here.

        Raises:
            HybridRecError: a name that is not a constructor argument (nothing is set then).
        """
        valid = self.get_params()
        for name in params:
            if name not in valid:
                raise HybridRecError(f"{type(self).__name__}.set_params: unknown parameter {name!r}; "
                                     f"valid parameters: {sorted(valid)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def _check_params(self) -> None:
        """Refuse parameter values that cannot be fitted, with a :class:`HybridRecError` naming the
        parameter. Run at the start of :meth:`fit` and by :meth:`load`; subclasses extend it."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, interactions: pd.DataFrame | RecDataset, items: pd.DataFrame | None = None,
            users: pd.DataFrame | None = None, **fit_options) -> "RecommenderBase":
        """Learn from ``interactions`` (user_id, item_id, optional weight); return ``self``.

        Items in ``items`` and users in ``users`` without interactions are kept as cold ones.
        The parameters are checked first (:meth:`_check_params`).
        ``interactions`` may be a :class:`~hybridrec.tables.RecDataset`, whose three tables are used
        (then give no ``items`` or ``users``).
        """
        self._check_params()
        if isinstance(interactions, RecDataset):
            if items is not None or users is not None:
                raise HybridRecError("fit got a RecDataset and items/users: the dataset's tables are used")
            interactions, items, users = interactions.interactions, interactions.items, interactions.users
        for column in ("user_id", "item_id"):
            if column not in interactions.columns:
                raise HybridRecError(f"interactions has no column {column!r}; found {list(interactions.columns)}")
        if len(interactions) == 0:
            raise HybridRecError("interactions is empty: nothing to fit")
        id_maps = table_id_maps(interactions, items, users)
        self.item_ids_, self.user_ids_ = id_maps["item"], id_maps["user"]
        self.user_items_ = interaction_matrix(interactions, self.user_ids_, self.item_ids_)
        self._fit(interactions, items, users, **fit_options)
        return self

    def _fit(self, interactions: pd.DataFrame, items: pd.DataFrame | None,
             users: pd.DataFrame | None, **fit_options) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise HybridRecError(f"{type(self).__name__} is not fitted yet: call fit() first")

    # -- scoring (tensor layer, internal indices) ------------------------------------------
    def score_users(self, user_index: np.ndarray) -> torch.Tensor:
        """Scores of every item for users ``user_index`` ``[b]`` -> ``[b, n_items]`` (float32)."""
        raise NotImplementedError

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """Similarity of items ``item_index`` ``[b]`` to every item -> ``[b, n_items]``."""
        raise HybridRecError(f"{type(self).__name__} has no item-item similarity")

    @property
    def item_vectors(self) -> Callable[[], torch.Tensor | np.ndarray]:
        """``item_vectors()``: item vectors ``[n_items, dim]`` (rows in ``item_ids_`` order) whose
        cosine or dot product ranks similar items, for models that have them (exported through the
        exact blockwise top-k or an ANN index instead of :meth:`item_similarity`).

        An optional capability: a model that has it defines the method ``item_vectors(self)``.
        Here it raises :class:`MissingCapabilityError`, so a model without it has no such
        attribute (``hasattr(model, "item_vectors")`` is False) and calling it says so.
        """
        raise MissingCapabilityError(f"{type(self).__name__} has no item vectors: its similar items come from "
                                     "item_similarity()")

    @property
    def item_similarity_pairs(self) -> Callable[[np.ndarray, np.ndarray], torch.Tensor]:
        """``item_similarity_pairs(query_index, columns)``: :meth:`item_similarity` at chosen pairs only.

        ``query_index`` ``[b]`` int64 item indices, ``columns`` ``[b, c]`` int64 item indices
        (``-1`` = no candidate) -> ``[b, c]`` float scores, equal within float tolerance to
        ``item_similarity(query_index).gather(1, columns)`` (entries where ``columns`` is ``-1``
        are ignored). The two-stage approximate export (``export-similar --approx faiss``) re-ranks
        its candidates with it, so it never computes a full ``[b, n_items]`` row.

        An optional capability, declared like :attr:`item_vectors`: a model that has it defines the
        method; here it raises :class:`MissingCapabilityError`.
        """
        raise MissingCapabilityError(f"{type(self).__name__} has no item_similarity_pairs: approximate exports "
                                     "re-rank candidates from full item_similarity() rows")

    @property
    def similar_item_candidates(self) -> Callable[[np.ndarray], np.ndarray]:
        """``similar_item_candidates(query_index)``: the model's own likely neighbours of each query.

        ``query_index`` ``[b]`` int64 item indices -> ``[b, m]`` int64 item indices, ``-1`` padded
        (any order; repeats, the query itself and items outside the export's candidates are
        dropped by the caller). The two-stage approximate export adds them to faiss's candidates
        from :attr:`item_vectors` before re-ranking by :meth:`item_similarity`, for neighbours the
        vectors place badly (e.g. strong co-occurrence).

        An optional capability, declared like :attr:`item_vectors`: a model that has it defines the
        method; here it raises :class:`MissingCapabilityError`.
        """
        raise MissingCapabilityError(f"{type(self).__name__} has no similar_item_candidates: approximate exports "
                                     "take their candidates from item_vectors() alone")

    # -- public API ------------------------------------------------------------------------
    def rank_users(self, user_index: np.ndarray, k: int, *, filter_seen: bool = True,
                   candidate_mask: torch.Tensor | None = None,
                   exclude: sp.csr_matrix | None = None,
                   tie_seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` item indices for users ``user_index`` ``[b]`` (one batch, internal indices).

        Args:
            filter_seen: never return items the user interacted with in training.
            candidate_mask: ``[n_items]`` bool; only ``True`` items are ranked.
            exclude: extra ``[n_users, n_items]`` pairs never to return (e.g. validation items).
            tie_seed: order tied items by a pseudo-random key of (seed, user, item), the same for
                any batching (default None: by item index).

        Returns:
            ``(scores, item_index)``, both ``[b, min(k, n_items)]``, best first; index ``-1`` where
            fewer than ``k`` items were eligible.
        """
        scores = self.score_users(np.asarray(user_index, dtype=np.int64)).float().clone()
        for matrix in ((self.user_items_ if filter_seen else None), exclude):
            if matrix is not None:
                seen = matrix[user_index].tocoo()
                rows, cols = torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(seen.col.astype(np.int64))
                scores[rows, cols] = -torch.inf
        if candidate_mask is not None:
            scores[:, ~candidate_mask] = -torch.inf
        keys = None if tie_seed is None else seeded_tie_keys(user_index, scores.shape[1], tie_seed)
        return ranked_top_k(scores, k, tie_keys=keys)

    def recommend(self, user_ids: Iterable, k: int = 10, filter_seen: bool = True,
                  candidates: Iterable | None = None, exclude: Iterable | None = None) -> pd.DataFrame:
        """Top-``k`` items per user.

        Args:
            user_ids: external user ids (cold users from ``users`` allowed).
            k: list length per user.
            filter_seen: drop items the user interacted with in training.
            candidates: optional external item ids to rank among (e.g. cold items only).
            exclude: optional external item ids never to return (e.g. out of stock).

        Returns:
            DataFrame with columns user_id, item_id, score, rank (1-based). Ties in score are
            ordered by the items' internal index, so results are deterministic.

        Raises:
            HybridRecError: unknown user, candidate or excluded ids, ``k < 1``, model not fitted.
        """
        self._check_fitted()
        if k < 1:
            raise HybridRecError(f"k must be >= 1, got {k}")
        user_ids = _as_array(user_ids)
        user_index = self.user_ids_.to_index(user_ids)
        candidate_mask = self.item_mask(candidates, exclude)
        return self._ranked_frame(
            user_ids, user_index, lambda batch: self.rank_users(batch, k, filter_seen=filter_seen,
                                                                candidate_mask=candidate_mask),
            "user_id", "item_id")

    def item_mask(self, candidates: Iterable | None = None, exclude: Iterable | None = None) -> torch.Tensor | None:
        """``[n_items]`` bool, the items a ranking may return: ``candidates`` (external ids; ``None``:
        all) less ``exclude``; ``None`` when both are ``None`` (every item).

        Raises:
            HybridRecError: an id the model does not know (named).
        """
        if candidates is None and exclude is None:
            return None
        if candidates is None:
            mask = torch.ones(len(self.item_ids_), dtype=torch.bool)
        else:
            mask = torch.zeros(len(self.item_ids_), dtype=torch.bool)
            mask[torch.from_numpy(self.item_ids_.to_index(_as_array(candidates)))] = True
        if exclude is not None:
            mask[torch.from_numpy(self.item_ids_.to_index(_as_array(exclude)))] = False
        return mask

    def _ranked_frame(self, query_ids: np.ndarray, query_index: np.ndarray, rank_batch, query_column: str,
                      result_column: str) -> pd.DataFrame:
        """Long top-k table of ``query_ids``: ``rank_batch(index [b]) -> (values, indices) [b, k]`` run
        over batches of ``recommend_batch_size`` queries."""
        frames = []
        for start in range(0, len(query_index), self.recommend_batch_size):
            values, indices = rank_batch(query_index[start:start + self.recommend_batch_size])
            frames.append(top_k_frame(values, indices, query_ids[start:start + self.recommend_batch_size],
                                      self.item_ids_, query_column, result_column))
        if not frames:
            return pd.DataFrame({query_column: query_ids, result_column: self.item_ids_.ids[:0],
                                 "score": np.zeros(0, np.float32), "rank": np.zeros(0, np.int64)})
        return pd.concat(frames, ignore_index=True)

    @property
    def recommend_for_history(self) -> Callable[..., pd.DataFrame]:
        """``recommend_for_history(item_ids, k=20, filter_seen=True, candidates=None, exclude=None)``:
        the top-``k`` items for a new user known only by the items ``item_ids`` they interacted with,
        without refitting (``filter_seen``: drop those items; ``candidates``: rank only these;
        ``exclude``: never return these), as a
        DataFrame with columns item_id, score, rank (1-based).

        An optional capability, declared like :attr:`item_vectors`: a model that has it defines the
        method; here it raises :class:`MissingCapabilityError`.
        """
        raise MissingCapabilityError(f"{type(self).__name__} has no recommend_for_history: it cannot recommend "
                                     "for a new user's history; recommend for users it was fitted on instead")

    def similar_items(self, item_ids: Iterable, k: int = 10, exclude: Iterable | None = None) -> pd.DataFrame:
        """Top-``k`` most similar items per item (the item itself excluded).

        Args:
            exclude: optional external item ids never to return (e.g. out of stock).

        Returns:
            DataFrame with columns item_id, similar_item_id, score, rank.

        Raises:
            HybridRecError: unknown item ids, ``k < 1``, model not fitted.
        """
        self._check_fitted()
        if k < 1:
            raise HybridRecError(f"k must be >= 1, got {k}")
        item_ids = _as_array(item_ids)
        item_index = self.item_ids_.to_index(item_ids)
        allowed = self.item_mask(None, exclude)

        def rank_batch(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            scores = self.item_similarity(batch).float().clone()
            scores[torch.arange(len(batch)), torch.from_numpy(batch)] = -torch.inf
            if allowed is not None:
                scores[:, ~allowed] = -torch.inf
            return ranked_top_k(scores, k)

        return self._ranked_frame(item_ids, item_index, rank_batch, "item_id", "similar_item_id")

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save (subclasses extend)."""
        return {}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`_state` saved (keys without the ``model.`` prefix).

        Runs after ``user_ids_``, ``item_ids_`` and ``user_items_`` are restored. Subclasses check
        the tensors with :meth:`_check_state` before building anything from them, and raise
        :class:`HybridRecError` for a state that does not fit (``load`` adds the file name).
        """

    def _check_state(self, state: dict[str, torch.Tensor], expected: dict[str, tuple], *,
                     integer: Iterable[str] = ()) -> None:
        """Refuse ``state`` unless it holds exactly the keys of ``expected``, each of that shape.

        Shapes use ``"users"`` / ``"items"`` for the sizes of the id tables, ints for sizes that
        come from the parameters, None for any size; ``integer`` keys hold indices, the others floats.
        """
        model_loading.check_state(state, expected, n_users=len(self.user_ids_), n_items=len(self.item_ids_),
                                  integer=integer)

    def save(self, path: str | Path, *, overwrite: bool = True, extra_files: Mapping[str, str] | None = None) -> Path:
        """Write the fitted model to folder ``path`` atomically; return ``path``.

        Args:
            overwrite: replace a model saved at ``path`` before (any other non-empty folder, or a
                file, is never replaced: see :mod:`hybridrec.atomic`).
            extra_files: text files (name -> content) written into the folder in the same atomic
                step, e.g. a training summary.

        Raises:
            HybridRecError: ``path`` holds something that may not be replaced.
        """
        self._check_fitted()
        path = Path(path)
        user_items = self.user_items_.tocoo()
        state = {
            "user_items_row": torch.from_numpy(user_items.row.astype(np.int64)),
            "user_items_col": torch.from_numpy(user_items.col.astype(np.int64)),
            "user_items_value": torch.from_numpy(user_items.data.astype(np.float32)),
            **{f"model.{k}": v for k, v in self._state().items()},
        }
        with atomic_path(path, kind=MODEL_FOLDER, overwrite=overwrite) as tmp:
            tmp.mkdir()
            for name, text in (extra_files or {}).items():
                if Path(name).name != name or name in (CONFIG_FILE, STATE_FILE):
                    raise HybridRecError(f"extra file name {name!r} must be a plain file name, not a model file")
                (tmp / name).write_text(text, encoding="utf-8")
            self.user_ids_.to_frame().to_parquet(tmp / "user_ids.parquet", index=False)
            self.item_ids_.to_frame().to_parquet(tmp / "item_ids.parquet", index=False)
            torch.save(state, tmp / STATE_FILE)
            config = {"class": type(self).__name__, "module": type(self).__module__, "params": self.get_params()}
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RecommenderBase":
        """Load a model saved with :meth:`save`.

        Only a registered recommender class is built (see :mod:`hybridrec.model_loading`: the
        ``module`` key of ``config.json`` is never imported blindly), with ``params`` checked
        against its ``__init__``; tensors come through ``torch.load(weights_only=True)`` and are
        checked against the id tables and the parameters before any module is built.

        Raises:
            HybridRecError: one line naming the file at fault, for a path that is not a model folder,
                an unknown class, bad params, or a truncated, corrupt or inconsistent file.
        """
        path = Path(path)
        if not path.is_dir():
            raise HybridRecError(f"{path}: not a saved hybridrec model "
                                 f"({'no such folder' if not path.exists() else 'not a folder'})")
        config_path, state_path = path / CONFIG_FILE, path / STATE_FILE
        if not config_path.is_file():
            raise HybridRecError(f"{path}: not a saved hybridrec model (no {CONFIG_FILE})")
        config = model_loading.read_config(config_path)
        model_cls = model_loading.resolve_class(config, config_path)
        if not issubclass(model_cls, cls):
            raise HybridRecError(located(f"key 'class': the folder holds a {config['class']}, not a {cls.__name__}",
                                         file=config_path))
        if model_cls is not cls and getattr(model_cls.load, "__func__", None) is not RecommenderBase.load.__func__:
            return model_cls.load(path)  # the class's own load reads what it saves beyond this (e.g. an index)
        model = model_loading.build_from_config(model_cls, config["params"], config_path)
        model.user_ids_ = model_loading.read_id_map(path / "user_ids.parquet", kind="user")
        model.item_ids_ = model_loading.read_id_map(path / "item_ids.parquet", kind="item")
        state = model_loading.read_state(state_path)
        prefix = model_loading.MODEL_STATE_PREFIX
        unknown = sorted(key for key in state if not key.startswith(prefix) and key not in _MATRIX_KEYS)
        try:
            if unknown:
                raise HybridRecError(f"unexpected state key(s) {unknown}")
            model.user_items_ = model_loading.coo_from_state(state, "user_items", ("users", "items"),
                                                             n_users=len(model.user_ids_),
                                                             n_items=len(model.item_ids_))
            model._load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        except HybridRecError as err:
            raise HybridRecError(located(str(err), file=state_path)) from err
        except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as err:
            reason = f"no state key {prefix + str(err.args[0])!r}" if isinstance(err, KeyError) and err.args else \
                model_loading.short_reason(err)
            raise HybridRecError(located(f"the state does not fit {model_cls.__name__}({config['params']}): {reason}",
                                         file=state_path)) from err
        return model
