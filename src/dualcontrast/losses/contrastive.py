"""Contrastive pair losses on codes: absolute-cosine similarity/distance and InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def abs_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``|cos(a_i, b_i)|`` row by row. ``(B, d), (B, d) -> (B,)``."""
    return F.cosine_similarity(a, b, dim=-1, eps=eps).abs()


def cosine_similarity_loss(a: torch.Tensor, b: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Push pairs to orthogonal: ``mean_i max(0, |cos(a_i, b_i)| - margin)``. ``(B, d), (B, d) -> ()``.

    ``margin`` 0 is the published term. The reference scripts divide the sum by ``B * d`` instead
    of ``B`` (an extra ``1/d``); that factor is a loss weight here (``loss.cosine_scale``), not
    hidden in the function.
    """
    cos = abs_cosine(a, b)
    return (cos - margin).clamp_min(0).mean() if margin else cos.mean()


def cosine_distance_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pull pairs to (anti)parallel: ``mean_i (1 - |cos(a_i, b_i)|)``. ``(B, d), (B, d) -> ()``."""
    return (1.0 - abs_cosine(a, b)).mean()


def nearest_other(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """For each row ``a_i``, the index ``j != i`` of the row of ``b`` with the largest ``|cos|``.
    ``(B, d), (B, d) -> (B,)`` (``b_i`` is excluded: row ``i`` of ``b`` is ``a_i``'s own pair)."""
    with torch.no_grad():
        sim = (F.normalize(a, dim=-1, eps=1e-6) @ F.normalize(b, dim=-1, eps=1e-6).T).abs()
        return sim.fill_diagonal_(-1.0).argmax(dim=1)


def derangement(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """A random permutation with no fixed point (``perm[i] != i``), for negative pairs.

    A uniform shift ``k in [1, n)`` composed with a random permutation ``p``:
    ``perm = p[(p^-1 + k) mod n]`` maps every ``i`` elsewhere and pairs every sample with a
    uniformly random other sample. ``n == 1`` has no derangement and raises.
    """
    if n < 2:
        raise ValueError("a negative pair needs at least 2 samples in the batch")
    p = torch.randperm(n, device=device)
    inv = torch.empty_like(p)
    inv[p] = torch.arange(n, device=device)
    k = torch.randint(1, n, (), device=device)
    return p[(inv + k) % n]


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE (NT-Xent) between two views. ``(B, d), (B, d) -> ()``.

    Row ``i`` of ``a`` and ``b`` are positives; all other ``2B - 2`` samples are negatives.
    """
    z = F.normalize(torch.cat([a, b]), dim=-1)
    logits = z @ z.T / temperature
    n = a.shape[0]
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(a.device)
    return F.cross_entropy(logits, targets)
