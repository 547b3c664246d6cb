"""Convolutional encoders mapping a sample to the Gaussian posteriors of c and z.

Every encoder returns ``(c_mu, c_logvar, z_mu, z_logvar)``; ``logvar`` is the log of the
variance (the reference scripts mix log-variance and log-sigma; see METHOD.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class GaussianHeads(nn.Module):
    """Mean and log-variance of c and z from one feature vector.

    One Linear layer computes all four heads; it is the reference's four separate Linear
    layers with their weights stacked, so one matmul instead of four.
    """

    def __init__(self, features: int, content_dim: int, transform_dim: int):
        super().__init__()
        self.content_dim = content_dim
        self.transform_dim = transform_dim
        self.linear = nn.Linear(features, 2 * content_dim + 2 * transform_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dc, dz = self.content_dim, self.transform_dim
        return tuple(self.linear(h).split([dc, dc, dz, dz], dim=-1))


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    raise ValueError(f"unknown activation {name!r}")


def _conv_trunk(
    sample_shape: Sequence[int],
    channels: Sequence[int],
    kernel: int,
    stride: int,
    padding: int,
    norm: str,
    activation: str,
    head_channels: Sequence[int],
    head_kernel: int,
) -> tuple[nn.Sequential, int]:
    """The strided conv stack, flattened, and its number of output features."""
    dims = len(sample_shape) - 1
    if dims not in (2, 3):
        raise ValueError(f"sample shape must be (C, H, W) or (C, D, H, W), got {tuple(sample_shape)}")
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    inorm = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d
    layers: list[nn.Module] = []
    in_ch = sample_shape[0]
    size = min(sample_shape[1:])
    for out_ch in channels:
        layers.append(conv(in_ch, out_ch, kernel, stride, padding))
        size = (size + 2 * padding - kernel) // stride + 1
        if size < 1:
            raise ValueError(f"input {tuple(sample_shape)} is too small for {len(channels)} stride-{stride} convs")
        # Instance norm of a single pixel is identically zero, so small inputs skip it there.
        if norm == "instance" and size > 1:
            layers.append(inorm(out_ch))
        elif norm not in ("instance", "none"):
            raise ValueError(f"unknown norm {norm!r}")
        layers.append(_activation(activation))
        in_ch = out_ch
    for i, out_ch in enumerate(head_channels):
        k = head_kernel if i == 0 else 1
        layers += [conv(in_ch, out_ch, k, 1, 0), _activation(activation)]
        in_ch = out_ch
    layers.append(nn.Flatten())
    trunk = nn.Sequential(*layers)
    with torch.no_grad():
        n_features = trunk(torch.zeros(1, *sample_shape)).shape[1]
    return trunk, n_features


class ConvEncoder(nn.Module):
    """Strided conv stack (no pooling, as in the paper) + Gaussian heads, for 2D or 3D input.

    The 2D MNIST reference is ``channels=(16, 32, 64), kernel=5, stride=2, padding=1,
    norm="instance", activation="relu"``; the 3D subtomogram reference adds a ``k4 s1`` conv to
    512 channels and a 1x1 conv to 1024 (``head_channels=(512, 1024)``) with LeakyReLU, no norm.

    ``split=True`` gives c and z each their own conv stack (twice the encoder's compute). The
    reference shares one stack and splits only the heads, so every feature that serves the
    reconstruction is one linear map away from both codes; with separate stacks identity can
    leave z (METHOD.md: D(c|z) 0.89 -> 0.74 on subtomograms).
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        content_dim: int,
        transform_dim: int,
        *,
        channels: Sequence[int] = (16, 32, 64),
        kernel: int = 5,
        stride: int = 2,
        padding: int = 1,
        norm: str = "instance",
        activation: str = "relu",
        head_channels: Sequence[int] = (),
        head_kernel: int = 4,
        split: bool = False,
    ):
        super().__init__()
        spec = (sample_shape, channels, kernel, stride, padding, norm, activation, head_channels, head_kernel)
        self.features, n_features = _conv_trunk(*spec)
        self.split = split
        if split:
            self.z_features, n_z = _conv_trunk(*spec)
            self.heads = GaussianHeads(n_features, content_dim, 0)
            self.z_heads = GaussianHeads(n_z, 0, transform_dim)
        else:
            self.heads = GaussianHeads(n_features, content_dim, transform_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.split:
            return self.heads(self.features(x))
        c_mu, c_logvar, _, _ = self.heads(self.features(x))
        _, _, z_mu, z_logvar = self.z_heads(self.z_features(x))
        return c_mu, c_logvar, z_mu, z_logvar
