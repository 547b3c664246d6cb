"""Decoders p(x | c, z): the reference fully connected decoder and a conv-transpose one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .encoders import _activation


def _output(name: str) -> nn.Module:
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "linear":
        return nn.Identity()
    raise ValueError(f"unknown output activation {name!r} (use 'sigmoid' or 'linear')")


class MLPDecoder(nn.Module):
    """Fully connected decoder over ``[z, c]``.

    With ``input_hidden`` set, c and z first pass through their OWN Linear layer (the
    reference scripts reuse one layer for both, a bug noted in METHOD.md) and are then
    concatenated; with ``input_hidden=None`` the codes are concatenated directly (LineMod).
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        content_dim: int,
        transform_dim: int,
        *,
        input_hidden: int | None = 256,
        hidden: Sequence[int] = (512, 512, 512),
        activation: str = "relu",
        output: str = "sigmoid",
    ):
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.act = _activation(activation)
        if input_hidden is not None:
            self.z_in: nn.Module | None = nn.Linear(transform_dim, input_hidden)
            self.c_in: nn.Module | None = nn.Linear(content_dim, input_hidden)
            width = 2 * input_hidden
        else:
            self.z_in = self.c_in = None
            width = transform_dim + content_dim
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            width = h
        layers += [nn.Linear(width, math.prod(self.sample_shape)), _output(output)]
        self.body = nn.Sequential(*layers)

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.z_in is not None and self.c_in is not None:
            h = torch.cat([self.act(self.z_in(z)), self.act(self.c_in(c))], dim=-1)
        else:
            h = torch.cat([z, c], dim=-1)
        return self.body(h).view(-1, *self.sample_shape)


class ConvTransposeDecoder(nn.Module):
    """Linear -> reshape -> stride-2 transposed convolutions -> centre crop, 2D or 3D.

    A much smaller alternative to the 3D reference MLP decoder (whose last layer alone holds
    ~164M weights for 32^3): each up-sampling doubles the size, starting from
    ``ceil(size / 2**len(channels))``, and the result is cropped to the sample size.
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        content_dim: int,
        transform_dim: int,
        *,
        channels: Sequence[int] = (128, 64, 32),
        activation: str = "leaky_relu",
        output: str = "linear",
    ):
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        dims = len(sample_shape) - 1
        size = max(sample_shape[1:])
        self.base = math.ceil(size / 2 ** len(channels))
        self.dims = dims
        self.channels0 = channels[0]
        self.fc = nn.Sequential(
            nn.Linear(content_dim + transform_dim, channels[0] * self.base**dims), _activation(activation)
        )
        tconv = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        layers: list[nn.Module] = []
        outs = [*list(channels[1:]), sample_shape[0]]
        for i, (cin, cout) in enumerate(zip(channels, outs, strict=True)):
            layers.append(tconv(cin, cout, 4, 2, 1))
            if i < len(outs) - 1:
                layers.append(_activation(activation))
        layers.append(_output(output))
        self.body = nn.Sequential(*layers)

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, c], dim=-1)).view(-1, self.channels0, *[self.base] * self.dims)
        out = self.body(h)
        slices = [slice(None), slice(None)]
        for got, want in zip(out.shape[2:], self.sample_shape[1:], strict=True):
            start = (got - want) // 2
            slices.append(slice(start, start + want))
        return out[tuple(slices)]
