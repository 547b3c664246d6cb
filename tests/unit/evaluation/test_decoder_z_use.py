"""decoder_z_use: how much the decoder reads z, against decoders known to ignore z, to ignore c
and to read both alike; and through a trained run's metrics.json."""

import contextlib

import numpy as np
import pytest
import torch

from dualcontrast.evaluation.metrics import decoder_z_use


class Decoder(torch.nn.Module):
    """decode(c, z) = a * c @ W + b * z @ W: a = 0 ignores c, b = 0 ignores z."""

    def __init__(self, a, b, dim=4):
        super().__init__()
        self.a, self.b = a, b
        self.w = torch.randn(dim, 16, generator=torch.Generator().manual_seed(0))

    def decode(self, c, z):
        return self.a * c @ self.w + self.b * z @ self.w

    def autocast(self):
        return contextlib.nullcontext()


@pytest.mark.parametrize("a, b, expected", [(1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.5)])
def test_known_decoders(a, b, expected):
    rng = np.random.default_rng(1)
    c, z = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    model = Decoder(a, b)
    model.train()
    got = decoder_z_use(model, c, z, n=300, batch_size=64)["z_use"]
    assert got == pytest.approx(expected, abs=0.05)
    assert model.training  # the mode is put back


def test_no_decoder_no_score():
    class NoDecoder(Decoder):
        def decode(self, c, z):
            return None

    rng = np.random.default_rng(1)
    assert decoder_z_use(NoDecoder(1, 1), rng.normal(size=(10, 4)), rng.normal(size=(10, 4))) is None
    assert decoder_z_use(Decoder(1, 1), np.zeros((1, 4)), np.zeros((1, 4))) is None


def test_a_trained_run_reports_it(tmp_path, tiny_splits):
    """evaluate_run puts z_use into metrics.json next to the D-scores."""
    from dualcontrast.config import build_config
    from dualcontrast.evaluation.run import evaluate_run
    from dualcontrast.rundir import RunDir
    from dualcontrast.training import Trainer

    cfg = build_config({"model": {"content_dim": 4, "transform_dim": 3},
                        "train": {"epochs": 1, "batch_size": 50, "progress": False},
                        "eval": {"rotation_samples": 0}})  # fmt: skip
    run = RunDir.create(tmp_path / "r")
    state = Trainer(cfg, run, tiny_splits, torch.device("cpu")).fit()
    doc = evaluate_run(run, cfg, state.model, tiny_splits, torch.device("cpu"), epoch=1, figures=False)
    assert 0.0 < doc["scores"]["z_use"] < 1.0
