"""Data-parallel training over several processes (GPUs or CPU cores, one or many nodes).

Launch with ``torchrun`` (or ``srun`` under SLURM, see docs/scaling.md)::

    torchrun --nproc_per_node=4 -m dualcontrast.cli.main train --data ... -o runs/x

Every process holds a full replica of the model and trains on its own share of each epoch
(:class:`~dualcontrast.training.batches.BatchSource` with ``rank``/``world_size``); gradients
are averaged before every optimizer step, so the replicas stay identical. Rank 0 alone
writes the run directory; the others only compute.

Why the gradients are averaged by :class:`GradientAverager` and not by wrapping the
networks in ``torch.nn.parallel.DistributedDataParallel``:

- DDP reduces gradients from autograd hooks while ONE ``backward()`` runs after ONE forward
  of the wrapped module. A DualContrast step runs the encoder twice (the batch, then the
  decoded z-positive pair) before any backward, and takes two gradients of it for two
  different optimizers (the main loss for all weights; the z-positive term for the encoder
  only, by ``torch.autograd.grad`` in the fused step, which DDP does not support). The
  reference step even steps the main optimizer between its two backward passes.
- Several baselines step more than one optimizer per batch as well. Every method of the
  model contract steps through ``DisentanglementModel.optimizer_step``, which calls the
  installed ``_grad_sync`` on exactly the gradients that optimizer is about to use. So
  averaging there is correct for any step structure, with no per-model code.

What is given up is DDP's overlap of communication with the backward pass. The all-reduce
is bucketed (a few large messages, all in flight at once), which is what dominates for
these small networks and the 32^3 reference decoder alike.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError
from .runtime import resolve_device

log = logging.getLogger(__name__)

#: gradient bytes per all-reduce message (DDP's default bucket size)
BUCKET_BYTES = 25 * 2**20
#: how long a collective may wait (rank 0 evaluates between epochs while the others wait)
DEFAULT_TIMEOUT = timedelta(minutes=int(os.environ.get("DUALCONTRAST_DIST_TIMEOUT_MIN", "120")))


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = "none"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None
    return None


def env_ranks() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's environment; ``(0, 1, 0)`` if none.

    torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``. Under plain ``srun`` (one task per
    GPU) the SLURM variables are used, but only when ``MASTER_ADDR`` is set too: a job that
    merely has several tasks must not start a process group by accident.
    """
    world = _int_env("WORLD_SIZE")
    if world is not None:
        return _int_env("RANK") or 0, world, _int_env("LOCAL_RANK") or 0
    if os.environ.get("MASTER_ADDR") and _int_env("SLURM_NTASKS") is not None:
        world = _int_env("SLURM_NTASKS") or 1
        rank = _int_env("SLURM_PROCID") or 0
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("MASTER_PORT", "29500")
        return rank, world, _int_env("SLURM_LOCALID") or 0
    return 0, 1, 0


def init_distributed(device_name: str = "auto") -> DistContext:
    """Start the process group when launched by torchrun/SLURM; otherwise a 1-process context.

    GPUs: one per process (``cuda:LOCAL_RANK``), NCCL. CPU: gloo. ``device_name`` is the
    ``train.device`` setting; ``cuda:N`` is refused in a multi-process run (each process
    takes its local rank's GPU).
    """
    rank, world, local = env_ranks()
    if world <= 1:
        return DistContext(device=resolve_device(device_name))
    if dist.is_initialized():
        raise RuntimeError("the process group is already initialised")
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if device_name.startswith("cuda:"):
        raise ConfigError(
            f"train.device={device_name!r}: in a multi-process run each process uses the GPU of its "
            "local rank; use 'cuda' or 'auto'"
        )
    if device_name == "cuda" and not use_cuda:
        raise ConfigError("train.device='cuda' requested but no CUDA device is available")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU"
            )
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=DEFAULT_TIMEOUT)
    log.info("process %d of %d (local %d) on %s, backend %s", rank, world, local, device, backend)
    return DistContext(rank, world, local, device, backend)


def shutdown(ctx: DistContext, *, synchronize: bool = True) -> None:
    """Leave the process group. ``synchronize``: first wait until every rank is done (after a
    successful run); tearing gloo down while a peer still talks to it can abort the process.
    Pass False on error paths, where a peer may never arrive."""
    if not (ctx.enabled and dist.is_initialized()):
        return
    if synchronize:
        dist.barrier()
    dist.destroy_process_group()


def _buckets(tensors: list[torch.Tensor], max_bytes: int) -> Iterator[list[torch.Tensor]]:
    """Consecutive groups of same-dtype/device tensors of at most ``max_bytes`` (or one tensor)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if bucket and (
            size + nbytes > max_bytes or t.dtype != bucket[0].dtype or t.device != bucket[0].device
        ):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += nbytes
    if bucket:
        yield bucket


class GradientAverager:
    """``sync(params)``: average the ``.grad`` of ``params`` over all processes, in place.

    Installed with ``model.set_gradient_sync``; ``DisentanglementModel.optimizer_step`` calls
    it right before each optimizer step. Parameters without a gradient are skipped: which
    ones have none is decided by the code path and config, identical on every rank.
    """

    def __init__(self, world_size: int, bucket_bytes: int = BUCKET_BYTES, group: Any = None):
        self.world_size = world_size
        self.bucket_bytes = bucket_bytes
        self.group = group

    def __call__(self, params: Iterable[nn.Parameter]) -> None:
        if self.world_size <= 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        pending = []
        for bucket in _buckets(grads, self.bucket_bytes):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            pending.append((dist.all_reduce(flat, group=self.group, async_op=True), flat, bucket))
        for work, flat, bucket in pending:
            work.wait()
            flat.div_(self.world_size)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of rank ``src`` to all ranks (start and resume)."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def all_reduce_mean(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """Mean of ``values`` over processes (one collective for a whole vector)."""
    out = values.clone()
    dist.all_reduce(out)
    return out / world_size


def gather_objects(obj: Any, world_size: int) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank."""
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def replica_fingerprint(module: nn.Module) -> torch.Tensor:
    """Float64 sums of every parameter: equal on all ranks iff the replicas agree (almost surely)."""
    with torch.no_grad():
        return torch.stack([p.detach().double().sum() for p in module.parameters()]).cpu()


def check_replicas(module: nn.Module, world_size: int) -> None:
    """Raise on every rank if the replicas have drifted apart (a bug, never expected)."""
    prints = gather_objects(replica_fingerprint(module), world_size)
    for rank, fp in enumerate(prints[1:], start=1):
        if not torch.equal(fp, prints[0]):
            raise RuntimeError(f"model replicas differ between rank 0 and rank {rank}")
