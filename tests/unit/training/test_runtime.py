"""Runtime settings of training.runtime / apply_runtime: channels_last gives the same step, AMP uses
bf16 only where the device has it, compile uses a method's own compile step, volumes default to
channels_last."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.data import Dataset
from dualcontrast.models import build_model
from dualcontrast.rundir import RunDir
from dualcontrast.training import Trainer, apply_runtime


def stack(n=60, shape=(1, 8, 8)):
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


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
