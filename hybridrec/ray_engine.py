"""Scoring and export on a Ray cluster: the queries split into blocks, one Ray task per block.

The engine adds no table code of its own. The queries (items of an item–item similarity export,
users of a recommendation export) are cut into ``blocks`` contiguous shards
(:class:`~hybridrec.topk_table.ShardSpec` ``i/blocks``); each Ray task runs the ordinary
single-process export of :mod:`hybridrec.similarity_export` for its shard, exactly as
``--shard i/blocks`` would, and writes its own Parquet part; the driver then joins the parts with
:func:`~hybridrec.topk_table.merge_shards`. So the parts carry the same metadata as hand-made
shards, and the merged table holds the same ids and ranks as a one-process export.

The model (or item vectors) and every other argument of the export go into Ray's object store
once (``ray.put``); each task receives them by reference, never re-reading the model folder.
Each task runs torch on ``cpus_per_task`` threads (one by default), so a node runs as many
blocks at once as it has CPUs.

Ray is an optional extra (``pip install 'hybridrec[distributed]'``): it is imported only when an
export asks for this engine. The parts are written where the tasks run, so on a cluster of
several machines ``parts_dir`` must be a folder every node sees (a shared file system).

    from hybridrec.ray_engine import RayConfig, export_with_ray
    from hybridrec.similarity_export import export_model_similar_items

    summary = export_with_ray(export_model_similar_items, "similar.parquet", RayConfig(workers=4),
                              model=model, k=50)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from hybridrec.atomic import SCRATCH_SUFFIX
from hybridrec.errors import HybridRecError
from hybridrec.topk_table import ExportSummary, ShardSpec, merge_shards

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'hybridrec[distributed]'"
#: Blocks per cluster CPU when ``RayConfig.blocks`` is not given: a few per CPU, so that a slow
#: block does not leave the other CPUs idle at the end.
BLOCKS_PER_CPU = 2


@dataclass(frozen=True)
class RayConfig:
    """Where and how the Ray engine runs.

    Args:
        address: cluster to connect to (``ray.init(address=...)``: ``"auto"``, ``"host:6379"``,
            ``"ray://host:10001"``); None: ``ray.init()``'s own choice (``RAY_ADDRESS``, a cluster
            already running on this machine, else a new local one).
        workers: CPUs of the local cluster started when there is none to connect to
            (``ray.init(num_cpus=...)``; default all cores); not with ``address``.
        blocks: number of blocks (tasks) the queries are split into; default
            ``BLOCKS_PER_CPU`` x the cluster's CPUs.
        cpus_per_task: CPUs Ray reserves for each task, and its torch threads.
        parts_dir: folder for the Parquet parts, kept after the merge; default a temporary
            folder beside the output, removed after the merge.
    """

    address: str | None = None
    workers: int | None = None
    blocks: int | None = None
    cpus_per_task: int = 1
    parts_dir: str | Path | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise HybridRecError(f"RayConfig.workers must be >= 1, got {self.workers}")
        if self.workers is not None and self.address is not None:
            raise HybridRecError("RayConfig.workers sizes a local Ray cluster; it does not apply with an address "
                                 f"({self.address!r}): the cluster there has its own CPUs")
        if self.blocks is not None and self.blocks < 1:
            raise HybridRecError(f"RayConfig.blocks must be >= 1, got {self.blocks}")
        if self.cpus_per_task < 1:
            raise HybridRecError(f"RayConfig.cpus_per_task must be >= 1, got {self.cpus_per_task}")


def import_ray():
    """The ``ray`` module.

    Raises:
        HybridRecError: Ray is not installed, with the command that installs it.
    """
    try:
        import ray
    except ImportError as err:
        raise HybridRecError(f"the Ray engine needs Ray, an optional extra: {INSTALL_HINT}") from err
    return ray


def connect(config: RayConfig) -> bool:
    """Connect to the cluster of ``config`` (or start a local one); True when this call did so.

    A Ray session already open in this process (``ray.is_initialized()``) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": True}
    if config.address is not None:
        options["address"] = config.address
    elif config.workers is not None:
        options["num_cpus"] = config.workers
    try:
        ray.init(**options)
    except ConnectionError as err:
        raise HybridRecError(f"cannot connect to the Ray cluster at {config.address!r}: {err}") from err
    logger.info("Ray: connected to %s (%s CPUs)", config.address or "a local cluster",
                ray.cluster_resources().get("CPU"))
    return True


def _export_block(export: Callable[..., ExportSummary], arguments: dict, part: str, index: int, count: int,
                  threads: int) -> ExportSummary:
    """One Ray task: shard ``index`` of ``count`` of ``export(**arguments)`` into the Parquet ``part``."""
    import torch

    torch.set_num_threads(threads)
    return export(out=part, shard=ShardSpec(index, count), format="parquet", progress=False, overwrite=True,
                  **arguments)


def export_with_ray(export: Callable[..., ExportSummary], out: str | Path, config: RayConfig, *,
                    format: str | None = None, overwrite: bool = True, progress: bool = True,
                    **arguments) -> ExportSummary:
    """``export(out=out, **arguments)`` as Ray tasks, one shard of the queries each, then merged.

    Args:
        export: a table export of :mod:`hybridrec.similarity_export`
            (``export_model_similar_items``, ``export_similar_items``, ``export_recommendations``);
            it must take ``out``, ``shard``, ``format``, ``progress`` and ``overwrite``.
        out: the merged table (``format`` or its suffix: Parquet or CSV).
        config: the cluster and the split (:class:`RayConfig`).
        overwrite: replace a file already at ``out``.
        progress: a bar over the finished blocks.
        arguments: the rest of ``export``'s keyword arguments (the model, ``k``, ...), put into
            the object store once. ``shard`` is the engine's; an ``approx`` search is refused
            (every task would build its own index of the whole catalog).

    Returns:
        The merge's :class:`~hybridrec.topk_table.ExportSummary`, its ``seconds`` the whole run
        and its ``engine`` the number of blocks and of the cluster's CPUs.
    """
    if arguments.pop("shard", None) is not None:
        raise HybridRecError("the Ray engine splits the queries itself: it takes no shard")
    if arguments.pop("approx", None) is not None:
        raise HybridRecError("the Ray engine runs exact search only: approximate search would build a whole "
                             "index in every task; export with the local engine, or shard it by hand")
    ray = import_ray()
    started = time.perf_counter()
    started_here = connect(config)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        blocks = config.blocks or max(1, BLOCKS_PER_CPU * cpus // config.cpus_per_task)
        parts_dir, temporary = _parts_folder(config.parts_dir, Path(out))
        try:
            arguments_ref = ray.put(arguments)
            task = ray.remote(num_cpus=config.cpus_per_task, max_retries=1)(_export_block)
            parts = [parts_dir / f"part-{index:05d}-of-{blocks:05d}.parquet" for index in range(blocks)]
            logger.info("Ray: %d blocks on %d CPUs, parts in %s", blocks, cpus, parts_dir)
            pending = [task.remote(export, arguments_ref, str(part), index, blocks, config.cpus_per_task)
                       for index, part in enumerate(parts)]
            method = None
            with tqdm(total=blocks, unit="block", desc="ray export", disable=not progress) as bar:
                try:
                    while pending:
                        done, pending = ray.wait(pending, num_returns=1)
                        method = _result(ray, done[0]).method
                        bar.update(1)
                except BaseException:
                    for reference in pending:  # no task goes on writing into a folder about to go
                        ray.cancel(reference, force=True)
                    for reference in pending:  # fetched, so Ray does not report their errors again at exit
                        with contextlib.suppress(Exception):
                            ray.get(reference, timeout=30)
                    raise
            del arguments_ref
            summary = merge_shards(parts, out, format=format, progress=False, overwrite=overwrite)
        finally:
            if temporary:
                shutil.rmtree(parts_dir, ignore_errors=True)
    finally:
        if started_here:
            ray.shutdown()
    seconds = time.perf_counter() - started
    logger.info("Ray: %d rows for %d queries in %d blocks -> %s in %.1f s", summary.n_rows, summary.n_queries,
                blocks, out, seconds)
    return replace(summary, seconds=seconds, method=method or summary.method,
                   engine={"name": "ray", "blocks": blocks, "cpus": cpus})


def _result(ray, reference) -> ExportSummary:
    """A finished task's summary; its HybridRecError raised here with its own message."""
    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, HybridRecError):
            raise HybridRecError(str(cause)) from err
        raise


def _parts_folder(parts_dir: str | Path | None, out: Path) -> tuple[Path, bool]:
    """``(folder, temporary)``: ``parts_dir`` (created, kept) or a new folder beside ``out`` (removed)."""
    if parts_dir is not None:
        folder = Path(parts_dir)
        if folder.exists() and not folder.is_dir():
            raise HybridRecError(f"{folder}: the Ray parts folder is a file")
        folder.mkdir(parents=True, exist_ok=True)
        return folder, False
    # Named as hybridrec.atomic names a scratch folder of ``out``: if this process dies, the next
    # write of ``out`` removes it.
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=SCRATCH_SUFFIX, dir=out.parent)), True
