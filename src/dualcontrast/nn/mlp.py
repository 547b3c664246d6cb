"""Fully connected inference network: the default encoder of the SpatialVAE and 2D Harmony code.

Both public implementations flatten the image and use a tanh MLP (SpatialVAE: 2 layers of 500;
Harmony 2D: 512-512-512-512-128), then read the posterior parameters off one linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .encoders import GaussianHeads

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (``tanh``, ``relu``, ``leaky_relu``)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}") from None


class MLPEncoder(nn.Module):
    """``(B, C, *spatial) -> (c_mu, c_logvar, z_mu, z_logvar)`` through a flattened MLP.

    ``hidden`` lists the widths of the hidden layers (at least one).
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        content_dim: int,
        transform_dim: int,
        *,
        hidden: Sequence[int] = (500, 500),
        activation: str = "tanh",
    ):
        super().__init__()
        if not hidden:
            raise ValueError("an MLP encoder needs at least one hidden layer")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(sample_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), make_activation(activation)]
            width = h
        self.features = nn.Sequential(*layers)
        self.heads = GaussianHeads(width, content_dim, transform_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads(self.features(x))
