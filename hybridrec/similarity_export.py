"""Item–item similarity tables and batch recommendations, streamed to Parquet or CSV.

Tables in, tables out: external ids in every column (``item_id, similar_item_id, score, rank`` or
``user_id, item_id, score, rank``), written one block of queries at a time through
:class:`~hybridrec.topk_table.TopKTableWriter` (atomic, never the whole table in memory). ``shard``
computes one contiguous part of the queries; :func:`hybridrec.topk_table.merge_shards` joins the
parts. The table format, its metadata and its readers are in :mod:`hybridrec.topk_table`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from hybridrec.ann_index import (RERANK_CANDIDATES_PER_RESULT, approximate_top_k_blocks, measure_recall,
                                 measure_reranked_recall, two_stage_top_k_blocks)
from hybridrec.errors import HybridRecError
from hybridrec.id_map import IdMap
from hybridrec.recommender_base import RecommenderBase
from hybridrec.topk import METRICS, EmbeddingScorer, FunctionScorer, Scorer, iter_top_k
from hybridrec.topk_table import (FORMAT_VERSION, ITEM_SIMILARITY, RECOMMENDATIONS, ExportSummary, ShardSpec,
                                  TopKTableWriter, as_shard_spec, block_table, fingerprint, id_type,
                                  schema_from_settings, table_schema)

logger = logging.getLogger(__name__)


def _unique_ids(ids: Iterable, what: str) -> np.ndarray:
    values = pd.Index(np.asarray(list(ids) if not isinstance(ids, (np.ndarray, pd.Index, pd.Series)) else ids))
    if not values.is_unique:
        logger.warning("%d duplicate %s id(s) dropped", int(values.duplicated().sum()), what)
        values = values.unique()
    return values.to_numpy()


def export_similar_items(out: str | Path, item_ids: IdMap, *, embeddings: torch.Tensor | np.ndarray | None = None,
                         score_block=None, candidate_vectors: torch.Tensor | np.ndarray | None = None,
                         score_pairs=None, propose_candidates=None,
                         k: int = 50, metric: str = "cosine", query_ids: Iterable | None = None,
                         candidate_ids: Iterable | None = None, include_self: bool = False,
                         min_score: float | None = None, shard: ShardSpec | str | None = None,
                         format: str | None = None, approx: str | None = None, ann_config=None,
                         recall_sample: int = 1000, memory_budget_bytes: int | None = None,
                         device: str | torch.device | None = "auto", progress: bool = True,
                         source: str | None = None, overwrite: bool = True) -> ExportSummary:
    """Write the top-``k`` similar items of each query item to ``out``.

    Args:
        out: destination table (``.parquet`` by default, ``.csv``).
        item_ids: external ids of the rows of ``embeddings`` / columns of ``score_block``.
        embeddings: ``[n_items, dim]`` item vectors, scored by ``metric`` (``cosine`` or ``dot``).
        score_block: instead of embeddings, ``item_index [b] -> scores [b, n_items]``.
        candidate_vectors: with ``score_block`` and ``approx``: ``[n_items, dim]`` vectors whose
            ``metric`` neighbours are the candidates (``RERANK_CANDIDATES_PER_RESULT x k`` per
            query) that ``score_block`` re-ranks exactly (a two-stage search).
        score_pairs: with ``candidate_vectors``: ``(item_index [b], columns [b, c] int64, -1 = none)
            -> scores [b, c]``, ``score_block``'s scores at those columns only (a model's
            ``item_similarity_pairs``); the re-rank then never computes a full row, and
            ``score_block`` only scores the ``recall_sample`` queries of the recall check.
        propose_candidates: with ``candidate_vectors``: ``item_index [b] -> item_index [b, m]``
            int64, ``-1`` padded (a model's ``similar_item_candidates``), candidates added to faiss's
            before the re-rank (deduplicated; ``candidate_ids`` and ``include_self`` apply).
        query_ids: items to find neighbours for (default all, in index order).
        candidate_ids: the only items that may be neighbours (e.g. in stock).
        include_self: allow an item to be its own neighbour (excluded by default).
        min_score: drop neighbours scoring below it.
        shard: ``ShardSpec`` or ``"i/n"``: only that contiguous part of the queries.
        approx: ``"faiss"`` for approximate search (``embeddings``, or ``candidate_vectors`` re-ranked
            by ``score_block``); its recall@k against exact on ``recall_sample`` queries is logged
            and recorded.
        memory_budget_bytes: ceiling for one block of scores (default 256 MiB).
        overwrite: replace a file already at ``out`` (a folder there is always refused).

    Returns:
        :class:`ExportSummary`; the table has columns item_id, similar_item_id, score, rank.
    """
    started = time.perf_counter()
    if (embeddings is None) == (score_block is None):
        raise HybridRecError("give exactly one of embeddings or score_block")
    if k < 1:
        raise HybridRecError(f"k must be >= 1, got {k}")
    if embeddings is not None and metric not in METRICS:
        raise HybridRecError(f"metric must be one of {METRICS}, got {metric!r}")
    if embeddings is not None and len(embeddings) != len(item_ids):
        raise HybridRecError(f"{len(embeddings)} item vectors but {len(item_ids)} item ids")
    if (score_pairs is not None or propose_candidates is not None) and (candidate_vectors is None or approx is None):
        raise HybridRecError("score_pairs and propose_candidates apply only to the two-stage search "
                             "(score_block and candidate_vectors with approx)")
    shard = as_shard_spec(shard)
    queries = item_ids.ids if query_ids is None else _unique_ids(query_ids, "query item")
    query_index = item_ids.to_index(queries)
    candidate_index = None
    if candidate_ids is not None:
        candidate_index = np.sort(item_ids.to_index(_unique_ids(candidate_ids, "candidate item")))
    start, stop = shard.query_range(len(query_index))
    method = "exact" if approx is None else f"{approx}-{_ann_kind(ann_config)}"
    settings = {
        "table": ITEM_SIMILARITY, "query_column": "item_id", "result_column": "similar_item_id",
        "query_id_type": str(id_type(item_ids.ids)), "result_id_type": str(id_type(item_ids.ids)),
        "k": int(k), "metric": metric if embeddings is not None else "model", "min_score": min_score,
        "exclude_self": not include_self, "method": method, "n_queries_total": int(len(query_index)),
        "query_fingerprint": fingerprint(queries), "catalog_fingerprint": fingerprint(item_ids.ids),
        "candidates_fingerprint": None if candidate_index is None else fingerprint(candidate_index),
    }
    metadata = {"format_version": FORMAT_VERSION, "settings": settings,
                "shard": {"index": shard.index, "count": shard.count, "query_start": start, "query_stop": stop},
                "stats": {"source": source}}
    shard_queries = query_index[start:stop]
    recall = None
    if approx is not None:
        if approx != "faiss":
            raise HybridRecError(f"approx must be 'faiss', got {approx!r}")
        if embeddings is None and candidate_vectors is None:
            raise HybridRecError("approximate search needs item vectors; this model only has item_similarity")
        if embeddings is not None:
            blocks, index = approximate_top_k_blocks(embeddings, shard_queries, k, metric=metric,
                                                     candidate_index=candidate_index, exclude_self=not include_self,
                                                     min_score=min_score, config=ann_config)
        else:
            candidates, index = approximate_top_k_blocks(candidate_vectors, shard_queries,
                                                         k * RERANK_CANDIDATES_PER_RESULT, metric="cosine",
                                                         candidate_index=candidate_index,
                                                         exclude_self=not include_self, config=ann_config)
            blocks = two_stage_top_k_blocks(candidates, score_block, k, len(item_ids), score_pairs=score_pairs,
                                            propose_candidates=propose_candidates, candidate_index=candidate_index,
                                            exclude_self=not include_self, min_score=min_score)
            model_candidates = "+model-candidates" if propose_candidates is not None else ""
            settings["method"] = method = f"{method}{model_candidates}+rerank"
            metadata["stats"]["rerank_scores"] = "pairs" if score_pairs is not None else "full rows"
            logger.info("two-stage search: faiss%s candidates re-ranked by the model's similarity on %s",
                        " and the model's own" if propose_candidates is not None else "",
                        "candidate pairs" if score_pairs is not None else "full rows")
        if recall_sample > 0 and len(shard_queries):
            if embeddings is not None:
                recall = measure_recall(index, embeddings, shard_queries, k, metric=metric,
                                        candidate_index=candidate_index, exclude_self=not include_self,
                                        sample_size=recall_sample, device=device)
            else:
                recall = measure_reranked_recall(index, score_block, len(item_ids), shard_queries, k,
                                                 candidate_index=candidate_index, exclude_self=not include_self,
                                                 sample_size=recall_sample, device=device, score_pairs=score_pairs,
                                                 propose_candidates=propose_candidates)
            metadata["stats"]["recall_at_k"] = recall
            logger.info("faiss recall@%d against exact on %d sampled queries: %.4f", k,
                        min(recall_sample, len(shard_queries)), recall)
    else:
        scorer: Scorer
        if embeddings is not None:
            scorer = EmbeddingScorer(embeddings, metric=metric, columns=candidate_index, device=device)
        else:
            scorer = FunctionScorer(score_block, len(item_ids), columns=candidate_index, device=device)
        blocks = iter_top_k(scorer, shard_queries, k, exclude_self=not include_self, min_score=min_score,
                            memory_budget_bytes=memory_budget_bytes)
    schema = table_schema("item_id", "similar_item_id", id_type(item_ids.ids), id_type(item_ids.ids))
    ids = item_ids.ids
    with TopKTableWriter(out, schema, metadata, format=format, overwrite=overwrite) as writer, \
            tqdm(total=len(shard_queries), unit="item", unit_scale=True, desc="similar items",
                 disable=not progress) as bar:
        for block in blocks:
            writer.write(block_table(block, ids, ids, schema))
            bar.update(len(block.query_index))
        metadata["stats"]["seconds"] = time.perf_counter() - started
    seconds = time.perf_counter() - started
    logger.info("wrote %d rows for %d items to %s in %.1f s", writer.n_rows, len(shard_queries), out, seconds)
    return ExportSummary(path=Path(out), table=ITEM_SIMILARITY, n_queries=len(shard_queries), n_rows=writer.n_rows,
                         seconds=seconds, method=method, recall_at_k=recall, shard=metadata["shard"])


def _ann_kind(ann_config) -> str:
    return getattr(ann_config, "kind", "hnsw")


def export_model_similar_items(model, out: str | Path, *, metric: str | None = None, **options) -> ExportSummary:
    """:func:`export_similar_items` for a fitted recommender.

    A model whose ``item_vectors()`` (``[n_items, dim]``) define its similarity
    (:attr:`~hybridrec.recommender_base.RecommenderBase.similarity_is_vector_cosine`) is scored by
    ``metric`` (default cosine) over them. Otherwise its own ``item_similarity(item_index)`` scores,
    block by block (``metric`` does not apply); with ``approx``, its ``item_vectors()`` give the
    candidates that similarity re-ranks (a two-stage search). There the model's optional
    ``similar_item_candidates(item_index)`` (``[b] -> [b, m]``) adds its own candidates, and its
    optional ``item_similarity_pairs(item_index, columns)`` (``[b], [b, c] -> [b, c]``) scores just
    the candidates, so no full catalog row is computed but for the recall sample (see
    :class:`~hybridrec.recommender_base.RecommenderBase`).
    """
    if not hasattr(model, "item_ids_"):
        raise HybridRecError(f"{type(model).__name__} is not fitted")
    item_vectors = getattr(model, "item_vectors", None)
    own_similarity = getattr(type(model), "item_similarity", None) not in (None, RecommenderBase.item_similarity)
    if callable(item_vectors) and (model.similarity_is_vector_cosine or not own_similarity):
        return export_similar_items(out, model.item_ids_, embeddings=item_vectors(), metric=metric or "cosine",
                                    **options)
    if metric is not None:
        why = "only proposes candidates with item_vectors()" if callable(item_vectors) else "has no item_vectors()"
        raise HybridRecError(f"{type(model).__name__} {why}: its own item_similarity is used "
                             "and a metric does not apply")
    if not own_similarity:
        raise HybridRecError(f"{type(model).__name__} has neither item_vectors() nor item_similarity(): "
                             "it cannot export similar items")
    if options.get("approx") is not None and callable(item_vectors):
        # Two stages: approximate neighbours of the item vectors, re-ranked by the model's own similarity.
        options["candidate_vectors"] = item_vectors()
        for option, capability in (("score_pairs", "item_similarity_pairs"),
                                   ("propose_candidates", "similar_item_candidates")):
            provided = getattr(model, capability, None)
            if callable(provided) and options.get(option) is None:
                options[option] = provided
    return export_similar_items(out, model.item_ids_, score_block=model.item_similarity, **options)


def export_recommendations(model, out: str | Path, *, k: int = 20, user_ids: Iterable | None = None,
                           history: pd.DataFrame | None = None, filter_seen: bool = True,
                           candidate_ids: Iterable | None = None, shard: ShardSpec | str | None = None,
                           format: str | None = None, batch_size: int = 4096, progress: bool = True,
                           source: str | None = None, overwrite: bool = True) -> ExportSummary:
    """Write the top-``k`` items of each user to ``out`` (user_id, item_id, score, rank).

    Args:
        model: a fitted recommender (``RecommenderBase`` contract).
        user_ids: known users (default all, in index order); ignored with ``history``.
        history: ``user_id, item_id`` rows of new users, ranked through the model's
            ``recommend_for_history(history, k=..., ...)``.
        filter_seen: drop items the user already interacted with.
        candidate_ids: rank only these items.
        shard: only that contiguous part of the users (``"i/n"``).
        batch_size: users per ``recommend`` call.
        overwrite: replace a file already at ``out`` (a folder there is always refused).
    """
    started = time.perf_counter()
    if not hasattr(model, "item_ids_"):
        raise HybridRecError(f"{type(model).__name__} is not fitted")
    if k < 1:
        raise HybridRecError(f"k must be >= 1, got {k}")
    shard = as_shard_spec(shard)
    candidates = None if candidate_ids is None else _unique_ids(candidate_ids, "candidate item")
    if history is not None:
        method = getattr(model, "recommend_for_history", None)
        if not callable(method):
            raise HybridRecError(f"{type(model).__name__} cannot recommend for new users from a history "
                                 "(it has no recommend_for_history method); pass known users instead")
        for column in ("user_id", "item_id"):
            if column not in history.columns:
                raise HybridRecError(f"history has no column {column!r}; found {list(history.columns)}")
        users = pd.unique(history["user_id"].to_numpy())
        history_by_user = history.groupby("user_id", sort=False).indices
    else:
        users = model.user_ids_.ids if user_ids is None else _unique_ids(user_ids, "user")
        model.user_ids_.to_index(users)  # unknown users fail here, before any work
    start, stop = shard.query_range(len(users))
    settings = {
        "table": RECOMMENDATIONS, "query_column": "user_id", "result_column": "item_id",
        "query_id_type": str(id_type(users if len(users) else model.user_ids_.ids)),
        "result_id_type": str(id_type(model.item_ids_.ids)), "k": int(k), "filter_seen": bool(filter_seen),
        "method": "history" if history is not None else "recommend", "model": type(model).__name__,
        "n_queries_total": int(len(users)), "query_fingerprint": fingerprint(users),
        "catalog_fingerprint": fingerprint(model.item_ids_.ids),
        "candidates_fingerprint": None if candidates is None else fingerprint(np.sort(model.item_ids_.to_index(candidates))),
    }
    metadata = {"format_version": FORMAT_VERSION, "settings": settings,
                "shard": {"index": shard.index, "count": shard.count, "query_start": start, "query_stop": stop},
                "stats": {"source": source}}
    schema = schema_from_settings(settings)
    with TopKTableWriter(out, schema, metadata, format=format, overwrite=overwrite) as writer, \
            tqdm(total=stop - start, unit="user", unit_scale=True, desc="recommend", disable=not progress) as bar:
        for batch_start in range(start, stop, batch_size):
            batch = users[batch_start:min(batch_start + batch_size, stop)]
            if history is not None:
                rows = np.concatenate([history_by_user[user] for user in batch])
                frame = _call_recommend_for_history(model, history.iloc[np.sort(rows)], k=k, filter_seen=filter_seen,
                                                    candidates=candidates)
            else:
                frame = model.recommend(batch, k=k, filter_seen=filter_seen, candidates=candidates)
            writer.write(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False))
            bar.update(len(batch))
        metadata["stats"]["seconds"] = time.perf_counter() - started
    seconds = time.perf_counter() - started
    logger.info("wrote %d recommendations for %d users to %s in %.1f s", writer.n_rows, stop - start, out, seconds)
    return ExportSummary(path=Path(out), table=RECOMMENDATIONS, n_queries=stop - start, n_rows=writer.n_rows,
                         seconds=seconds, method=settings["method"], shard=metadata["shard"])


def _call_recommend_for_history(model, history: pd.DataFrame, **options) -> pd.DataFrame:
    """Per new user of ``history`` (user_id, item_id rows), ``model.recommend_for_history(item_ids,
    k=..., filter_seen=..., candidates=...)``, stacked with a ``user_id`` column."""
    frames = []
    for user, rows in history.groupby("user_id", sort=False):
        frame = model.recommend_for_history(rows["item_id"].to_numpy(), **options)
        frames.append(frame.assign(user_id=user))
    return pd.concat(frames, ignore_index=True)
