"""The HTTP service of a saved model: :func:`create_app` builds the FastAPI app ``hybridrec serve`` runs.

Endpoints (JSON in and out; the OpenAPI page is at ``/docs``):

* ``GET /health``: the model served (folder, class, sizes, generation, when loaded);
* ``POST /recommend``: top-``k`` items for known users (``user_ids``) or for an anonymous
  history (``history``: item ids, through ``recommend_for_history``), with ``exclude`` and
  ``candidates``;
* ``POST /similar``: similar items of ``item_ids``; ``POST /search``: a free-text query,
  optionally personalised by ``user_id``; ``POST /explain``: why items were recommended to a user;
* ``POST /items`` (add or update catalog items, ``add_items``) and ``POST /items/remove``
  (hide items, ``remove_items``): changes of the model in memory, until the next reload;
* ``POST /reload``: load the model folder again (or another one, ``path``) and swap it in.

Bad requests get a 4xx with a one-line ``detail`` naming the field: 422 when the body does not
fit its schema (``k`` out of range, a list too long, malformed JSON), 400 when the model refuses
it (a :class:`~hybridrec.errors.HybridRecError`: unknown ids, listed). Nothing returns a traceback.

Concurrency: scoring is CPU-bound torch run by FastAPI's thread pool (sync endpoints). One model
object is shared read-only: each request reads :attr:`ModelHolder.served` once and keeps that
snapshot to its end. A reload loads the new model fully, then replaces the snapshot in one
assignment, so requests in flight finish on the old model and none is dropped. Catalog changes
never mutate a served model: they copy it, change the copy and swap it in, one at a time (reloads
and catalog changes are serialised by one lock).

FastAPI and uvicorn are the optional extra ``serve`` (``pip install 'hybridrec[serve]'``);
importing this module without them raises :class:`~hybridrec.errors.HybridRecError` saying so.
A model folder is built only as a registered recommender class (see
:mod:`hybridrec.model_loading`): this module registers :class:`~hybridrec.recommender.HybridRecommender`;
callers serving a baseline import its module first (the CLI does).
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import hybridrec.recommender  # noqa: F401 - registers HybridRecommender, the class a model folder names
from hybridrec import model_loading
from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap
from hybridrec.recommender_base import CONFIG_FILE, RecommenderBase

INSTALL_HINT = "pip install 'hybridrec[serve]'"
try:
    import anyio.to_thread
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field
except ModuleNotFoundError as err:  # pragma: no cover - exercised without the extra installed
    raise HybridRecError(f"the HTTP service needs FastAPI and uvicorn ({err.name} is not installed): "
                         f"{INSTALL_HINT}") from None

logger = logging.getLogger(__name__)

#: Largest ``k`` a request may ask for.
MAX_K = 1000
#: Largest number of query ids (users, items) in one request.
MAX_QUERIES = 1000
#: Largest ``history`` / ``exclude`` / ``item_ids`` lists of ids to filter or explain with.
MAX_IDS = 100_000
#: Largest number of catalog rows one ``POST /items`` may add.
MAX_NEW_ITEMS = 10_000
#: Longest query text, in characters.
MAX_QUERY_CHARS = 1000

Id = int | str


# -- the served model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Served:
    """One immutable snapshot of what is served: a model and where it came from."""

    model: RecommenderBase
    path: Path
    generation: int
    loaded_at: str
    #: Catalog changes applied in memory since the folder was loaded.
    changes: tuple[str, ...] = field(default=())

    def info(self) -> dict[str, Any]:
        """What ``GET /health`` reports about this snapshot."""
        return {"path": str(self.path), "class": type(self.model).__name__, "generation": self.generation,
                "loaded_at": self.loaded_at, "n_users": len(self.model.user_ids_),
                "n_items": len(self.model.item_ids_), "changes": list(self.changes)}


def load_model(path: str | Path) -> RecommenderBase:
    """The model saved in folder ``path``, loaded by its own class's ``load`` (the hybrid's brings
    its search index and catalog state, which :meth:`RecommenderBase.load` alone leaves out).

    Raises:
        HybridRecError: ``path`` is not a loadable model folder (said why).
    """
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        return RecommenderBase.load(path)  # raises, saying what the folder lacks
    model_cls = model_loading.resolve_class(model_loading.read_config(config_path), config_path)
    if not issubclass(model_cls, RecommenderBase):
        raise HybridRecError(f"{config_path}: {model_cls.__name__} is not a recommender")
    return model_cls.load(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelHolder:
    """The model a server answers with, swapped atomically by :meth:`reload` and :meth:`change`.

    Args:
        path: folder of a model saved with ``save`` (loaded here, so a bad folder fails at once).
    """

    def __init__(self, path: str | Path) -> None:
        self._write_lock = threading.Lock()
        path = Path(path)
        self.served = Served(load_model(path), path, generation=1, loaded_at=_now())
        logger.info("serving %s from %s", type(self.served.model).__name__, path)

    def reload(self, path: str | Path | None = None) -> Served:
        """Load ``path`` (default: the folder served now) fully, then swap it in; return the new snapshot.

        Requests already running keep the old model. A folder that fails to load raises
        :class:`HybridRecError` and leaves the old model served.
        """
        with self._write_lock:
            old = self.served
            path = Path(path) if path is not None else old.path
            started = time.perf_counter()
            model = load_model(path)
            self.served = Served(model, path, generation=old.generation + 1, loaded_at=_now())
        logger.info("reloaded %s from %s in %.2f s (generation %d)", type(model).__name__, path,
                    time.perf_counter() - started, self.served.generation)
        return self.served

    def change(self, description: str, apply) -> Served:
        """Apply ``apply(model)`` to a copy of the served model, then swap the copy in.

        Copy-on-write, so that no request ever sees a model half changed; changes run one at a time.
        """
        with self._write_lock:
            old = self.served
            model = copy.deepcopy(old.model)
            apply(model)
            self.served = Served(model, old.path, generation=old.generation + 1, loaded_at=old.loaded_at,
                                 changes=(*old.changes, description))
        return self.served


# -- request and response bodies ------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Body):
    """Give ``user_ids`` (users the model knows) or ``history`` (an anonymous user's items), not both."""

    user_ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_QUERIES, examples=[[1, 2]])
    history: list[Id] | None = Field(None, min_length=1, max_length=MAX_IDS, examples=[[50, 172, 181]])
    k: int = Field(10, ge=1, le=MAX_K)
    exclude: list[Id] | None = Field(None, max_length=MAX_IDS, description="item ids never to return")
    candidates: list[Id] | None = Field(None, min_length=1, max_length=MAX_IDS,
                                        description="rank only these item ids")
    filter_seen: bool = Field(True, description="drop items the user (or the history) already has")


class SimilarRequest(_Body):
    item_ids: list[Id] = Field(..., min_length=1, max_length=MAX_QUERIES, examples=[[50]])
    k: int = Field(10, ge=1, le=MAX_K)
    exclude: list[Id] | None = Field(None, max_length=MAX_IDS)


class SearchRequest(_Body):
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, examples=["a love story in paris"])
    k: int = Field(20, ge=1, le=MAX_K)
    user_id: Id | None = Field(None, description="personalise for this user")


class ExplainRequest(_Body):
    user_id: Id
    item_ids: list[Id] = Field(..., min_length=1, max_length=MAX_QUERIES)
    k: int = Field(5, ge=1, le=MAX_K, description="reasons per item")


class AddItemsRequest(_Body):
    items: list[dict[str, Any]] = Field(..., min_length=1, max_length=MAX_NEW_ITEMS,
                                        description="catalog rows: item_id and the columns the model was fitted with")
    update: bool = Field(False, description="replace items the model already knows instead of refusing them")


class RemoveItemsRequest(_Body):
    item_ids: list[Id] = Field(..., min_length=1, max_length=MAX_IDS)


class ReloadRequest(_Body):
    path: str | None = Field(None, description="model folder to serve from now on (default: the current one)")


class ModelInfo(BaseModel):
    path: str
    class_: str = Field(alias="class")
    generation: int
    loaded_at: str
    n_users: int
    n_items: int
    changes: list[str]


class Health(BaseModel):
    status: str
    model: ModelInfo


class Ranked(BaseModel):
    """A ranked list as rows: the query column(s) of the endpoint, then item_id, score, rank."""

    generation: int = Field(description="model generation that answered")
    results: list[dict[str, Any]]


class CatalogChange(BaseModel):
    generation: int
    n_items: int
    added: int = 0
    updated: int = 0
    removed: int = 0
    seconds: float


# -- ids as the model spells them -----------------------------------------------------------------
def model_ids(id_map: IdMap, values: list, field_name: str) -> list:
    """``values`` as the model's own ids (JSON ``"7"`` for an int id ``7`` and ``7`` for ``"7"`` too).

    Raises:
        HybridRecError: naming ``field_name`` and listing the ids the model does not know.
    """
    found, unknown = [], []
    for value in values:
        for candidate in _spellings(value):
            if candidate in id_map:
                found.append(candidate)
                break
        else:
            unknown.append(value)
    if unknown:
        shown = list(dict.fromkeys(unknown))
        more = f" (and {len(shown) - 20} more)" if len(shown) > 20 else ""
        raise HybridRecError(f"{field_name}: unknown {id_map.kind} id(s) {shown[:20]}{more}")
    return found


def _spellings(value: Id) -> tuple:
    if isinstance(value, str):
        stripped = value.strip()
        return (value, int(stripped)) if stripped.lstrip("-").isdigit() else (value,)
    return (value, str(value))


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts (numpy scalars as Python ones, NaN as null)."""
    columns = []
    for name in frame.columns:
        values = frame[name].tolist()  # Python scalars, not numpy ones
        if frame[name].dtype.kind in "fO":
            values = [None if isinstance(value, float) and math.isnan(value) else _plain(value) for value in values]
        columns.append(values)
    names = list(frame.columns)
    return [dict(zip(names, row)) for row in zip(*columns)]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _capability(model: RecommenderBase, name: str):
    """``model.name``, or a :class:`HybridRecError` saying the served model cannot do it."""
    method = getattr(model, name, None)
    if method is None:
        raise HybridRecError(f"the served model ({type(model).__name__}) has no {name}()")
    return method


# -- the app --------------------------------------------------------------------------------------
def create_app(model_dir: str | Path | None = None, *, holder: ModelHolder | None = None,
               threads: int | None = None) -> FastAPI:
    """The FastAPI app serving the model saved in ``model_dir`` (loaded now; see the module docstring).

    Args:
        holder: serve this :class:`ModelHolder` (e.g. one a SIGHUP handler also reloads) instead
            of loading ``model_dir``.
        threads: requests scored at once (the size of the thread pool of the sync endpoints);
            default anyio's (40).

    Raises:
        HybridRecError: ``model_dir`` is not a loadable model folder, or neither it nor ``holder`` given.
    """
    if holder is None:
        if model_dir is None:
            raise HybridRecError("create_app needs model_dir or holder")
        holder = ModelHolder(model_dir)
    if threads is not None and threads < 1:
        raise HybridRecError(f"threads must be >= 1, got {threads}")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if threads is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(title="hybridrec", summary="Recommendations, similar items, query search and explanations "
                  "from a saved hybridrec model.", version=_version(), lifespan=lifespan)
    app.state.holder = holder
    _add_error_handlers(app)

    @app.get("/health", response_model=Health)
    def health() -> dict:
        return {"status": "ok", "model": holder.served.info()}

    @app.post("/recommend", response_model=Ranked)
    def recommend(body: RecommendRequest) -> dict:
        served = holder.served
        model = served.model
        if (body.user_ids is None) == (body.history is None):
            raise HybridRecError("give either user_ids (known users) or history (an anonymous user's items), "
                                 "not both and not neither")
        exclude = None if body.exclude is None else model_ids(model.item_ids_, body.exclude, "exclude")
        candidates = None if body.candidates is None else model_ids(model.item_ids_, body.candidates, "candidates")
        options = {"k": body.k, "filter_seen": body.filter_seen, "candidates": candidates, "exclude": exclude}
        if body.user_ids is not None:
            frame = model.recommend(model_ids(model.user_ids_, body.user_ids, "user_ids"), **options)
        else:
            history = model_ids(model.item_ids_, body.history, "history")
            frame = _capability(model, "recommend_for_history")(history, **options).drop(columns="user_id",
                                                                                         errors="ignore")
        return {"generation": served.generation, "results": _rows(frame)}

    @app.post("/similar", response_model=Ranked)
    def similar(body: SimilarRequest) -> dict:
        served = holder.served
        model = served.model
        items = model_ids(model.item_ids_, body.item_ids, "item_ids")
        exclude = None if body.exclude is None else model_ids(model.item_ids_, body.exclude, "exclude")
        return {"generation": served.generation, "results": _rows(model.similar_items(items, k=body.k,
                                                                                        exclude=exclude))}

    @app.post("/search", response_model=Ranked)
    def search(body: SearchRequest) -> dict:
        served = holder.served
        model = served.model
        # A one-id list: the model's methods take it as well as one id (and numpy ints less well).
        user = None if body.user_id is None else model_ids(model.user_ids_, [body.user_id], "user_id")
        if not body.query.strip():
            raise HybridRecError("query: must not be blank")
        k = min(body.k, len(model.item_ids_))
        frame = _capability(model, "search")(body.query, k=k, user_id=user)
        return {"generation": served.generation, "results": _rows(frame)}

    @app.post("/explain", response_model=Ranked)
    def explain(body: ExplainRequest) -> dict:
        served = holder.served
        model = served.model
        user = model_ids(model.user_ids_, [body.user_id], "user_id")
        items = model_ids(model.item_ids_, body.item_ids, "item_ids")
        frame = _capability(model, "explain")(user, items, k=body.k)
        return {"generation": served.generation, "results": _rows(frame)}

    @app.post("/items", response_model=CatalogChange)
    def add_items(body: AddItemsRequest) -> dict:
        if any("item_id" not in row for row in body.items):
            missing = [i for i, row in enumerate(body.items) if "item_id" not in row]
            raise HybridRecError(f"items: row(s) {missing[:20]} have no item_id")
        rows = pd.DataFrame(body.items)
        ids = rows["item_id"].tolist()
        started = time.perf_counter()
        before = holder.served.model
        _capability(before, "add_items")
        known = sum(1 for value in ids if any(c in before.item_ids_ for c in _spellings(value)))
        served = holder.change(f"add_items({len(ids)})",
                               lambda model: model.add_items(rows, update=body.update))
        return {"generation": served.generation, "n_items": len(served.model.item_ids_), "added": len(ids) - known,
                "updated": known, "seconds": round(time.perf_counter() - started, 3)}

    @app.post("/items/remove", response_model=CatalogChange)
    def remove_items(body: RemoveItemsRequest) -> dict:
        started = time.perf_counter()
        before = holder.served.model
        _capability(before, "remove_items")
        items = model_ids(before.item_ids_, body.item_ids, "item_ids")
        served = holder.change(f"remove_items({len(items)})", lambda model: model.remove_items(items))
        return {"generation": served.generation, "n_items": len(served.model.item_ids_), "removed": len(items),
                "seconds": round(time.perf_counter() - started, 3)}

    @app.post("/reload", response_model=Health)
    def reload(body: ReloadRequest | None = None) -> dict:
        served = holder.reload(None if body is None else body.path)
        return {"status": "ok", "model": served.info()}

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """4xx with a one-line ``detail`` for bad requests; a 500 without traceback for anything else."""

    @app.exception_handler(HybridRecError)
    async def refused(request: Request, err: HybridRecError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": " ".join(str(err).split())})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        plain = [_plain_error(error) for error in errors]
        return JSONResponse(status_code=422, content={
            "detail": "; ".join(f"{error['field']}: {error['message']}" for error in plain), "errors": plain})

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn logs the exception), never to the client.
        return JSONResponse(status_code=500, content={
            "detail": f"internal error ({type(err).__name__}); this is a bug in hybridrec: please report it "
                      "with the server's log"})


def _field_name(location) -> str:
    """``("body", "k")`` -> ``"k"``; ``("body", "user_ids", 3)`` -> ``"user_ids[3]"``; the body itself -> ``"body"``."""
    parts = [part for part in location if part != "body"] or ["body"]
    name = str(parts[0])
    for part in parts[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def _plain_error(error: dict) -> dict:
    """A validation error without the parts that are not JSON (``ctx`` may hold exceptions)."""
    location, message = error.get("loc", ()), error.get("msg", "invalid")
    if error.get("type") == "json_invalid":  # location ("body", character offset)
        where = location[-1] if location and isinstance(location[-1], int) else None
        reason = (error.get("ctx") or {}).get("error")
        return {"field": "body", "type": "json_invalid",
                "message": "not valid JSON" + (f" at character {where}" if where is not None else "")
                           + (f" ({reason})" if reason else "")}
    return {"field": _field_name(location), "message": message, "type": error.get("type")}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hybridrec")
    except PackageNotFoundError:
        return "unknown"
