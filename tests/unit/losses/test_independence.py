"""The c-z cross-correlation penalty against a slow reference, and on codes known to be
independent, duplicated, rescaled or constant."""

import numpy as np
import pytest
import torch

from dualcontrast.losses import cross_correlation_loss


def slow_cross_correlation(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    total = 0.0
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            total += np.corrcoef(a[:, i], b[:, j])[0, 1] ** 2
    return total / (a.shape[1] * b.shape[1])


def test_matches_squared_pearson_correlations():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 5, generator=g, dtype=torch.float64)
    b = torch.randn(64, 3, generator=g, dtype=torch.float64) + a[:, :3] * torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    got = cross_correlation_loss(a, b, eps=0.0).item()
    assert got == pytest.approx(slow_cross_correlation(a, b), rel=1e-9)


def test_independent_codes_score_near_zero_and_duplicated_codes_high():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4000, 4, generator=g), torch.randn(4000, 6, generator=g)
    assert cross_correlation_loss(a, b).item() < 0.002  # chance level ~1/N
    # b holds a's dimensions (plus noise): each of a's 4 dimensions correlates ~1 with one of b's 6.
    dup = torch.cat([a, torch.randn(4000, 2, generator=g)], 1)
    assert cross_correlation_loss(a, dup).item() == pytest.approx(4 / 24, abs=0.01)


def test_rescaling_a_code_does_not_lower_it_and_a_constant_dimension_adds_nothing():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(200, 3, generator=g)
    b = a @ torch.randn(3, 3, generator=g) + 0.3 * torch.randn(200, 3, generator=g)
    base = cross_correlation_loss(a, b)
    torch.testing.assert_close(cross_correlation_loss(a * 0.2, b * 50), base, rtol=1e-3, atol=0)
    const = torch.cat([b, torch.full((200, 1), 3.0)], 1)
    assert cross_correlation_loss(a, const).item() == pytest.approx(base.item() * 3 / 4, rel=1e-4)


def test_gradient_flows_to_both_codes():
    a = torch.randn(32, 4, requires_grad=True)
    b = (a.detach() @ torch.randn(4, 2)).requires_grad_(True)
    cross_correlation_loss(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
