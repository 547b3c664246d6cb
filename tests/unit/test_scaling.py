"""Speed and scale plumbing: batch order, streamed reads with bounded memory, no host reads per
batch, runtime settings, and the distributed helpers that need no second process."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.data import Dataset
from dualcontrast.data.images import load_npy
from dualcontrast.evaluation import embed
from dualcontrast.models import build_model
from dualcontrast.rundir import RunDir
from dualcontrast.training import BatchSource, Trainer, apply_runtime
from dualcontrast.training.distributed import GradientAverager, _buckets, env_ranks, init_distributed
from dualcontrast.training.memory import PageReleaser, mapped_buffers


def stack(n=60, shape=(1, 8, 8)):
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


# --------------------------------------------------------------------------- batch order


def test_batch_order_depends_only_on_seed_and_epoch():
    data = Dataset(stack())
    a = BatchSource(data, 10, torch.device("cpu"), seed=4)
    b = BatchSource(data, 10, torch.device("cpu"), seed=4, resident="never")
    a.set_epoch(2)
    b.set_epoch(2)
    torch.manual_seed(0)
    first = [x.clone() for x in a]
    torch.manual_seed(123)  # whatever else used the global generator
    second = list(b)
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    a.set_epoch(3)
    assert not torch.equal(next(iter(a)), first[0])


def test_ranks_take_disjoint_shares_of_one_permutation():
    data = Dataset(stack(n=64), ids=np.arange(64))
    data.x[:, 0, 0, 0] = np.arange(64)  # the sample's index, readable from the batch
    seen = []
    for rank in (0, 1):
        src = BatchSource(data, 8, torch.device("cpu"), rank=rank, world_size=2, seed=1)
        src.set_epoch(5)
        assert len(src) == 4
        seen.append({int(v) for x in src for v in x[:, 0, 0, 0]})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 64


# --------------------------------------------------------------------------- memory-mapped data


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


# --------------------------------------------------------------------------- host reads


class Probe(torch.Tensor):
    """A tensor that counts reads of its values on the host."""

    reads = 0

    def _count(self):
        Probe.reads += 1

    def item(self):
        self._count()
        return super().item()

    def tolist(self):
        self._count()
        return super().tolist()

    def __float__(self):
        self._count()
        return super().__float__()

    def __bool__(self):
        self._count()
        return super().__bool__()

    def numpy(self, *args, **kwargs):
        self._count()
        return super().numpy(*args, **kwargs)


def test_trainer_reads_loss_terms_once_per_epoch(tmp_path, tiny_splits):
    """The step returns device tensors; the trainer sums them and reads them at epoch end only
    (with the progress bar off), so a GPU run has no host-device sync per batch."""
    cfg = build_config(
        {
            "model": {"content_dim": 4, "transform_dim": 3},
            "train": {"epochs": 2, "batch_size": 50, "progress": False},
        }
    )
    trainer = Trainer(cfg, RunDir.create(tmp_path / "r"), tiny_splits, torch.device("cpu"))
    step = trainer.model.training_step

    def probed(x, opt):
        return {k: v.as_subclass(Probe) for k, v in step(x, opt).items()}

    trainer.model.training_step = probed
    Probe.reads = 0
    trainer.fit()
    assert len(trainer.batches) == 8
    assert Probe.reads == 2  # one read of all terms per epoch


@pytest.mark.gpu
@pytest.mark.parametrize("step", ["fused", "reference"])
def test_training_step_never_syncs_on_cuda(step):
    torch.manual_seed(0)
    cfg = build_config({"model": {"content_dim": 4, "transform_dim": 3}, "train": {"step": step}})
    model = build_model(cfg, (1, 28, 28), "sigmoid").cuda()
    model.amp_dtype = torch.bfloat16
    opt = model.configure_optimizers(1e-3)
    x = torch.rand(32, 1, 28, 28, device="cuda")
    model.training_step(x, opt)  # optimizer state is created on the first step
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            terms = model.training_step(x, opt)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(v.is_cuda for v in terms.values())


# --------------------------------------------------------------------------- runtime settings


@pytest.mark.parametrize("shape", [(1, 20, 20), (1, 12, 12, 12)])
def test_channels_last_gives_the_same_step(shape):
    cfg = build_config({"model": {"content_dim": 4, "transform_dim": 3, "decoder": "conv"}})
    torch.manual_seed(0)
    plain = build_model(cfg, shape, "linear")
    torch.manual_seed(0)
    nhwc = build_model(cfg, shape, "linear")
    fmt = apply_runtime(nhwc, torch.device("cpu"), len(shape) - 1, channels_last=True)
    assert fmt is (torch.channels_last_3d if len(shape) == 4 else torch.channels_last)
    conv = nhwc.encoder.features[0].weight
    assert conv.is_contiguous(memory_format=fmt)
    x = torch.rand(6, *shape)
    torch.manual_seed(1)
    a = plain.training_step(x, plain.configure_optimizers(1e-3))
    torch.manual_seed(1)
    b = nhwc.training_step(x.contiguous(memory_format=fmt), nhwc.configure_optimizers(1e-3))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_amp_uses_bf16_only_where_the_device_has_it(monkeypatch):
    import dualcontrast.training.trainer as trainer_module

    model = build_model(
        build_config({"model": {"content_dim": 4, "transform_dim": 3}}), (1, 20, 20), "sigmoid"
    )
    monkeypatch.setattr(trainer_module, "bf16_supported", lambda device: False)
    apply_runtime(model, torch.device("cpu"), 2, amp=True)
    assert model.amp_dtype is None
    monkeypatch.setattr(trainer_module, "bf16_supported", lambda device: True)
    apply_runtime(model, torch.device("cpu"), 2, amp=True)
    assert model.amp_dtype is torch.bfloat16
    terms = model.training_step(torch.rand(6, 1, 20, 20), model.configure_optimizers(1e-3))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())


# --------------------------------------------------------------------------- distributed helpers


def test_launcher_environment(monkeypatch):
    for var in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "SLURM_NTASKS",
        "SLURM_PROCID",
        "SLURM_LOCALID",
    ):
        monkeypatch.delenv(var, raising=False)
    assert env_ranks() == (0, 1, 0)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert env_ranks() == (0, 1, 0)  # several SLURM tasks alone do not start a process group
    monkeypatch.setenv("MASTER_ADDR", "node1")
    assert env_ranks() == (3, 4, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert env_ranks() == (1, 2, 0)  # torchrun's variables win


def test_single_process_context(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed("cpu")
    assert not ctx.enabled and ctx.is_main and ctx.device == torch.device("cpu")


def test_gradient_buckets_respect_size_and_dtype():
    ts = [
        torch.zeros(10),
        torch.zeros(10),
        torch.zeros(30),
        torch.zeros(5, dtype=torch.float64),
        torch.zeros(1),
    ]
    sizes = [[t.numel() for t in b] for b in _buckets(ts, max_bytes=100)]
    assert sizes == [[10, 10], [30], [5], [1]]


def test_one_process_averaging_is_a_no_op():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    GradientAverager(1)([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_compile_uses_the_methods_own_compile_step(monkeypatch):
    calls = []
    model = build_model(
        build_config({"model": {"content_dim": 4, "transform_dim": 3}}), (1, 20, 20), "sigmoid"
    )
    monkeypatch.setattr(model, "compile_step", lambda: calls.append("step"))
    apply_runtime(model, torch.device("cpu"), 2, compile=True)
    assert calls == ["step"]


@pytest.mark.parametrize("spatial", [2, 3])
def test_trainer_uses_channels_last_for_volumes_by_default(tmp_path, spatial):
    from dualcontrast.data import DataSplits

    shape = (1, 12, 12, 12) if spatial == 3 else (1, 20, 20)
    data = Dataset(stack(n=24, shape=shape))
    cfg = build_config({"model": {"content_dim": 3, "transform_dim": 2}, "train": {"batch_size": 8}})
    trainer = Trainer(cfg, RunDir.create(tmp_path / "r"), DataSplits(data, data), torch.device("cpu"))
    convs = [m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.Conv3d | torch.nn.Conv2d)]
    weight = convs[1].weight  # the first has one input channel, where both layouts coincide
    fmt = torch.channels_last_3d if spatial == 3 else torch.channels_last
    assert weight.is_contiguous(memory_format=fmt) == (spatial == 3)
    assert weight.is_contiguous() == (spatial == 2)
