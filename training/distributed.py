"""Data-parallel GNN training over ``torch.distributed`` (DistributedDataParallel, torchrun).

``torchrun --nproc-per-node N ...`` starts ``N`` processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_from_env` joins them in one
process group (``env://``): NCCL when the rank trains on a GPU (``cuda:LOCAL_RANK``), gloo on the
CPU. Without those variables, or with ``WORLD_SIZE=1``, nothing is initialised and training is the
single-process code path unchanged.

How ranks stay in step (see :class:`training.trainer.Trainer`): every rank holds the whole graph,
seeds the same ``torch.Generator`` and makes the same draws in the same order, so every rank builds
the same global batch a single process would and keeps its own shard (:func:`shard_positions`). A
rank's loss is ``Σ_(its rows) / (global rows) x world_size``, so DDP's gradient average is exactly
the single process's mean gradient (only the order of the float reductions differs). Validation,
early stopping and checkpoints are rank 0's: its score is broadcast (:func:`broadcast_score`) and
every rank takes the same decision; a checkpoint is read by rank 0 and its bytes broadcast
(:func:`broadcast_bytes`), so nodes without a shared file system resume too.
"""

from __future__ import annotations

import datetime
import logging
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from hybridrec.errors import HybridRecError

logger = logging.getLogger(__name__)

#: torchrun's variables that make a process one rank of a group.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a collective waits for the slowest rank (rank 0 validates and writes checkpoints alone).
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the group.

    Attributes:
        rank: global rank (0 validates, writes checkpoints and the model).
        world_size: processes in the group.
        local_rank: rank on this machine (its GPU index).
        backend: ``"nccl"`` or ``"gloo"``.
        device: where this rank trains.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment names a group of more than one process (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def backend_for(device: torch.device) -> str:
    """``"nccl"`` for a GPU rank, ``"gloo"`` for a CPU one."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` for a GPU rank (one GPU per process), the CPU as it is."""
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise HybridRecError(f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                             "start at most one process per GPU (torchrun --nproc-per-node)")
    return torch.device("cuda", local_rank)


def init_from_env(device: torch.device) -> DistributedContext | None:
    """Join the group torchrun's variables describe (once; later calls return the same context).

    Args:
        device: the device training resolved to (``cuda`` or ``cpu``); a GPU rank trains on
            ``cuda:LOCAL_RANK``.

    Returns:
        None for a single process (no ``WORLD_SIZE > 1``, and no group initialised by the caller).

    Raises:
        HybridRecError: a variable is missing or the group cannot be joined.
    """
    if dist.is_available() and dist.is_initialized():
        return current(device)
    if not launched_by_torchrun():
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise HybridRecError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: launch with "
                             "torchrun --nproc-per-node N (and --nnodes/--rdzv-endpoint for several machines)")
    local_rank = int(os.environ["LOCAL_RANK"])
    device = rank_device(device, local_rank)
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, timeout=TIMEOUT, **({"device_id": device} if device.type == "cuda" else {}))
    except (RuntimeError, ValueError) as err:
        raise HybridRecError(f"cannot join the torch.distributed group at {os.environ['MASTER_ADDR']}:"
                             f"{os.environ['MASTER_PORT']} ({err})") from None
    context = current(device)
    logger.info("distributed training: rank %d of %d (local rank %d), backend %s, device %s", context.rank,
                context.world_size, context.local_rank, context.backend, context.device)
    return context


def current(device: torch.device) -> DistributedContext | None:
    """The context of an initialised group of more than one process, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    device = rank_device(device, local_rank) if device.index is None else device
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              backend=dist.get_backend(), device=device)


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a group: the process that writes files."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def shutdown() -> None:
    """Leave the group (after the last collective); nothing in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- sharding ----------------------------------------------------------------------------------
def shard_positions(num_rows: int, rank: int, world_size: int, unit: int = 1) -> np.ndarray:
    """Positions in a global batch of ``num_rows`` rows that ``rank`` trains on.

    The batch is cut into consecutive units of ``unit`` rows (a sampled softmax's in-batch group,
    whose rows are each other's negatives, stays whole; the last unit may be short) and the units
    dealt round-robin, ``units[rank::world_size]``: the shards of all ranks are disjoint and cover the
    batch, in the batch's order. A rank may get none (fewer units than ranks).

    Returns:
        ``[n]`` int64 positions, ascending.
    """
    starts = np.arange(0, num_rows, unit)[rank::world_size]
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(start, min(start + unit, num_rows)) for start in starts]).astype(np.int64)


def padded_shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """``rank``'s share of a permutation ``order`` ``[N]``, padded like torch's ``DistributedSampler``:
    ``order`` is extended by its own head to a multiple of ``world_size`` and dealt round-robin, so
    every rank gets ``ceil(N / world_size)`` entries (the same number of steps on every rank)."""
    per_rank = -(-len(order) // world_size)
    padded = torch.cat([order, order[: per_rank * world_size - len(order)]])
    return padded[rank::world_size]


def shard_loss(loss: torch.Tensor, shard_rows: int, global_rows: int, world_size: int) -> torch.Tensor:
    """A shard's mean ``loss`` rescaled to ``Σ_shard / global_rows x world_size``: DDP averages the
    ranks' gradients, which then equal the gradient of the global batch's mean."""
    return loss * (shard_rows * world_size / global_rows)


def touch_parameters(module: nn.Module) -> torch.Tensor:
    """``0 x Σ`` of one entry of every parameter: added to a rank's loss, every parameter gets a
    (zero) gradient even when the rank's step did not use it (an empty shard, a subgraph without
    some content block), so DDP's all-reduce finds every gradient on every rank and never waits."""
    return sum(parameter.reshape(-1)[:1].sum() for parameter in module.parameters()) * 0.0


class StepModule(nn.Module):
    """The module DDP wraps: its forward runs one step's loss function on the model.

    Args:
        model: the :class:`~hybridrec.models.hybrid_gnn.HybridGNN` (a submodule, so DDP syncs
            its parameters and hooks their gradients).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, step: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
        """``step(model)`` (a scalar loss) plus :func:`touch_parameters`."""
        return step(self.model) + touch_parameters(self.model)


def wrap(model: nn.Module, context: DistributedContext) -> nn.parallel.DistributedDataParallel:
    """``model`` in a :class:`StepModule` under DDP (rank 0's parameters broadcast to every rank)."""
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(StepModule(model), device_ids=device_ids)


# -- collectives -------------------------------------------------------------------------------
def broadcast_bytes(payload: bytes | None, context: DistributedContext) -> bytes | None:
    """Rank 0's ``payload`` on every rank (None stays None); raw bytes, no pickling."""
    size = torch.tensor([-1 if payload is None else len(payload)], dtype=torch.int64, device=context.device)
    dist.broadcast(size, src=0)
    if int(size) < 0:
        return None
    if context.is_main:
        buffer = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(context.device)
    else:
        buffer = torch.empty(int(size), dtype=torch.uint8, device=context.device)
    dist.broadcast(buffer, src=0)
    return buffer.cpu().numpy().tobytes()


def broadcast_score(score: float, context: DistributedContext) -> float:
    """Rank 0's validation ``score`` on every rank (float64, so every rank decides the same)."""
    value = torch.tensor([score], dtype=torch.float64, device=context.device)
    dist.broadcast(value, src=0)
    return float(value)


def mean_over_ranks(value: float, context: DistributedContext) -> float:
    """The mean of ``value`` over the ranks (e.g. the epoch loss of their shards)."""
    total = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(total)
    return float(total) / context.world_size


def peak_memory_mb(device: torch.device) -> float:
    """This process's peak memory: allocated GPU memory on a GPU, resident set size on the CPU (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gather_floats(values: list[float], context: DistributedContext) -> list[list[float]]:
    """``values`` of every rank, in rank order (``[world_size][len(values)]``)."""
    local = torch.tensor(values, dtype=torch.float64, device=context.device)
    gathered = [torch.empty_like(local) for _ in range(context.world_size)]
    dist.all_gather(gathered, local)
    return [row.cpu().tolist() for row in gathered]
