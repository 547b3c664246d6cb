"""Bounded memory when reading memory-mapped data sets.

Pages of a memory-mapped file that a process has read stay mapped into it, and they count
in its resident set (RSS) until the kernel needs the memory back: streaming once through a
13 GB ``.npy`` of subtomograms leaves ~13 GB of RSS on a machine with memory to spare, and
batch schedulers kill jobs by RSS. :class:`PageReleaser` hands the pages back
(``madvise(MADV_DONTNEED)``) every few hundred MB read; the file stays in the page cache,
so re-reading it costs no disk I/O.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

RELEASE_EVERY_BYTES = 256 * 2**20


def mapped_buffers(x: Any, max_depth: int = 16) -> list[mmap.mmap]:
    """The read-only-safe memory maps under an array-like.

    Follows ``.base`` links: a ``numpy.memmap`` (its base is the ``mmap``), views of one, and
    lazy wrappers that keep their source in ``.base``. Copy-on-write maps (``mode="c"``) are
    skipped: dropping their pages would drop the process's private writes.
    """
    found: list[mmap.mmap] = []
    seen: set[int] = set()
    obj = x
    for _ in range(max_depth):
        if obj is None or id(obj) in seen:
            break
        seen.add(id(obj))
        if isinstance(obj, mmap.mmap):
            found.append(obj)
            break
        if isinstance(obj, np.memmap) and obj.mode == "c":
            break
        obj = getattr(obj, "base", None)
    return found


class PageReleaser:
    """Call :meth:`read` after each read of ``nbytes`` from ``x``; pages are released in steps."""

    def __init__(self, x: Any, every_bytes: int = RELEASE_EVERY_BYTES):
        self.maps = mapped_buffers(x) if hasattr(mmap, "MADV_DONTNEED") else []
        self.every_bytes = every_bytes
        self._pending = 0

    @property
    def active(self) -> bool:
        return bool(self.maps)

    def read(self, nbytes: int) -> None:
        if not self.maps:
            return
        self._pending += nbytes
        if self._pending >= self.every_bytes:
            self.release()

    def release(self) -> None:
        for m in self.maps:
            try:
                m.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # a closed map or a platform without the advice
                continue
        self._pending = 0
