"""Baselines behind the model contract: SimCLR (both variants), Harmony and SpatialVAE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dualcontrast.config import build_config
from dualcontrast.errors import ConfigError
from dualcontrast.geometry import euler_zyz_to_matrix, rotation_matrix_2d
from dualcontrast.losses import info_nce
from dualcontrast.models import MODELS, Codes, build_model
from dualcontrast.models.harmony import gaussian_kl_between, harmony_terms, sum_squared_error
from dualcontrast.models.spatial_vae import move_coordinates, pixel_grid
from dualcontrast.transforms.geometry import rotate_2d, warp

NAMES = ["simclr", "simclr-gen", "harmony", "spatial-vae"]
# Small networks where a method has its own (the contract does not depend on their size).
SMALL = {"spatial-vae": {"hidden": 64}}


pytestmark = pytest.mark.usefixtures("one_thread")


def make(name: str, shape, output: str = "sigmoid", *, params=None, **model):
    cfg = build_config(
        {"model": {"name": name, "params": {**SMALL.get(name, {}), **(params or {})}, **model}}
    )
    return build_model(cfg, shape, output)


def tiny_images(n: int = 64, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Four prototype shapes (bar, L, cross, blob), each randomly rotated. ``(n, 1, size, size)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    ax = (2 * torch.arange(size) + 1) / size - 1
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    protos = torch.stack(
        [
            ((x.abs() < 0.6) & (y.abs() < 0.15)).float(),
            (
                ((x > -0.4) & (x < -0.15) & (y.abs() < 0.5)) | ((y > 0.25) & (y < 0.5) & (x.abs() < 0.4))
            ).float(),
            (((x.abs() < 0.12) & (y.abs() < 0.5)) | ((y.abs() < 0.12) & (x.abs() < 0.5))).float(),
            torch.exp(-((x - 0.2) ** 2 + (y + 0.1) ** 2) / 0.08),
        ]
    )
    idx = torch.randint(0, 4, (n,), generator=g)
    angles = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    return rotate_2d(protos[idx].unsqueeze(1), angles).clamp(0, 1)


# ------------------------------------------------------------------------------------------------
# Contract: registration, shapes, params
# ------------------------------------------------------------------------------------------------
def test_all_baselines_are_registered():
    for name in NAMES:
        assert name in MODELS


Z_DIM = {"simclr": (10, 10), "simclr-gen": (10, 10), "harmony": (3, 6), "spatial-vae": (3, 6)}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 16, 16), (1, 8, 8, 8)], ids=["2d", "3d"])
def test_encode_decode_shapes(name, shape):
    torch.manual_seed(0)
    # The 3D MLP decoder preset is huge (5000 hidden units); the conv one keeps the test fast.
    m = make(name, shape, "linear" if len(shape) == 4 else "sigmoid", content_dim=6, decoder="conv")
    x = torch.rand(4, *shape)
    codes = m.encode(x)
    assert codes.c_mu.shape == (4, 6)
    z_dim = Z_DIM[name][len(shape) - 3]
    assert codes.z_mu.shape == (4, z_dim)
    if name == "simclr":
        assert codes.c_logvar is None and codes.z_logvar is None
        assert not m.has_decoder and m.decode(codes.c_mu, codes.z_mu) is None
        return
    assert codes.c_logvar.shape == (4, 6)
    if name == "harmony":
        assert codes.z_logvar is None  # k is a point estimate
    else:
        assert codes.z_logvar.shape == (4, z_dim)
    assert m.has_decoder
    out = m.decode(codes.c_mu, codes.z_mu)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_unknown_params_are_named(name):
    with pytest.raises(ConfigError, match="temprature"):
        make(name, (1, 16, 16), params={"temprature": 0.5})


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("simclr", {"temperature": 0}, "temperature"),
        ("harmony", {"encoder": "resnet"}, "encoder"),
        ("harmony", {"scale_range": [1.5, 1.0]}, "scale_range"),
        ("spatial-vae", {"likelihood": "poisson"}, "likelihood"),
        ("spatial-vae", {"layers": 0}, "layers"),
    ],
)
def test_bad_param_values_raise(name, params, match):
    with pytest.raises(ConfigError, match=match):
        make(name, (1, 16, 16), params=params)


def test_harmony_scale_is_2d_only():
    with pytest.raises(ConfigError, match="2D"):
        make("harmony", (1, 8, 8, 8), "linear", params={"scale": True})


# ------------------------------------------------------------------------------------------------
# Training: the loss goes down, every parameter learns
# ------------------------------------------------------------------------------------------------
def train_losses(m, x: torch.Tensor, steps: int, batch: int = 32) -> list[float]:
    opt = m.configure_optimizers(1e-3)
    out = []
    for i in range(steps):
        idx = torch.arange(batch) + (i % (len(x) // batch)) * batch
        terms = m.training_step(x[idx], opt)
        assert all(not v.requires_grad for v in terms.values())
        out.append(float(terms["loss"]))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_loss(name):
    torch.manual_seed(0)
    x = tiny_images()
    m = make(name, (1, 16, 16))
    losses = train_losses(m, x, 30)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.9 * first, (first, last)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    m = make(name, (1, 16, 16))
    m.training_step(tiny_images(16), m.configure_optimizers(1e-3))
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


# ------------------------------------------------------------------------------------------------
# SimCLR
# ------------------------------------------------------------------------------------------------
def slow_nt_xent(a: torch.Tensor, b: torch.Tensor, t: float) -> float:
    """NT-Xent written out anchor by anchor (float64)."""
    z = [v / v.norm() for v in torch.cat([a, b]).double()]
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -(float(z[i] @ z[pos]) / t - math.log(den))
    return total / (2 * n)


@pytest.mark.parametrize("generative", [False, True])
def test_simclr_loss_is_infonce_on_c_plus_z_negative(generative):
    torch.manual_seed(0)
    name = "simclr-gen" if generative else "simclr"
    m = make(name, (1, 16, 16), params={"temperature": 0.5, "w_z_neg": 0.3})
    x = tiny_images(8)
    xt = rotate_2d(x, torch.full((8,), 0.7))
    with torch.no_grad():
        loss, terms = m.loss_terms(x, xt)
        cx, ct = m.posterior(x), m.posterior(xt)
    assert float(terms["infonce"]) == pytest.approx(slow_nt_xent(cx.c_mu, ct.c_mu, 0.5), rel=1e-4)
    assert float(terms["infonce"]) == pytest.approx(float(info_nce(cx.c_mu, ct.c_mu, 0.5)), rel=1e-5)
    z_neg = F.cosine_similarity(cx.z_mu, ct.z_mu, dim=-1).abs().mean()
    assert float(terms["z_neg"]) == pytest.approx(float(z_neg), rel=1e-5)
    expected = terms["infonce"] + 0.3 * terms["z_neg"]
    if generative:
        lc = m.loss_cfg
        assert {"rec", "kl_c", "kl_z"} <= set(terms)
        expected = (
            expected + lc.w_rec * terms["rec"] + lc.gamma_c * terms["kl_c"] + lc.gamma_z * terms["kl_z"]
        )
    else:
        assert "rec" not in terms
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_simclr_infonce_prefers_matching_views():
    """Identical views give a lower InfoNCE than views paired with the wrong sample."""
    torch.manual_seed(0)
    m = make("simclr", (1, 16, 16))
    x = tiny_images(8)
    same = m.loss_terms(x, x)[1]["infonce"]
    mismatched = m.loss_terms(x, torch.roll(x, 1, 0))[1]["infonce"]
    assert same < mismatched


# ------------------------------------------------------------------------------------------------
# Harmony
# ------------------------------------------------------------------------------------------------
def blob(size: int = 16, centre=(0.25, -0.1), width: float = 0.12) -> torch.Tensor:
    ax = (2 * torch.arange(size) + 1) / size - 1
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    return torch.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / width)[None, None]


def test_harmony_transform_path_is_geometry_warp():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    k = torch.tensor([[0.3, 1.0, -2.0], [-1.2, 0.0, 0.5], [2.0, -3.0, 0.0]])
    m = make("harmony", (1, 16, 16))
    expected = warp(x, rotation_matrix_2d(k[:, 0]), k[:, 1:])
    torch.testing.assert_close(m.transform(x, k), expected)
    # With scale the matrix is exp(log s) * R.
    ms = make("harmony", (1, 16, 16), params={"scale": True})
    ks = torch.cat([k, torch.log(torch.tensor([[1.2], [0.9], [1.0]]))], dim=1)
    expected = warp(x, torch.tensor([1.2, 0.9, 1.0])[:, None, None] * rotation_matrix_2d(k[:, 0]), k[:, 1:])
    torch.testing.assert_close(ms.transform(x, ks), expected)
    # 3D: ZYZ Euler angles then a shift in voxels.
    v = torch.rand(2, 1, 8, 8, 8)
    k3 = torch.tensor([[0.3, -0.5, 1.0, 1.0, 0.0, -1.0], [0.0, 0.2, 0.0, 0.0, 2.0, 0.0]])
    m3 = make("harmony", (1, 8, 8, 8), "linear")
    torch.testing.assert_close(m3.transform(v, k3), warp(v, euler_zyz_to_matrix(k3[:, :3]), k3[:, 3:]))


def test_harmony_decode_is_the_inverse_pose():
    torch.manual_seed(0)
    m = make("harmony", (1, 32, 32))
    canonical = blob(32, centre=(0.1, 0.05))
    k = torch.tensor([[0.9, 3.0, -2.0]])
    posed = m.untransform(canonical, k)
    assert (posed - canonical).abs().max() > 0.2  # the pose moved the object ...
    back = m.transform(posed, k)
    assert (back - canonical).abs().max() < 0.05  # ... and T(., k) brings it back
    c = torch.randn(2, m.content_dim)
    kk = k.expand(2, 3)
    torch.testing.assert_close(m.decode(c, kk), m.untransform(m.generate(c), kk))


class _Constant(nn.Module):
    """A decoder that always outputs one image."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image = image

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.image.expand(c.shape[0], *self.image.shape[1:])


def test_harmony_siamese_loss_is_zero_for_a_perfect_match():
    """Encoder proposes exactly the transformation undoing the random copy, decoder the canonical image."""
    m = make("harmony", (1, 16, 16))
    x = blob(centre=(0.1, -0.05), width=0.03)  # tails far below float precision at the borders
    rot, shift = rotation_matrix_2d(torch.tensor([math.pi / 2])), torch.tensor([[2.0, -1.0]])
    xp = warp(x, rot, shift)  # quarter turn + whole-pixel shift: exact on the pixel grid
    inv_shift = -(rot.transpose(1, 2) @ shift.unsqueeze(-1)).squeeze(-1)
    k_perfect = torch.cat([torch.zeros(1, 3), torch.cat([torch.tensor([[-math.pi / 2]]), inv_shift], 1)])
    mu, logvar = torch.randn(1, m.content_dim).repeat(2, 1), torch.randn(1, m.content_dim).repeat(2, 1)
    m.decoder = _Constant(x)

    def terms_with(k):
        m.encode = lambda inp: Codes(mu, logvar, k, None)
        return m.siamese_terms(x, xp)

    perfect = terms_with(k_perfect)
    for key in ("rec", "rec_prime", "branch", "kl", "loss"):
        assert float(perfect[key]) < 1e-8, (key, float(perfect[key]))
    wrong = terms_with(torch.zeros(2, 3))  # the copy is left rotated: both image terms fire
    assert float(wrong["branch"]) > 1.0 and float(wrong["rec_prime"]) > 1.0


def slow_kl(mu1, lv1, mu2, lv2) -> float:
    total = 0.0
    for i in range(mu1.shape[0]):
        for j in range(mu1.shape[1]):
            v1, v2 = math.exp(float(lv1[i, j])), math.exp(float(lv2[i, j]))
            d = float(mu1[i, j] - mu2[i, j])
            total += 0.5 * (math.log(v2 / v1) + (v1 + d * d) / v2 - 1.0)
    return total / mu1.shape[0]


def test_harmony_loss_against_slow_reference():
    torch.manual_seed(0)
    b, d = 5, 4
    mu1, lv1, mu2, lv2 = (torch.randn(b, d, dtype=torch.float64) for _ in range(4))
    imgs = [torch.rand(b, 1, 6, 6, dtype=torch.float64) for _ in range(4)]
    terms = harmony_terms(*imgs, (mu1, lv1), (mu2, lv2), gamma=2.0)
    # The terms are computed in float32 (they run under autocast in training).
    assert float(terms["kl"]) == pytest.approx(slow_kl(mu1, lv1, mu2, lv2) / d, rel=1e-6)

    def slow_sse(a, c):
        return sum(float(((a[i] - c[i]) ** 2).sum()) for i in range(b)) / b

    x_z, x_k, xp_k, xp_z = imgs
    assert float(terms["rec"]) == pytest.approx(slow_sse(x_z, x_k), rel=1e-6)
    assert float(terms["branch"]) == pytest.approx(slow_sse(x_k, xp_k), rel=1e-6)
    assert float(terms["rec_prime"]) == pytest.approx(slow_sse(xp_z, xp_k), rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(
        2.0 * (slow_sse(x_z, x_k) + slow_sse(x_k, xp_k) + slow_sse(xp_z, xp_k))
        + slow_kl(mu1, lv1, mu2, lv2) / d,
        rel=1e-6,
    )
    # The KL is directional and zero only for equal posteriors.
    assert float(gaussian_kl_between(mu1, lv1, mu1, lv1).abs().max()) < 1e-12
    assert float(gaussian_kl_between(mu1, lv1, mu2, lv2).sum()) != pytest.approx(
        float(gaussian_kl_between(mu2, lv2, mu1, lv1).sum())
    )
    assert float(sum_squared_error(imgs[0], imgs[0])) == 0.0


def test_harmony_random_copy_ranges():
    torch.manual_seed(0)
    like = torch.zeros(1)
    k = make("harmony", (1, 16, 16), params={"scale": True}).random_parameters(2000, like)
    assert k.shape == (2000, 4)
    assert k[:, 0].abs().max() <= math.pi / 2 and k[:, 0].abs().max() > 1.4
    assert k[:, 1:3].abs().max() <= 3.0 and k[:, 1:3].abs().max() > 2.9
    scale = k[:, 3].exp()
    assert scale.min() >= 1.0 and scale.max() <= 1.5
    k3 = make("harmony", (1, 8, 8, 8), "linear").random_parameters(2000, like)
    assert k3.shape == (2000, 6) and k3[:, 3:].abs().max() <= 4.0 and k3[:, 3:].abs().max() > 3.9


def test_harmony_shift_bound():
    torch.manual_seed(0)
    m = make("harmony", (1, 16, 16), params={"shift_bound": 2.0})
    with torch.no_grad():
        m.encoder.heads.linear.bias[-3:] = torch.tensor([0.0, 50.0, -50.0])
    k = m.encode(torch.rand(4, 1, 16, 16)).z_mu
    assert k[:, 1:].abs().max() <= 2.0 and k[:, 1:].abs().max() > 1.99


# ------------------------------------------------------------------------------------------------
# SpatialVAE
# ------------------------------------------------------------------------------------------------
def test_pixel_grid_matches_the_warp_convention():
    eye2 = torch.eye(2, 3)[None]
    ref = F.affine_grid(eye2, [1, 1, 5, 7], align_corners=False).reshape(-1, 2)
    torch.testing.assert_close(pixel_grid((5, 7)), ref)
    eye3 = torch.eye(3, 4)[None]
    ref3 = F.affine_grid(eye3, [1, 1, 3, 4, 5], align_corners=False).reshape(-1, 3)
    torch.testing.assert_close(pixel_grid((3, 4, 5)), ref3)


class _Analytic(nn.Module):
    """An anisotropic Gaussian off the centre, as a function of coordinates (ignores c)."""

    def __init__(self, centre, widths):
        super().__init__()
        self.centre, self.widths = torch.tensor(centre), torch.tensor(widths)

    def forward(self, coords: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((coords - self.centre) ** 2 / self.widths).sum(-1, keepdim=True))


def inside(shape, rotation, shift=None) -> torch.Tensor:
    """Where ``warp`` samples only inside the array (no zero padding): the comparable pixels."""
    return warp(torch.ones(shape), rotation, shift) > 0.9999


def test_spatial_vae_rotated_coordinates_rotate_the_image():
    m = make("spatial-vae", (1, 32, 32), "linear", content_dim=2, params={"dx_scale": 0.25})
    m.generator = _Analytic((0.3, -0.2), (0.05, 0.15))
    c = torch.zeros(3, 2)
    theta = torch.tensor([0.5, -1.3, 2.5])
    rot = rotation_matrix_2d(theta)
    base = m.decode(c, torch.zeros(3, 3))
    rotated = m.decode(c, torch.stack([theta, torch.zeros(3), torch.zeros(3)], 1))
    # Same object, rotated: equal to the warp of the unrotated render up to bilinear interpolation
    # (compared where the warp reads inside the image; outside it pads with zeros).
    assert (rotated - base).abs().max() > 0.5
    mask = inside(base.shape, rot)
    assert ((rotated - rotate_2d(base, theta)).abs() * mask).max() < 0.05
    assert ((rotated - rotate_2d(base, -theta)).abs() * inside(base.shape, rot.transpose(1, 2))).max() > 0.3
    # Translation latents move the object by dx_scale * dt half-widths, i.e. * size / 2 pixels.
    dt = torch.tensor([[1.0, -0.5], [0.0, 2.0], [-1.0, 0.0]])
    eye = torch.eye(2).expand(3, 2, 2)
    shifted = m.decode(c, torch.cat([torch.zeros(3, 1), dt], 1))
    mask = inside(base.shape, eye, 0.25 * dt * 16)
    assert ((shifted - warp(base, eye, 0.25 * dt * 16)).abs() * mask).max() < 1e-5  # whole pixels: exact
    # Rotation then shift, as warp composes them.
    both = m.decode(c, torch.cat([theta[:, None], dt], 1))
    mask = inside(base.shape, rot, 0.25 * dt * 16)
    assert ((both - warp(base, rot, 0.25 * dt * 16)).abs() * mask).max() < 0.05


def test_spatial_vae_3d_coordinates_rotate_the_volume():
    m = make("spatial-vae", (1, 16, 16, 16), "linear", content_dim=2)
    m.generator = _Analytic((0.2, -0.1, 0.1), (0.15, 0.25, 0.2))
    angles = torch.tensor([[0.4, -0.6, 1.1]])
    rot = euler_zyz_to_matrix(angles)
    base = m.decode(torch.zeros(1, 2), torch.zeros(1, 6))
    rotated = m.decode(torch.zeros(1, 2), torch.cat([angles, torch.zeros(1, 3)], 1))
    assert (rotated - base).abs().max() > 0.5
    assert ((rotated - warp(base, rot)).abs() * inside(base.shape, rot)).max() < 0.07  # trilinear error
    wrong = rot.transpose(1, 2)  # the opposite convention is far off
    assert ((rotated - warp(base, wrong)).abs() * inside(base.shape, wrong)).max() > 0.3


def test_move_coordinates_is_inverse_pose():
    g = pixel_grid((4, 4))
    rot = rotation_matrix_2d(torch.tensor([0.7]))
    t = torch.tensor([[0.2, -0.1]])
    q = move_coordinates(g, rot, t)[0]
    # q = R^T (p - t)  <=>  p = R q + t
    torch.testing.assert_close((rot[0] @ q.T).T + t, g)


def test_spatial_vae_elbo_terms():
    torch.manual_seed(0)
    m = make("spatial-vae", (1, 16, 16), params={"theta_prior": 0.7})
    assert m.likelihood == "bernoulli"
    assert make("spatial-vae", (1, 16, 16), "linear").likelihood == "gaussian"
    mu, lv = torch.randn(5, 1, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * lv).exp()),
        torch.distributions.Normal(0.0, torch.tensor(0.7, dtype=torch.float64)),
    )
    assert float(m.rotation_kl(mu, lv)) == pytest.approx(float(ref.sum(-1).mean()), rel=1e-9)
    out, x = torch.randn(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    bce = F.binary_cross_entropy(torch.sigmoid(out), x, reduction="sum") / 3
    assert float(m.neg_log_likelihood(out, x)) == pytest.approx(float(bce), rel=1e-4)
    g = make("spatial-vae", (1, 16, 16), "linear", params={"noise_std": 0.5})
    assert float(g.neg_log_likelihood(out, x)) == pytest.approx(
        float(0.5 * ((out - x) ** 2).sum() / 0.25 / 3), rel=1e-5
    )
    with torch.no_grad():
        terms = m.elbo_terms(tiny_images(4))
    total = terms["rec"] + terms["kl_c"] + terms["kl_rot"] + terms["kl_shift"]
    assert float(terms["loss"]) == pytest.approx(float(total))
    # decode = sigmoid(render) for images in [0, 1]
    c, z = torch.randn(2, m.content_dim), torch.randn(2, 3)
    torch.testing.assert_close(m.decode(c, z), torch.sigmoid(m.render(c, z)))


# ------------------------------------------------------------------------------------------------
# Figures (the CLI runs are in tests/integration/test_cli_simclr_harmony_spatial_vae.py)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["simclr-gen", "harmony", "spatial-vae"])
def test_transfer_grid_decodes_content_with_other_poses(name, tmp_path):
    from dualcontrast.evaluation.figures import transfer_grid

    torch.manual_seed(0)
    m = make(name, (1, 16, 16))
    images = tiny_images(5).numpy()
    grid = transfer_grid(m, images[:3], images[3:], tmp_path / "grid.png")
    assert grid.shape == (2, 3, 1, 16, 16) and (tmp_path / "grid.png").exists()
