"""Streamed reads with bounded memory (training.memory): pages of a memory map are handed back, and
embedding streams a memory-mapped file like an array and stops its reader when encoding fails."""


from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dualcontrast.config import build_config
from dualcontrast.data import Dataset
from dualcontrast.data.images import load_npy
from dualcontrast.evaluation import embed
from dualcontrast.models import build_model
from dualcontrast.training.memory import PageReleaser, mapped_buffers


def stack(n=60, shape=(1, 8, 8)):
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


def write_npy(tmp_path: Path, n: int, size: int) -> Path:
    path = tmp_path / "vols.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, size, size, size))
    arr[:] = np.random.default_rng(1).standard_normal(arr.shape, dtype=np.float32)
    arr.flush()
    del arr
    return path


def rss_file_kib() -> int:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs Linux /proc to read the resident set")
    return int(re.search(r"RssFile:\s+(\d+) kB", status.read_text()).group(1))


def test_pages_of_a_memory_map_are_handed_back(tmp_path):
    path = write_npy(tmp_path, 64, 32)  # 8 MiB
    mm = np.load(path, mmap_mode="r")
    data = Dataset(mm[:, None]).subset(np.arange(64))  # a lazy view of a view
    assert len(mapped_buffers(data.x)) == 1
    before = rss_file_kib()
    pages = PageReleaser(data.x, every_bytes=2**40)  # release only when told
    for i in range(0, 64, 8):
        data.batch(np.arange(i, i + 8))
    grown = rss_file_kib()
    assert grown - before > 6 * 1024  # the file's pages now count as ours
    pages.release()
    assert rss_file_kib() - before < 1024


def test_embed_streams_a_memory_mapped_file_like_an_array(tmp_path):
    path = write_npy(tmp_path, 40, 16)
    lazy = load_npy(path, mmap_threshold_bytes=0)  # as a large file would be read
    assert not lazy.in_memory
    eager = Dataset(np.load(path)[:, None])
    model = build_model(
        build_config({"model": {"content_dim": 3, "transform_dim": 2}}), (1, 16, 16, 16), "linear"
    )
    a = embed(model, lazy, batch_size=7, progress=False)
    b = embed(model, eager, batch_size=40, progress=False)
    for key in ("c_mu", "c_logvar", "z_mu", "z_logvar"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert a["c_mu"].shape == (40, 3)


def test_embed_stops_its_reader_when_encoding_fails(tmp_path):
    data = Dataset(stack(n=50, shape=(1, 20, 20)))
    model = build_model(
        build_config({"model": {"content_dim": 3, "transform_dim": 2}}), (1, 20, 20), "sigmoid"
    )
    calls = {"n": 0}

    def failing(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return type(model).encode(model, x)

    model.encode = failing
    with pytest.raises(RuntimeError, match="boom"):
        embed(model, data, batch_size=5, progress=False)
    assert model.training  # the mode was restored
