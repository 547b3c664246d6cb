"""Batches on the training device: resident tensors when the data fits, streamed reads otherwise."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..data.base import Dataset
from ..errors import ConfigError
from .memory import PageReleaser

# Keep a data set resident on the CPU only up to this size (it is a copy of the data).
_CPU_RESIDENT_LIMIT_BYTES = 16 * 2**30
# On a GPU, the share of the memory still free (after the model and optimizer state) the data
# may take; the rest is left for activations.
_GPU_RESIDENT_FRACTION = 0.5


def _resident_limit(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(_GPU_RESIDENT_FRACTION * free)
    if device.type == "cpu":
        return _CPU_RESIDENT_LIMIT_BYTES
    return 0


def _resident_ok(data: Dataset, device: torch.device, policy: str) -> bool:
    if policy == "never":
        return False
    if policy == "always":
        return True
    nbytes = len(data) * int(np.prod(data.sample_shape)) * 4
    return data.in_memory and nbytes <= _resident_limit(device)


def batches_per_epoch(n_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Full batches one process takes per epoch (the incomplete last batch is dropped)."""
    return (n_samples // world_size) // batch_size


class BatchSource:
    """Shuffled fixed-size batches of a :class:`Dataset`, on ``device``.

    The order of epoch ``e`` is a permutation drawn from a generator seeded by ``(seed, e)``
    (call :meth:`set_epoch` before iterating), so it does not depend on what else consumed
    random numbers, resume is exact, and with ``world_size > 1`` every process computes the
    same permutation and takes its own interleaved share, like ``DistributedSampler``.
    Incomplete last batches are dropped (the contrastive negatives need a full batch, as in
    the reference).

    ``with_indices``: batches are ``(x, rows)`` with ``rows (B,)`` int64 the batch's positions in
    ``data``, for methods keeping per-sample tables (auto-decoding, e.g. Hydra).

    ``memory_format`` (e.g. ``torch.channels_last``) is applied to every batch. Streamed batches are read by a background thread; pages of memory-mapped
    files are handed back as the epoch goes (see :mod:`.memory`).
    """

    def __init__(
        self,
        data: Dataset,
        batch_size: int,
        device: torch.device,
        *,
        resident: str = "auto",
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 2,
        seed: int = 0,
        memory_format: torch.memory_format | None = None,
        with_indices: bool = False,
    ):
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2 (contrastive pairs need other samples)")
        self.data = data
        self.batch_size = batch_size
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.prefetch = prefetch
        self.seed = seed
        self.epoch = 0
        self.memory_format = memory_format
        self.with_indices = with_indices
        self.tensor: torch.Tensor | None = None
        if _resident_ok(data, device, resident):
            self.tensor = torch.from_numpy(data.batch(np.arange(len(data)))).to(device)
        per_rank = len(data) // world_size
        if per_rank < batch_size:
            raise ConfigError(
                f"{data.source}: {len(data)} training samples are fewer than one batch of {batch_size}"
                f" (lower --batch-size / train.batch_size)"
                + (f" per process ({world_size} processes)" if world_size > 1 else "")
            )

    def __len__(self) -> int:
        return batches_per_epoch(len(self.data), self.batch_size, self.world_size)

    @property
    def resident(self) -> bool:
        return self.tensor is not None

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` (0-based) in the next iteration."""
        self.epoch = epoch

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.memory_format is None else x.contiguous(memory_format=self.memory_format)

    def _indices(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(len(self.data), generator=gen)
        per_rank = len(self.data) // self.world_size
        mine = perm[self.rank :: self.world_size][:per_rank]
        return mine[: len(self) * self.batch_size].view(len(self), self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        batches = self._indices()
        if self.tensor is not None:
            idx = batches.to(self.device)
            xs: Iterator[torch.Tensor] = (self._format(self.tensor[idx[i]]) for i in range(len(batches)))
        else:
            xs = self._stream(batches)
        if not self.with_indices:
            yield from xs
            return
        for x, rows in zip(xs, batches, strict=True):
            yield x, rows.to(self.device)

    def _stream(self, batches: torch.Tensor) -> Iterator[torch.Tensor]:
        for x in prefetched(self.data, (b.numpy() for b in batches), self.device, depth=self.prefetch):
            yield self._format(x)


def prefetched(
    data: Dataset, indices: Iterable[np.ndarray], device: torch.device, *, depth: int = 2
) -> Iterator[torch.Tensor]:
    """``data.batch(i)`` for each index array, read ``depth`` batches ahead by a background
    thread (file I/O and decoding overlap compute) and moved to ``device``.

    Pages of memory-mapped files are handed back as reading goes, so the process's resident
    memory stays bounded however large the file (see :mod:`.memory`).
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    pages = PageReleaser(data.x)
    pin = device.type == "cuda"

    def reader() -> None:
        try:
            for index in indices:
                if stop.is_set():
                    return
                arr = torch.from_numpy(data.batch(index))
                pages.read(arr.numel() * arr.element_size())
                q.put(arr.pin_memory() if pin else arr)
            q.put(None)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item.to(device, non_blocking=True)
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
        pages.release()
