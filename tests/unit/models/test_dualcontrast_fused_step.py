"""The fused DualContrast step optimises exactly the reference objective.

From the same weights and the same random draws, the gradients each optimizer receives are
the same in both steps. The reference builds the z-positive pair AFTER the main optimizer
stepped; with a learning rate of zero (the recording optimizers below never move a weight)
that ordering makes no difference, so the encoder optimizer's gradients must agree too.
"""

from __future__ import annotations

import copy

import pytest
import torch

from dualcontrast.config import build_config
from dualcontrast.models import build_model


class Recorder(torch.optim.Optimizer):
    """An optimizer with learning rate zero that remembers the gradients it was given."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads: list[torch.Tensor | None] | None = None
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        self.grads = [
            None if p.grad is None else p.grad.detach().clone()
            for group in self.param_groups
            for p in group["params"]
        ]


def make_model(shape, decoder="mlp", **layers):
    cfg = build_config(
        {
            "model": {"content_dim": 4, "transform_dim": 3, "decoder": decoder, **layers.pop("model", {})},
            **layers,
        }
    )
    torch.manual_seed(0)
    return build_model(cfg, shape, "sigmoid" if len(shape) == 3 else "linear")


def run_step(model, step, x, draws):
    opt = {"main": Recorder(model.parameters()), "encoder": Recorder(model.encoder.parameters())}
    terms = getattr(model, f"_{step}_step")(x, opt, draws)
    return opt, terms


def assert_grads_equal(got, want, what, tol):
    assert got is not None and want is not None, what
    assert len(got) == len(want), what
    # Absolute tolerance from the largest gradient of all: some gradients are zero in exact
    # arithmetic (a conv bias before instance norm) and only rounding noise in both steps.
    scale = max(float(w.abs().max()) for w in want if w is not None)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        where = f"{what}[{i}]"
        assert (g is None) == (w is None), where
        if w is not None:
            torch.testing.assert_close(
                g, w, rtol=tol, atol=tol * scale, msg=lambda m, where=where: f"{where}: {m}"
            )


# The subtomogram architecture, narrowed so float64 3D convolutions stay fast.
SMALL_3D = {"encoder_options": {"channels": (8, 16), "head_channels": (32, 32)}}

CASES = {
    "mnist-2d": ((1, 28, 28), "mlp", {}),
    "2d-per-dim-reference-kl": ((1, 20, 20), "mlp", {"loss": {"cosine_scale": "per_dim", "kl": "reference"}}),
    "2d-vae-on-x-only": ((1, 20, 20), "conv", {"loss": {"vae_on_transformed": False}}),
    "3d-conv-decoder": (
        (1, 12, 12, 12),
        "conv",
        {"model": {**SMALL_3D, "decoder_options": {"channels": (16, 8)}}},
    ),
    "3d-mlp-decoder": (
        (1, 12, 12, 12),
        "mlp",
        {"model": {**SMALL_3D, "decoder_options": {"hidden": (64, 64)}}},
    ),
    "no-con-c": ((1, 20, 20), "mlp", {"model": {"name": "dualcontrast-no-con-c"}}),
    "z-positive-from-codes": ((1, 20, 20), "mlp", {"loss": {"z_pos_source": "codes"}}),
    "z-negative-margin": ((1, 20, 20), "mlp", {"loss": {"z_neg_margin": 0.05}}),
    "swapped-reconstruction": ((1, 20, 20), "conv", {"loss": {"w_swap": 0.7}}),
    "c-z-decorrelation": ((1, 20, 20), "mlp", {"loss": {"w_decorr": 2.0, "w_swap": 0.5}}),
    "neighbour-swap": ((1, 20, 20), "conv", {"loss": {"w_swap": 0.7, "swap_content": "neighbour"}}),
    "content-neighbour": ((1, 20, 20), "mlp", {"loss": {"w_c_nn": 1.5, "cosine_scale": "per_dim"}}),
    "swapped-reconstruction-vae-on-x-only": (
        (1, 20, 20),
        "mlp",
        {"loss": {"w_swap": 1.0, "vae_on_transformed": False}},
    ),
    "pos-only": ((1, 20, 20), "mlp", {"model": {"name": "dualcontrast-pos-only"}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fused_gradients_equal_the_reference_procedure(case):
    """In float64, where rounding cannot hide a difference: every gradient of both optimizers."""
    shape, decoder, layers = CASES[case]
    reference = make_model(shape, decoder, **copy.deepcopy(layers)).double()
    fused = copy.deepcopy(reference)
    x = torch.rand(6, *shape, dtype=torch.float64)
    torch.manual_seed(1)
    draws = reference.draw(x)

    ref_opt, ref_terms = run_step(reference, "reference", x, draws)
    fused_opt, fused_terms = run_step(fused, "fused", x, draws)

    assert set(ref_terms) == set(fused_terms)
    for k in ref_terms:
        torch.testing.assert_close(fused_terms[k], ref_terms[k], rtol=1e-10, atol=1e-12, msg=k)
    # Main optimizer: every loss term, every parameter.
    assert_grads_equal(fused_opt["main"].grads, ref_opt["main"].grads, "main", tol=1e-9)
    # Encoder optimizer: the z-positive term, encoder parameters only.
    if "z_pos" in ref_terms:
        assert ref_opt["encoder"].steps == fused_opt["encoder"].steps == 1
        assert_grads_equal(fused_opt["encoder"].grads, ref_opt["encoder"].grads, "encoder", tol=1e-9)
    else:
        assert ref_opt["encoder"].steps == fused_opt["encoder"].steps == 0


@pytest.mark.parametrize("case", ["mnist-2d", "3d-conv-decoder"])
def test_float32_main_gradients_agree_to_rounding(case):
    """In float32 the main gradients agree to rounding. (The z-positive gradient at
    initialisation is a small difference of nearly parallel codes, so float32 rounding
    dominates it in either step; float64 above is the check for that one.)"""
    shape, decoder, layers = CASES[case]
    reference = make_model(shape, decoder, **copy.deepcopy(layers))
    fused = copy.deepcopy(reference)
    x = torch.rand(6, *shape)
    draws = reference.draw(x)
    ref_opt, _ = run_step(reference, "reference", x, draws)
    fused_opt, _ = run_step(fused, "fused", x, draws)
    assert_grads_equal(fused_opt["main"].grads, ref_opt["main"].grads, "main", tol=1e-5)


def test_gradients_differ_when_a_term_is_dropped():
    """The comparison above can fail: a fused step missing the c-negative term is caught."""
    shape = (1, 20, 20)
    reference = make_model(shape)
    broken = copy.deepcopy(reference)
    broken.loss_cfg.w_c_neg = 0.0
    x = torch.rand(6, *shape)
    draws = reference.draw(x)
    ref_opt, _ = run_step(reference, "reference", x, draws)
    broken_opt, _ = run_step(broken, "fused", x, draws)
    with pytest.raises(AssertionError):
        assert_grads_equal(broken_opt["main"].grads, ref_opt["main"].grads, "main", tol=1e-5)


def test_with_a_real_learning_rate_only_the_z_positive_pair_differs():
    """Adam with lr > 0: the main update is the same; the encoder update differs only because
    the reference decodes and encodes the z-positive pair with the already-updated weights."""
    shape = (1, 20, 20)
    reference = make_model(shape).double()
    fused = copy.deepcopy(reference)
    x = torch.rand(6, *shape, dtype=torch.float64)
    draws = reference.draw(x)
    states = {}
    for name, model in (("reference", reference), ("fused", fused)):
        main = torch.optim.Adam(model.parameters(), lr=1e-2)
        enc = Recorder(model.encoder.parameters())
        getattr(model, f"_{name}_step")(x, {"main": main, "encoder": enc}, draws)
        states[name] = ({k: v.clone() for k, v in model.state_dict().items()}, enc.grads)
    (ref_w, ref_g), (fused_w, fused_g) = states["reference"], states["fused"]
    for k in ref_w:
        torch.testing.assert_close(fused_w[k], ref_w[k], rtol=1e-9, atol=1e-9, msg=k)
    differs = [not torch.allclose(a, b, rtol=1e-6, atol=1e-12) for a, b in zip(fused_g, ref_g, strict=True)]
    assert any(differs)


@pytest.mark.parametrize("step", ["fused", "reference"])
def test_same_rng_state_gives_the_same_draws_in_both_steps(step):
    """training_step draws first, so a step from a given RNG state uses ``draw`` exactly."""
    shape = (1, 20, 20)
    model = make_model(shape, train={"step": step})
    x = torch.rand(6, *shape)
    torch.manual_seed(5)
    direct = copy.deepcopy(model)
    want = run_step(direct, step, x, direct.draw(x))[1]
    torch.manual_seed(5)
    opt = {"main": Recorder(model.parameters()), "encoder": Recorder(model.encoder.parameters())}
    got = model.training_step(x, opt)
    for k in want:
        assert torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("step", ["fused", "reference"])
def test_step_returns_detached_device_tensors(step):
    """No value is read on the host inside a step: the terms come back as 0-d tensors."""
    model = make_model((1, 20, 20), train={"step": step})
    terms = model.training_step(torch.rand(6, 1, 20, 20), model.configure_optimizers(1e-3))
    for k, v in terms.items():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad, k


@pytest.mark.slow
def test_compiled_fused_step_matches_eager():
    """``compile_step`` compiles the whole fused forward (about a minute on a CPU)."""
    shape = (1, 28, 28)
    eager = make_model(shape)
    compiled = copy.deepcopy(eager)
    compiled.compile_step()
    x = torch.rand(16, *shape)
    draws = eager.draw(x)
    eager_opt, eager_terms = run_step(eager, "fused", x, draws)
    compiled_opt, compiled_terms = run_step(compiled, "fused", x, draws)
    for k in eager_terms:
        torch.testing.assert_close(compiled_terms[k], eager_terms[k], rtol=1e-4, atol=1e-6, msg=k)
    assert_grads_equal(compiled_opt["main"].grads, eager_opt["main"].grads, "main", tol=1e-4)
    assert_grads_equal(compiled_opt["encoder"].grads, eager_opt["encoder"].grads, "encoder", tol=1e-3)
