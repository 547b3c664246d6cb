"""Batches on the training device: resident tensors when the data fits, streamed reads otherwise."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from ..data.base import Dataset

# Keep a data set resident on an accelerator only if it leaves ample room for the model.
_RESIDENT_LIMIT_BYTES = {"cuda": 8 * 2**30, "cpu": 16 * 2**30}


def _resident_ok(data: Dataset, device: torch.device, policy: str) -> bool:
    if policy == "never":
        return False
    if policy == "always":
        return True
    nbytes = len(data) * int(np.prod(data.sample_shape)) * 4
    return data.in_memory and nbytes <= _RESIDENT_LIMIT_BYTES.get(device.type, 0)


class BatchSource:
    """Shuffled fixed-size batches of a :class:`Dataset`, on ``device``.

    The permutation comes from torch's global generator (so RNG checkpoints make resume
    exact). With ``world_size > 1`` every process draws the same permutation and takes its
    own interleaved share, like ``DistributedSampler``. Incomplete last batches are dropped
    (the contrastive negatives need a full batch, as in the reference).
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
    ):
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2 (contrastive pairs need other samples)")
        self.data = data
        self.batch_size = batch_size
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.prefetch = prefetch
        self.tensor: torch.Tensor | None = None
        if _resident_ok(data, device, resident):
            self.tensor = torch.from_numpy(data.batch(np.arange(len(data)))).to(device)
        per_rank = len(data) // world_size
        if per_rank < batch_size:
            raise ValueError(
                f"{data.source}: {len(data)} training samples are fewer than one batch of {batch_size}"
                + (f" per process ({world_size} processes)" if world_size > 1 else "")
            )

    def __len__(self) -> int:
        return (len(self.data) // self.world_size) // self.batch_size

    def _indices(self) -> torch.Tensor:
        perm = torch.randperm(len(self.data))
        per_rank = len(self.data) // self.world_size
        mine = perm[self.rank :: self.world_size][:per_rank]
        return mine[: len(self) * self.batch_size].view(len(self), self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        batches = self._indices()
        if self.tensor is not None:
            idx = batches.to(self.device)
            for i in range(len(batches)):
                yield self.tensor[idx[i]]
            return
        yield from self._stream(batches)

    def _stream(self, batches: torch.Tensor) -> Iterator[torch.Tensor]:
        """Read batches in a background thread so file I/O overlaps compute."""
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def reader() -> None:
            try:
                for b in batches:
                    if stop.is_set():
                        return
                    arr = torch.from_numpy(self.data.batch(b.numpy()))
                    if self.device.type == "cuda":
                        arr = arr.pin_memory()
                    q.put(arr)
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
                yield item.to(self.device, non_blocking=True)
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.1)
