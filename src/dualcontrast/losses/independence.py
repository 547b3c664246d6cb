"""Statistical independence of two codes over a batch: the squared cross-correlation."""

from __future__ import annotations

import torch


def cross_correlation_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean over every pair of dimensions ``(i, j)`` of ``corr(a[:, i], b[:, j])**2`` across the
    batch. ``(N, d_a), (N, d_b) -> ()``, in ``[0, 1]``.

    The XCov penalty of Cheung et al. (2014, "Discovering hidden factors of variation in deep
    networks") on Pearson correlations rather than covariances, so that shrinking a code does not
    lower it. 0 when no content dimension is linearly related to any transformation dimension;
    a factor read linearly from both codes raises it. ``eps`` is added to each dimension's
    variance (as batch norm does), so a dimension constant over the batch contributes ~0.
    """
    a = a - a.mean(0)
    b = b - b.mean(0)
    a = a / (a.pow(2).mean(0) + eps).sqrt()
    b = b / (b.pow(2).mean(0) + eps).sqrt()
    corr = a.T @ b / a.shape[0]
    return corr.pow(2).mean()
