"""Loss terms against slow hand-written references."""

import math

import pytest
import torch

from dualcontrast.losses import (
    abs_cosine,
    cosine_distance_loss,
    cosine_similarity_loss,
    derangement,
    gaussian_kl,
    info_nce,
    kl_term,
    nearest_other,
    reconstruction_mse,
    reference_kl,
)


def slow_kl(mu, logvar):
    out = []
    for m_row, lv_row in zip(mu.tolist(), logvar.tolist(), strict=True):
        total = 0.0
        for m, lv in zip(m_row, lv_row, strict=True):
            var = math.exp(lv)
            # KL(N(m, var) || N(0, 1)) = 0.5 (var + m^2 - 1 - log var)
            total += 0.5 * (var + m * m - 1.0 - math.log(var))
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("b,d", [(1, 1), (4, 3), (7, 10)])
def test_gaussian_kl_matches_slow_reference_and_torch(b, d):
    g = torch.Generator().manual_seed(b * 100 + d)
    mu = torch.randn(b, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(b, d, generator=g, dtype=torch.float64)
    got = gaussian_kl(mu, logvar)
    torch.testing.assert_close(got, slow_kl(mu, logvar))
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(got, torch.distributions.kl_divergence(q, p).sum(-1))


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zero = torch.zeros(3, 5)
    assert torch.allclose(gaussian_kl(zero, zero), torch.zeros(3))
    assert (gaussian_kl(torch.randn(3, 5), torch.randn(3, 5)) > 0).all()


def test_reference_kl_is_the_log_sigma_formula():
    mu, s = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    # With s = log sigma, the true KL is 0.5 (sigma^2 + mu^2 - 1) - s: the reference formula.
    expected = (0.5 * (torch.exp(2 * s) + mu**2 - 1) - s).sum(-1)
    torch.testing.assert_close(reference_kl(mu, s), expected)


def test_kl_term_normalisation():
    mu, lv = torch.randn(8, 4), torch.randn(8, 4)
    torch.testing.assert_close(kl_term(mu, lv, normalizer=784.0), gaussian_kl(mu, lv).mean() / 784.0)


def test_reconstruction_mse_is_elementwise_mean():
    a, b = torch.rand(3, 1, 5, 5), torch.rand(3, 1, 5, 5)
    assert torch.isclose(reconstruction_mse(a, b), ((a - b) ** 2).sum() / a.numel())


def slow_abs_cos(a, b):
    out = []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        dot = sum(p * q for p, q in zip(x, y, strict=True))
        nx = math.sqrt(sum(p * p for p in x))
        ny = math.sqrt(sum(q * q for q in y))
        out.append(abs(dot) / max(nx * ny, 1e-6))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("b,d", [(2, 2), (5, 10), (16, 50)])
def test_cosine_losses_match_slow_reference(b, d):
    g = torch.Generator().manual_seed(b + d)
    a = torch.randn(b, d, generator=g, dtype=torch.float64)
    c = torch.randn(b, d, generator=g, dtype=torch.float64)
    ref = slow_abs_cos(a, c)
    torch.testing.assert_close(abs_cosine(a, c), ref)
    torch.testing.assert_close(cosine_similarity_loss(a, c), ref.mean())
    torch.testing.assert_close(cosine_distance_loss(a, c), (1 - ref).mean())


def test_cosine_losses_on_known_pairs():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    parallel = torch.tensor([[-3.0, 0.0], [0.0, 1.0]])  # anti-parallel counts as aligned (|cos|)
    orthogonal = torch.tensor([[0.0, 1.0], [5.0, 0.0]])
    assert cosine_distance_loss(a, parallel).item() == pytest.approx(0.0)
    assert cosine_similarity_loss(a, parallel).item() == pytest.approx(1.0)
    assert cosine_similarity_loss(a, orthogonal).item() == pytest.approx(0.0)
    assert cosine_distance_loss(a, orthogonal).item() == pytest.approx(1.0)


def test_cosine_similarity_margin_leaves_pairs_below_it_alone():
    """Known |cos| 1, 0.6 and 0: with margin 0.5 only the excess over 0.5 counts (0.5, 0.1, 0)."""
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[-2.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert cosine_similarity_loss(a, b, margin=0.5).item() == pytest.approx((0.5 + 0.1 + 0.0) / 3)
    assert cosine_similarity_loss(a, b).item() == pytest.approx((1.0 + 0.6 + 0.0) / 3)
    # A pair under the margin gets no gradient; the same pair above it does.
    for margin, pushed in [(0.9, False), (0.7, True)]:
        c = torch.tensor([[0.8, 0.6]], requires_grad=True)  # |cos| 0.8 with a[0]
        cosine_similarity_loss(a[:1], c, margin=margin).backward()
        assert bool(c.grad.abs().max() > 0) is pushed


@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_derangement_has_no_fixed_point_and_is_a_permutation(n):
    torch.manual_seed(n)
    for _ in range(50):
        p = derangement(n)
        assert sorted(p.tolist()) == list(range(n))
        assert (p != torch.arange(n)).all()


def test_derangement_pairs_uniformly_with_other_samples():
    torch.manual_seed(0)
    n, trials = 5, 4000
    counts = torch.zeros(n, n)
    for _ in range(trials):
        p = derangement(n)
        counts[torch.arange(n), p] += 1
    off = counts[~torch.eye(n, dtype=bool)] / trials
    assert torch.allclose(off, torch.full_like(off, 1 / (n - 1)), atol=0.03)


@pytest.mark.parametrize("b", [2, 7])
def test_nearest_other_matches_slow_reference(b):
    torch.manual_seed(b)
    a, c = torch.randn(b, 5), torch.randn(b, 5)
    want = [max((j for j in range(b) if j != i), key=lambda j: abs(float(abs_cosine(a[i:i + 1], c[j:j + 1]))))
            for i in range(b)]  # fmt: skip
    assert nearest_other(a, c).tolist() == want


def test_nearest_other_skips_the_own_pair_and_reads_antiparallel_as_near():
    """Row i of b is a_i's own view: never chosen, even when it is the closest; |cos| makes -v as
    near as v, the convention of the pair terms."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    b = torch.tensor([[1.0, 0.0], [-1.0, -0.05], [0.0, 1.0]])
    assert nearest_other(a, b).tolist() == [1, 2, 1]


def test_derangement_of_one_sample_is_an_error():
    with pytest.raises(ValueError):
        derangement(1)


def slow_info_nce(a, b, t):
    z = torch.cat([a, b])
    z = z / z.norm(dim=1, keepdim=True)
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        logits = [float(z[i] @ z[j]) / t for j in range(2 * n) if j != i]
        others = [j for j in range(2 * n) if j != i]
        log_den = math.log(sum(math.exp(v) for v in logits))
        total += -(logits[others.index(pos)] - log_den)
    return total / (2 * n)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_info_nce_matches_slow_reference(t):
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    assert info_nce(a, b, t).item() == pytest.approx(slow_info_nce(a, b, t), rel=1e-9)


def test_info_nce_is_low_for_matching_views():
    a = torch.eye(8)
    assert info_nce(a, a, 0.1) < info_nce(a, torch.roll(a, 1, 0), 0.1)
