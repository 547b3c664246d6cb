"""VITAE (velocity-field warps, ELBO) and DisCo (loss pieces, phases, frozen generator, c/z split)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dualcontrast.config import build_config, save_config
from dualcontrast.errors import ConfigError
from dualcontrast.models import MODELS, build_model
from dualcontrast.models.disco import (
    DisCo,
    Navigator,
    contrastive_logits_loss,
    draw_directions,
    draw_shifts,
    entropy_domination,
    flip_labels,
    split_by_sensitivity,
    unit_columns,
    variation,
)
from dualcontrast.models.vitae import (
    VITAE,
    apply_displacement,
    identity_grid,
    integrate_velocity,
    jacobian_determinant,
    upsample_velocity,
    warp_by_velocity,
)
from dualcontrast.rundir import RunDir, atomic_save
from dualcontrast.training.trainer import build_state
from dualcontrast.transforms import rotate_2d

SMALL_NETS = {"encoder_options": {"channels": [8, 16]}, "decoder_options": {"hidden": [64]}}


def blob_images(n: int, channels: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth off-centre blobs at random positions, inside the image (zero border)."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    centre = (torch.rand(n, 2, generator=gen) - 0.5) * 0.8
    r2 = (xx - centre[:, 0, None, None]) ** 2 + (yy - centre[:, 1, None, None]) ** 2 / 0.4
    img = torch.exp(-r2 / 0.05)[:, None]
    colour = 0.5 + 0.5 * torch.rand(n, channels, 1, 1, generator=gen)
    return (img * colour).clamp(0, 1)


def random_velocity(
    n: int, spatial: tuple[int, ...], grid: int, scale: float, seed: int = 0, zero_boundary: bool = True
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    control = scale * torch.randn(n, len(spatial), *[grid] * len(spatial), generator=gen)
    if zero_boundary:
        control = torch.nn.functional.pad(
            control[(..., *[slice(1, -1)] * len(spatial))], (1, 1) * len(spatial)
        )
    return upsample_velocity(control, spatial)


# -- VITAE: warps ----------------------------------------------------------------------------------


def test_linear_field_integrates_to_a_rotation():
    """exp of v(p) = w (-y, x) is the rotation by w: matches the package's rotate_2d."""
    n, w = 32, 0.6
    grid = identity_grid(1, (n, n))
    v = w * torch.stack([-grid[..., 1], grid[..., 0]], 1)
    x = blob_images(1, size=n)
    out = warp_by_velocity(x, v, steps=8)
    # out(p) = x(R_w p): the object turns by -w in the geometry module's convention.
    torch.testing.assert_close(out, rotate_2d(x, torch.tensor([-w])), atol=5e-3, rtol=0)
    assert (out - rotate_2d(x, torch.tensor([w]))).abs().max() > 0.1


def test_upsampling_reproduces_affine_fields():
    n, g = 20, 5
    a = torch.tensor([[0.3, -0.7], [0.5, 0.2]])
    b = torch.tensor([0.1, -0.2])
    # Control points sit on the pixel centres they map to (align_corners=True upsampling).
    pos = torch.tensor([(2 * (j * (n - 1) / (g - 1)) + 1) / n - 1 for j in range(g)])
    cy, cx = torch.meshgrid(pos, pos, indexing="ij")
    pts = torch.stack([cx, cy], -1)  # (g, g, 2) as (x, y)
    control = (pts @ a.T + b).permute(2, 0, 1)[None]
    field = upsample_velocity(control, (n, n))
    ident = identity_grid(1, (n, n))[0]
    torch.testing.assert_close(field[0].permute(1, 2, 0), ident @ a.T + b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)], ids=["2d", "3d"])
def test_warp_then_inverse_warp_returns_the_image(spatial):
    x = _wide_blob(3, spatial)
    v = random_velocity(3, spatial, grid=4, scale=0.3, seed=1)
    there = warp_by_velocity(x, v, steps=7)
    back = warp_by_velocity(there, -v, steps=7)
    assert (there - x).abs().max() > 0.5  # the warp did something
    assert (back - x).abs().max() < 0.1  # ... and -v undid it, up to interpolation error
    # The maps themselves compose to the identity, to within a pixel.
    u, u_inv = integrate_velocity(v, 7), integrate_velocity(-v, 7)
    composed = u + apply_displacement(u_inv, u)  # phi_-v(phi_v(p)) - p
    assert composed.abs().max() < 2 / spatial[-1]
    assert u.abs().max() > 4 * 2 / spatial[-1]  # while the warp moves points by several pixels


def _wide_blob(n: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """A smooth blob (std 3.5 pixels) off the centre, ``(n, 1, *spatial)``."""
    g = torch.linspace(-1, 1, spatial[-1])
    sigma = 3.5 * 2 / spatial[-1]
    grids = torch.meshgrid(*[g] * len(spatial), indexing="ij")
    centre = [-0.1] * (len(spatial) - 2) + [-0.1, 0.2]
    r2 = sum((a - c) ** 2 for a, c in zip(grids, centre, strict=True))
    return torch.exp(-r2 / (2 * sigma**2)).expand(n, 1, *spatial).clone()


@pytest.mark.parametrize("zero_boundary", [True, False], ids=["zero-boundary", "free-boundary"])
@pytest.mark.parametrize("spatial", [(28, 28), (12, 12, 12)], ids=["2d", "3d"])
def test_integrated_map_has_positive_jacobian_everywhere(spatial, zero_boundary):
    v = random_velocity(4, spatial, grid=4, scale=0.3, seed=2, zero_boundary=zero_boundary)
    det = jacobian_determinant(integrate_velocity(v, 7))
    assert det.shape == (4, *spatial)
    assert det.min() > 0
    assert det.max() > 2 and det.min() < 0.5  # a real deformation, not a near-identity


def test_jacobian_detects_folding_without_scaling_and_squaring():
    """The same field applied as one Euler step (steps=0) folds the grid: det < 0 somewhere."""
    v = random_velocity(4, (28, 28), grid=4, scale=0.3, seed=2)
    assert jacobian_determinant(integrate_velocity(v, 0)).min() < 0
    torch.testing.assert_close(jacobian_determinant(torch.zeros(2, 2, 8, 8)), torch.ones(2, 8, 8))


# -- VITAE: model ----------------------------------------------------------------------------------


def vitae(shape=(1, 16, 16), **params) -> VITAE:
    torch.manual_seed(0)
    cfg = build_config(
        {"model": {"name": "vitae", "content_dim": 4, "transform_dim": 3, **SMALL_NETS, "params": params}}
    )
    return build_model(cfg, shape, "sigmoid")


def test_vitae_is_registered():
    assert MODELS.get("vitae") is VITAE


@pytest.mark.parametrize("inference", ["conditional", "unconditional"])
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 16, 16), (1, 8, 8, 8)], ids=["grey", "rgb", "3d"])
def test_vitae_encode_decode_shapes(shape, inference):
    m = vitae(shape, inference=inference, control_grid=3)
    x = torch.rand(5, *shape)
    codes = m.encode(x)
    assert codes.c_mu.shape == codes.c_logvar.shape == (5, 4)
    assert codes.z_mu.shape == codes.z_logvar.shape == (5, 3)
    assert m.decode(codes.c_mu, codes.z_mu).shape == x.shape
    assert m.has_decoder


def test_vitae_conditional_inference_sees_the_unwarped_image():
    m = vitae()
    x = blob_images(4)
    with torch.no_grad():
        m.velocity_decoder.net[-1].bias.normal_(std=1.0)  # a visible warp for every z
        v = m.velocity(m.encode(x).z_mu)
        expected = m.appearance_encoder(warp_by_velocity(x, -v, m.steps))[0]
        torch.testing.assert_close(m.encode(x).c_mu, expected)
        assert (m.appearance_encoder(x)[0] - expected).abs().max() > 1e-4


def test_vitae_decode_is_the_warped_appearance():
    m = vitae()
    c, z = torch.randn(3, 4), torch.randn(3, 3)
    with torch.no_grad():
        m.velocity_decoder.net[-1].bias.normal_(std=1.0)
        expected = warp_by_velocity(m.appearance(c), m.velocity(z), m.steps)
        torch.testing.assert_close(m.decode(c, z), expected)
        # z changes only the pose: the warped images of one appearance keep its mass (no padding loss).
        assert (m.decode(c, z) - m.decode(c, torch.randn(3, 3))).abs().max() > 1e-3


def test_vitae_training_lowers_the_loss_and_reaches_every_network():
    m = vitae()
    x = blob_images(16)
    opt = m.configure_optimizers(3e-3)

    def fixed_loss() -> float:
        state = torch.get_rng_state()
        torch.manual_seed(7)
        with torch.no_grad():
            t = m.elbo_terms(x)
        torch.set_rng_state(state)
        return float(t["rec"])

    start = fixed_loss()
    first = m.training_step(x, opt)
    assert set(first) == {"rec", "kl_c", "kl_z", "loss"}
    for name in ("perspective_encoder", "appearance_encoder", "appearance_decoder", "velocity_decoder"):
        grads = [p.grad.abs().sum() for p in getattr(m, name).parameters() if p.grad is not None]
        assert grads and sum(grads) > 0, name
    for _ in range(15):
        m.training_step(x, opt)
    assert fixed_loss() < 0.8 * start


def test_vitae_rejects_bad_params():
    with pytest.raises(ConfigError, match=r"unknown model\.params for vitae: .gird.; known: .*control_grid"):
        vitae(gird=4)
    with pytest.raises(ConfigError, match="inference"):
        vitae(inference="sometimes")
    with pytest.raises(ConfigError, match="control_grid"):
        vitae(control_grid=1)


# -- DisCo: loss pieces ----------------------------------------------------------------------------


def sig(t: float) -> float:
    return 1 / (1 + math.exp(-t))


def test_contrastive_loss_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0]])
    k_pos = torch.tensor([[1.0, 0.0]])  # similarity 1
    k_neg = torch.tensor([[0.0, 1.0], [0.96, 0.28]])  # similarities 0 and 0.96 (a hard negative)
    pos = -math.log(sig(1.0))
    easy = -math.log(1 - sig(0.0))
    hard_as_negative = -math.log(1 - sig(0.96))
    hard_flipped = -(0.96 * math.log(sig(0.96)) + 0.04 * math.log(1 - sig(0.96)))
    plain = contrastive_logits_loss(q, k_pos, k_neg, flip=False)
    flipped = contrastive_logits_loss(q, k_pos, k_neg, flip=True, threshold=0.95)
    assert float(plain) == pytest.approx((pos + easy + hard_as_negative) / 3, rel=1e-6)
    assert float(flipped) == pytest.approx((pos + easy + hard_flipped) / 3, rel=1e-6)
    # The threshold above the hard negative's similarity flips nothing.
    assert float(contrastive_logits_loss(q, k_pos, k_neg, threshold=0.97)) == pytest.approx(float(plain))
    # Temperature divides the logits; labels stay the similarities.
    hot = contrastive_logits_loss(q, k_pos, k_neg, temperature=0.5, threshold=0.95)
    t_pos = -math.log(sig(2.0))
    t_hard = -(0.96 * math.log(sig(1.92)) + 0.04 * math.log(1 - sig(1.92)))
    assert float(hot) == pytest.approx((t_pos + easy + t_hard) / 3, rel=1e-6)


def test_flip_labels_flips_exactly_the_pairs_at_or_above_threshold():
    sim = torch.tensor([[0.1, 0.95, 0.96], [0.949, 1.0, 0.5]], requires_grad=True)
    labels = flip_labels(sim, 0.95)
    expected = torch.tensor([[0.0, 0.95, 0.96], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(labels, expected)
    assert not labels.requires_grad  # pseudo-labels are targets, not a path for gradients


def test_entropy_domination_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0, 0.0]])
    k = torch.tensor([[0.0, 1.0, 0.0]])
    e = math.exp(0.5)
    p = [e / (2 * e + 1), e / (2 * e + 1), 1 / (2 * e + 1)]
    expected = -sum(pi * math.log(pi) for pi in p) / 3
    assert float(entropy_domination(q, k)) == pytest.approx(expected, rel=1e-6)
    # One-hot agreement on one dimension is "more dominated" than spread variations.
    spread = torch.full((2, 3), 1 / math.sqrt(3))
    assert float(entropy_domination(q, q)) < float(entropy_domination(spread[:1], spread[1:]))


def test_variation_is_unit_absolute_difference():
    a, b = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, -1.0, 7.0]])
    torch.testing.assert_close(variation(a, b), torch.tensor([[0.0, 0.6, 0.8]]))


def test_negative_directions_never_equal_the_positive_one():
    torch.manual_seed(0)
    for _ in range(20):
        pos, neg = draw_directions(5, 6, 200)
        assert pos.shape == (6,) and (pos == pos[0]).all()
        assert (neg != pos[0]).all()
        assert set(neg.tolist()) == set(range(5)) - {int(pos[0])}
    with pytest.raises(ValueError):
        draw_directions(1, 2, 2)


def test_shifts_have_bounded_magnitude_and_both_signs():
    torch.manual_seed(0)
    s = draw_shifts(1000, 0.5, 3.0)
    assert s.abs().min() >= 0.5 and s.abs().max() <= 3.0
    assert 0.4 < (s > 0).float().mean() < 0.6


def test_navigator_uses_unit_columns():
    nav = Navigator(4, 3)
    with torch.no_grad():
        nav.matrix.copy_(torch.tensor([[3.0, 0, 1], [4.0, 0, 1], [0, 2.0, 1], [0, 0, 1]]))
    out = nav(torch.tensor([0, 1, 2]), torch.tensor([2.0, -1.0, 1.0]))
    expected = torch.tensor([[1.2, 1.6, 0, 0], [0, 0, -1.0, 0], [0.5, 0.5, 0.5, 0.5]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(unit_columns(nav.matrix).norm(dim=0), torch.ones(3))


def test_split_puts_the_most_sensitive_dimensions_last():
    order = split_by_sensitivity(torch.tensor([0.9, 0.1, 0.5, 0.2, 2.0]), transform_dim=2)
    assert order.tolist() == [1, 2, 3, 0, 4]


# -- DisCo: model ----------------------------------------------------------------------------------


def disco(content_dim: int = 3, transform_dim: int = 2, shape=(1, 16, 16), **params) -> DisCo:
    torch.manual_seed(0)
    base = {"generator_epochs": 1, "queries": 4, "positives": 4, "negatives": 8}
    model = {"name": "disco", "content_dim": content_dim, "transform_dim": transform_dim, **SMALL_NETS}
    cfg = build_config({"model": {**model, "params": {**base, **params}}, "train": {"epochs": 3}})
    return build_model(cfg, shape, "sigmoid")


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(module: nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_disco_codes_and_no_decoder():
    m = disco()
    assert MODELS.get("disco") is DisCo
    codes = m.encode(torch.rand(6, 1, 16, 16))
    assert codes.c_mu.shape == (6, 3) and codes.z_mu.shape == (6, 2)
    assert codes.c_logvar is None and codes.z_logvar is None
    assert not m.has_decoder and m.decode(codes.c_mu, codes.z_mu) is None


def test_disco_trains_on_volumes():
    m = disco(shape=(1, 8, 8, 8))
    opts = m.configure_optimizers(1e-3)
    x = torch.rand(6, 1, 8, 8, 8)
    assert float(m.training_step(x, opts)["phase"]) == 1
    m.on_epoch_end(1)
    terms = m.training_step(x, opts)
    assert float(terms["phase"]) == 2 and math.isfinite(float(terms["loss"]))
    m.on_epoch_end(2)
    codes = m.encode(x)
    assert codes.c_mu.shape == (6, 3) and codes.z_mu.shape == (6, 2)


def test_disco_generator_phase_is_a_vae2_step():
    """Phase 1 is exactly the vae2 model's training: same weights after the same steps."""
    model = {"content_dim": 3, "transform_dim": 2, **SMALL_NETS}
    torch.manual_seed(0)
    vae = build_model(build_config({"model": {"name": "vae2", **model}}), (1, 16, 16), "sigmoid")
    m = disco()  # seeds 0 itself; the generator is built first
    torch.testing.assert_close(m.generator.state_dict(), vae.state_dict())
    x = blob_images(8)
    vae_opts, opts = vae.configure_optimizers(1e-3), m.configure_optimizers(1e-3)
    for seed in (1, 2):
        torch.manual_seed(seed)
        expected = vae.training_step(x, vae_opts)
        torch.manual_seed(seed)
        got = m.training_step(x, opts)
        torch.testing.assert_close(got["loss"], expected["loss"])
    torch.testing.assert_close(m.generator.state_dict(), vae.state_dict())
    names = [n for n, _ in m.named_networks()]
    assert names == ["generator.encoder", "generator.decoder", "navigator", "contrastor"]


def test_disco_phases_train_the_right_networks():
    m = disco()
    opts = m.configure_optimizers(1e-3)
    assert set(opts) == {"generator_main", "generator_encoder", "disco"}
    x = blob_images(12)
    gen, nav, enc = snapshot(m.generator), snapshot(m.navigator), snapshot(m.contrastor)
    terms = m.training_step(x, opts)
    assert float(terms["phase"]) == 1 and float(terms["rec"]) > 0
    assert changed(m.generator, gen) and not changed(m.navigator, nav) and not changed(m.contrastor, enc)

    m.on_epoch_end(1)  # generator_epochs = 1: the generator phase is over
    assert not m.in_generator_phase
    gen = snapshot(m.generator)
    for o in opts.values():
        o.zero_grad(set_to_none=True)
    terms = m.training_step(x, opts)
    assert float(terms["phase"]) == 2 and float(terms["logits"]) > 0 and float(terms["rec"]) == 0
    assert set(terms) == {"rec", "kl_c", "kl_z", "logits", "entropy", "hard_neg", "loss", "phase"}
    assert all(p.grad is None and not p.requires_grad for p in m.generator.parameters())
    assert not changed(m.generator, gen)
    assert m.navigator.matrix.grad is not None and m.navigator.matrix.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.contrastor.parameters())
    assert changed(m.navigator, nav) and changed(m.contrastor, enc)


def test_disco_phase_2_learns_to_contrast_variations():
    """Queries move towards positive keys and away from negatives; the unflipped BCE drops."""
    m = disco(queries=16, positives=16, negatives=32, flip=False)
    opts = m.configure_optimizers(3e-3)
    x = blob_images(16)
    m.on_epoch_end(1)

    def measure() -> tuple[float, float]:
        """(positive minus negative similarity, L_logits) averaged over 8 fixed draws."""
        state = torch.get_rng_state()
        gap = loss = 0.0
        for seed in range(8):
            torch.manual_seed(100 + seed)
            with torch.no_grad():
                q, k_pos, k_neg = m.draw_variations(x)
                gap += float((q @ k_pos.T).mean() - (q @ k_neg.T).mean()) / 8
                loss += float(contrastive_logits_loss(q, k_pos, k_neg, flip=False)) / 8
        torch.set_rng_state(state)
        return gap, loss

    gap0, loss0 = measure()
    for _ in range(60):
        m.training_step(x, opts)
    gap1, loss1 = measure()
    assert gap1 > gap0 + 0.15
    assert loss1 < loss0 - 0.03


class _Moments(nn.Module):
    """A hand-made E: [x-centroid (changes with rotation), mass, radial moment (both invariant)]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.sum(1)
        n = w.shape[-1]
        g = (2 * torch.arange(n, dtype=x.dtype) + 1) / n - 1
        mass = w.sum((-2, -1))
        cx = (w * g[None, :]).sum((-2, -1)) / mass
        r2 = (w * (g[None, :] ** 2 + g[:, None] ** 2)).sum((-2, -1)) / mass
        return torch.stack([cx, mass, r2], -1)


def test_disco_split_makes_the_rotation_sensitive_dimension_z():
    m = disco(content_dim=2, transform_dim=1)  # J = 3, as the hand-made E
    m.on_epoch_end(1)
    m.contrastor = _Moments()
    torch.manual_seed(0)
    for seed in range(3):
        m.update_split_stats(blob_images(32, size=24, seed=seed))
    sens = m.sensitivity()
    assert sens[0] > 5 * sens[1:].max()
    m.on_epoch_end(2)
    assert m.dim_order.tolist() == [1, 2, 0]
    x = blob_images(5, size=24)
    codes = m.encode(x)
    torch.testing.assert_close(codes.z_mu[:, 0], _Moments()(x)[:, 0])
    assert float(m._count) == 0  # statistics restart every epoch


def test_disco_checkpoint_keeps_phase_and_split():
    m = disco()
    m.on_epoch_end(1)
    m.dim_order.copy_(torch.tensor([4, 0, 3, 1, 2]))
    fresh = disco()
    assert fresh.in_generator_phase
    fresh.load_state_dict(m.state_dict())
    assert not fresh.in_generator_phase and fresh.dim_order.tolist() == [4, 0, 3, 1, 2]


def test_disco_generator_epochs_must_leave_room_for_both_phases():
    with pytest.raises(ConfigError, match="generator_epochs"):
        disco(generator_epochs=3)  # train.epochs is 3
    with pytest.raises(ConfigError, match="generator_epochs"):
        disco(generator_epochs=0)
    with pytest.raises(ConfigError, match=r"unknown model\.params for disco: .navigator."):
        disco(navigator="fc")
    with pytest.raises(ConfigError, match="latent_source"):
        disco(latent_source="uniform")


def _vae2_run(tmp_path, shape=(1, 16, 16), name="vae2"):
    cfg = build_config({"model": {"name": name, "content_dim": 3, "transform_dim": 2, **SMALL_NETS}})
    state = build_state(cfg, shape, "sigmoid", torch.device("cpu"))
    run = RunDir.create(tmp_path / f"gen-{name}")
    save_config(cfg, run.config, command=["test"])
    atomic_save(state.checkpoint(), run.last_checkpoint)
    return run, state.model


def test_disco_loads_a_trained_generator(tmp_path):
    run, generator = _vae2_run(tmp_path)
    m = disco(generator_run=str(run.root), generator_epochs=0)
    assert not m.in_generator_phase
    for (k, a), b in zip(generator.state_dict().items(), m.generator.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    gen = snapshot(m.generator)
    m.training_step(blob_images(8), m.configure_optimizers(1e-3))
    assert not changed(m.generator, gen)
    with pytest.raises(ConfigError, match="set generator_epochs to 0"):
        disco(generator_run=str(run.root), generator_epochs=1)


def test_disco_refuses_unsuitable_generator_runs(tmp_path):
    run, _ = _vae2_run(tmp_path, shape=(1, 20, 20))
    with pytest.raises(ConfigError, match="shape"):
        disco(generator_run=str(run.root), generator_epochs=0)
    other, _ = _vae2_run(tmp_path, name="vitae")
    with pytest.raises(ConfigError, match="generator must be"):
        disco(generator_run=str(other.root), generator_epochs=0)
