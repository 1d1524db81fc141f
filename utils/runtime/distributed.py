"""Distributed runs: launcher detection (torchrun, SLURM), process-group set-up and gathering.

One process per rank. Two launchers are understood, and nothing happens at import time:

* ``torchrun`` (or anything exporting ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/
  ``MASTER_PORT``); it takes precedence, so ``torchrun`` inside a SLURM allocation works;
* ``srun python main_INets.py ...`` inside a SLURM job: one rank per task, read from the step's
  ``SLURM_*`` variables, the master address being the first node of the step's node list
  (python-hostlist) and the port derived from the job id, so every task agrees without talking.

Anything else (a plain ``python main_INets.py``, also inside ``salloc``/``sbatch``) is a single
process. Work is split with :func:`shard_indices` (strided, no padding, no duplicates) and put back
in dataset order with :func:`gather_in_order` / :func:`gather_tensors_in_order`.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

from .forward import check_device

Launcher = Literal["none", "torchrun", "slurm"]

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# a port range clear of the usual services and of Linux's ephemeral range (32768-60999)
SLURM_PORT_BASE = 10000
SLURM_PORT_SPAN = 20000
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


class DistributedConfigError(ValueError):
    """The launcher's environment is inconsistent or unparsable (one line naming the variable)."""


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in the run, as read from the launcher's environment."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: Launcher = "none"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ------------------------------------------------------------------------------------------------
# detection

def _int_var(environ: Mapping[str, str], name: str, minimum: int = 0) -> int:
    value = environ.get(name)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise DistributedConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise DistributedConfigError(f"{name} must be >= {minimum}, got {number}")
    return number


def _check_rank(env: DistributedEnv, rank_var: str, world_var: str) -> DistributedEnv:
    if env.rank >= env.world_size:
        raise DistributedConfigError(f"{rank_var}={env.rank} is out of range for {world_var}={env.world_size}")
    return env


def _first_host(environ: Mapping[str, str]) -> str:
    """First node of the step's (else the job's) node list: rank 0 runs there under srun."""
    import hostlist  # python-hostlist; imported here so that importing this module stays cheap

    for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        value = environ.get(name)
        if not value:
            continue
        try:
            hosts = hostlist.expand_hostlist(value)
        except hostlist.BadHostlist as err:
            raise DistributedConfigError(f"cannot parse {name}={value!r}: {err}") from None
        if not hosts:
            raise DistributedConfigError(f"{name}={value!r} names no host")
        return hosts[0]
    raise DistributedConfigError("SLURM task without a node list (SLURM_STEP_NODELIST, SLURM_JOB_NODELIST "
                                 "and SLURM_NODELIST are all unset)")


def slurm_port(job_id: int) -> int:
    """Rendezvous port for a SLURM job: a pure function of the job id, so all its tasks agree."""
    return SLURM_PORT_BASE + job_id % SLURM_PORT_SPAN


def detect_environment(environ: Mapping[str, str] | None = None) -> DistributedEnv:
    """Read the launcher's variables (default ``os.environ``) into a :class:`DistributedEnv`.

    torchrun wins over SLURM. A SLURM launch needs an ``srun`` step (``SLURM_STEP_ID``): the batch
    script of an N-task job is one process, and treating it as rank 0 of N would hang at the
    rendezvous waiting for ranks that were never started.
    """
    environ = os.environ if environ is None else environ

    if "RANK" in environ and "WORLD_SIZE" in environ:
        missing = [name for name in TORCHRUN_VARS if not environ.get(name)]
        if missing:
            raise DistributedConfigError(f"RANK and WORLD_SIZE are set (torchrun-style launch) but "
                                         f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not")
        env = DistributedEnv(
            rank=_int_var(environ, "RANK"),
            local_rank=_int_var(environ, "LOCAL_RANK"),
            world_size=_int_var(environ, "WORLD_SIZE", minimum=1),
            master_addr=environ["MASTER_ADDR"],
            master_port=_int_var(environ, "MASTER_PORT", minimum=1),
            launcher="torchrun",
        )
        return _check_rank(env, "RANK", "WORLD_SIZE")

    if "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ:
        in_step = bool(environ.get("SLURM_STEP_ID") or environ.get("SLURM_STEPID"))
        # the step's task count; SLURM_NTASKS is the job's outside a step (srun also overrides it)
        world_var = "SLURM_STEP_NUM_TASKS" if environ.get("SLURM_STEP_NUM_TASKS") else "SLURM_NTASKS"
        world_size = _int_var(environ, world_var, minimum=1)
        if not in_step:
            if world_size > 1:
                warnings.warn(f"running as a single process in the batch script of a {world_size}-task SLURM "
                              f"job; use `srun python ...` to get one rank per task", stacklevel=2)
            return DistributedEnv()
        if "MASTER_PORT" in environ:
            port = _int_var(environ, "MASTER_PORT", minimum=1)
        else:
            port = slurm_port(_int_var(environ, "SLURM_JOB_ID"))
        env = DistributedEnv(
            rank=_int_var(environ, "SLURM_PROCID"),
            local_rank=_int_var(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0,
            world_size=world_size,
            # MASTER_ADDR may override node names that do not resolve from the compute nodes
            master_addr=environ.get("MASTER_ADDR") or _first_host(environ),
            master_port=port,
            launcher="slurm",
        )
        return _check_rank(env, "SLURM_PROCID", world_var)

    return DistributedEnv()


# ------------------------------------------------------------------------------------------------
# process group

def setup_distributed(
        use_gpu: bool,
        timeout: datetime.timedelta = DEFAULT_TIMEOUT,
        environ: Mapping[str, str] | None = None,
) -> tuple[DistributedEnv, torch.device]:
    """Detect the launcher, pick this rank's device and join the process group (NCCL on GPU, gloo on CPU).

    A single process gets no process group. The GPU is ``cuda:local_rank`` modulo the visible
    devices, which covers both "every task sees all GPUs" and SLURM's one-GPU-per-task binding.
    """
    env = detect_environment(environ)
    check_device(use_gpu)
    if use_gpu:
        device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")

    if not env.is_distributed or dist.is_initialized():
        return env, device
    # the env:// rendezvous reads these; exporting the rest helps libraries that look for them
    os.environ.update({
        "MASTER_ADDR": env.master_addr, "MASTER_PORT": str(env.master_port),
        "RANK": str(env.rank), "WORLD_SIZE": str(env.world_size), "LOCAL_RANK": str(env.local_rank),
    })
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend, init_method="env://", rank=env.rank, world_size=env.world_size, timeout=timeout,
        device_id=device if device.type == "cuda" else None,
    )
    return env, device


def cleanup_distributed() -> None:
    """Leave the process group, if any (safe to call always)."""
    if is_dist():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def _comm_device() -> torch.device:
    """Where collective buffers must live: NCCL only moves CUDA tensors."""
    if is_dist() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------------
# reductions

def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (unchanged for a single process)."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def reduce_metrics(sums: Mapping[str, float]) -> dict[str, float]:
    """Sum named per-rank totals (e.g. ``loss_sum``, ``correct``, ``count``) over ranks in one call.

    Pass sums and counts, not means, so that uneven shards weigh correctly; divide afterwards.
    Every rank must pass the same keys.
    """
    keys = sorted(sums)
    if not is_dist():
        return {key: float(sums[key]) for key in keys}
    values = torch.tensor([float(sums[key]) for key in keys], dtype=torch.float64, device=_comm_device())
    all_reduce_sum(values)
    return dict(zip(keys, values.tolist()))


# ------------------------------------------------------------------------------------------------
# sharding and ordered gathering

def shard_indices(indices: Sequence[int], rank: int | None = None, world_size: int | None = None) -> list[int]:
    """This rank's share of ``indices``: ``indices[rank::world_size]`` (no padding, no duplicates).

    Shards differ in length by at most one; ``rank``/``world_size`` default to the process group's.
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is out of range for world size {world_size}")
    return list(indices)[rank::world_size]


def _order(indices: Sequence[int], order: Sequence[int] | None) -> list[int]:
    """Positions into ``indices`` that put them in ``order`` (default: ascending index)."""
    first: dict[int, int] = {}
    for position, index in enumerate(indices):
        first.setdefault(int(index), position)  # duplicates (e.g. DistributedSampler padding): keep one
    if order is None:
        return [first[index] for index in sorted(first)]
    missing = [int(index) for index in order if int(index) not in first]
    if missing:
        raise ValueError(f"{len(missing)} indices of the requested order were gathered from no rank "
                         f"(first: {missing[:5]})")
    return [first[int(index)] for index in order]


def gather_in_order(
        local_items: Sequence[Any],
        local_indices: Sequence[int],
        order: Sequence[int] | None = None,
) -> list[Any]:
    """Collect every rank's (index, item) pairs and return the items in dataset order, on every rank.

    ``local_indices[i]`` is the dataset index of ``local_items[i]``. The result follows ``order``
    (the full index list the shards were cut from) when given, else ascending index; an index
    gathered twice is kept once. Every rank gets the full list (an all-gather of picklable objects:
    fine for scores and paths; for large arrays use :func:`gather_tensors_in_order`).
    """
    if len(local_items) != len(local_indices):
        raise ValueError(f"{len(local_items)} items but {len(local_indices)} indices")
    pairs = [(int(index), item) for index, item in zip(local_indices, local_items)]
    if is_dist():
        per_rank: list[Any] = [None] * get_world_size()
        dist.all_gather_object(per_rank, pairs)
        pairs = [pair for rank_pairs in per_rank for pair in rank_pairs]
    positions = _order([index for index, _ in pairs], order)
    return [pairs[position][1] for position in positions]


def gather_tensors_in_order(
        local_rows: torch.Tensor,
        local_indices: Sequence[int] | torch.Tensor,
        order: Sequence[int] | None = None,
) -> torch.Tensor:
    """Row-wise version of :func:`gather_in_order` for a ``[n_local, ...]`` tensor; full result on every rank.

    Shards may differ in length (including zero rows: pass an empty tensor of the right trailing
    shape); they are padded to the longest for the collective and the padding is dropped. All
    ranks must use the same dtype and trailing shape; the result is on ``local_rows.device``.
    """
    indices = torch.as_tensor(local_indices, dtype=torch.long).reshape(-1)
    if indices.numel() != local_rows.shape[0]:
        raise ValueError(f"{local_rows.shape[0]} rows but {indices.numel()} indices")
    if is_dist():
        device = _comm_device()
        world = get_world_size()
        count = torch.tensor([indices.numel()], dtype=torch.long, device=device)
        counts = [torch.zeros_like(count) for _ in range(world)]
        dist.all_gather(counts, count)
        sizes = [int(c.item()) for c in counts]
        longest = max(sizes)
        # pad to equal length: all_gather needs equal shapes on every rank
        padded = local_rows.new_zeros((longest, *local_rows.shape[1:]), device=device)
        padded[: local_rows.shape[0]] = local_rows.to(device)
        padded_idx = torch.full((longest,), -1, dtype=torch.long, device=device)
        padded_idx[: indices.numel()] = indices.to(device)
        rows_list = [torch.empty_like(padded) for _ in range(world)]
        idx_list = [torch.empty_like(padded_idx) for _ in range(world)]
        dist.all_gather(rows_list, padded.contiguous())
        dist.all_gather(idx_list, padded_idx)
        local_rows = torch.cat([rows[:n] for rows, n in zip(rows_list, sizes)]).to(local_rows.device)
        indices = torch.cat([idx[:n] for idx, n in zip(idx_list, sizes)]).cpu()
    positions = _order(indices.tolist(), order)
    return local_rows[torch.as_tensor(positions, dtype=torch.long, device=local_rows.device)]


def gather_rows(local_rows: torch.Tensor) -> torch.Tensor:
    """Every rank's rows (shards of any length, equal trailing shape and dtype) on every rank, for statistics that do
    not depend on the order of rows (an average precision)."""
    ids = torch.arange(local_rows.shape[0]) * get_world_size() + get_rank()  # unique over ranks
    return gather_tensors_in_order(local_rows, ids)


@contextlib.contextmanager
def distributed_session(use_gpu: bool) -> Iterator[tuple[DistributedEnv, torch.device]]:
    """:func:`setup_distributed` for the duration of a ``with`` block; the process group is left afterwards, also
    when the block raises."""
    env, device = setup_distributed(use_gpu)
    try:
        yield env, device
    finally:
        cleanup_distributed()
