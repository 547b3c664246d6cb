"""No host reads per batch: the trainer reads the loss terms once per epoch, and a training step never
synchronises on CUDA."""


from __future__ import annotations

import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.models import build_model
from dualcontrast.rundir import RunDir
from dualcontrast.training import Trainer


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
