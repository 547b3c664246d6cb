"""Random transformations T used to build contrastive pairs ``(x, T(x))``.

Every transformation draws its parameters independently PER SAMPLE (the reference scripts
apply one torchvision ``RandomAffine`` draw to a whole batch, which is a bug) and works on
2D ``(N, C, H, W)`` batches; rotation, translation, scale, blur and contrast also work on 3D
``(N, C, D, H, W)`` batches. Randomness comes from torch's global generator on the batch's
device, so checkpoints that store RNG states resume bit-for-bit.

Choose by config, e.g. ``transform: {name: rotation, max_angle: 90}`` or
``transform: {name: compose, parts: [{name: rotation}, {name: blur, max_sigma: 1.0}]}``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..geometry import euler_zyz_to_matrix, random_rotation_3d, rotation_matrix_2d
from ..registry import Registry
from .geometry import warp

TRANSFORMS: Registry[type[PairTransform]] = Registry("transform")


def _uniform(n: int, low: float, high: float, like: torch.Tensor, dims: int = 0) -> torch.Tensor:
    shape = (n,) if dims == 0 else (n, dims)
    return low + (high - low) * torch.rand(shape, device=like.device, dtype=like.dtype)


def _spatial_dims(x: torch.Tensor) -> int:
    if x.dim() not in (4, 5):
        raise ValueError(f"expected (N, C, H, W) or (N, C, D, H, W), got shape {tuple(x.shape)}")
    return x.dim() - 2


class PairTransform(ABC):
    """A random transformation applied independently to each sample of a batch."""

    name = "base"

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return a transformed copy of ``x`` with fresh random parameters per sample."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


@TRANSFORMS.register("rotation")
class Rotation(PairTransform):
    """2D: angle ~ U(-max_angle, max_angle) degrees. 3D: uniform on SO(3) (``so3="uniform"``)
    or the reference scripts' three independent ZYZ Euler angles in U(-max_angle, max_angle)
    (``so3="euler"``)."""

    name = "rotation"

    def __init__(self, max_angle: float = 90.0, so3: str = "uniform", mode: str = "bilinear"):
        if so3 not in ("uniform", "euler"):
            raise ConfigError(f"transform.so3 must be 'uniform' or 'euler', got {so3!r}")
        self.max_angle = float(max_angle)
        self.so3 = so3
        self.mode = mode

    def matrices(self, n: int, dims: int, like: torch.Tensor) -> torch.Tensor:
        a = math.radians(self.max_angle)
        if dims == 2:
            return rotation_matrix_2d(_uniform(n, -a, a, like))
        if self.so3 == "uniform":
            return random_rotation_3d(n, device=like.device, dtype=like.dtype)
        return euler_zyz_to_matrix(_uniform(n, -a, a, like, dims=3))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dims = _spatial_dims(x)
        return warp(x, self.matrices(x.shape[0], dims, x), mode=self.mode)


@TRANSFORMS.register("translation")
class Translation(PairTransform):
    """Shift by U(-max_shift, max_shift) pixels along every axis, zero padding."""

    name = "translation"

    def __init__(self, max_shift: float = 4.0):
        self.max_shift = float(max_shift)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dims = _spatial_dims(x)
        n = x.shape[0]
        eye = torch.eye(dims, device=x.device, dtype=x.dtype).expand(n, dims, dims)
        return warp(x, eye, _uniform(n, -self.max_shift, self.max_shift, x, dims=dims))


@TRANSFORMS.register("scale")
class Scale(PairTransform):
    """Isotropic zoom by a factor ~ U(min_scale, max_scale) about the centre."""

    name = "scale"

    def __init__(self, min_scale: float = 0.7, max_scale: float = 1.3):
        if not 0 < min_scale <= max_scale:
            raise ConfigError(
                f"transform scale range must satisfy 0 < min <= max, got {min_scale}, {max_scale}"
            )
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dims = _spatial_dims(x)
        s = _uniform(x.shape[0], self.min_scale, self.max_scale, x)
        m = s[:, None, None] * torch.eye(dims, device=x.device, dtype=x.dtype)
        return warp(x, m)


@TRANSFORMS.register("blur")
class Blur(PairTransform):
    """Gaussian blur with sigma ~ U(0, max_sigma) pixels, drawn per sample."""

    name = "blur"

    def __init__(self, max_sigma: float = 1.5):
        self.max_sigma = float(max_sigma)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dims = _spatial_dims(x)
        n, c = x.shape[:2]
        sigma = _uniform(n, 1e-3, self.max_sigma, x).clamp_min(1e-3)
        radius = max(1, math.ceil(3 * self.max_sigma))
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        k = (k / k.sum(-1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, K)
        # Depthwise separable convolution: each (sample, channel) gets its own kernel.
        out = x.reshape(1, n * c, *x.shape[2:])
        for axis in range(dims):
            shape = [n * c, 1] + [1] * dims
            shape[2 + axis] = k.shape[1]
            pad = [0] * (2 * dims)
            pad[2 * (dims - 1 - axis)] = radius
            pad[2 * (dims - 1 - axis) + 1] = radius
            conv = F.conv2d if dims == 2 else F.conv3d
            out = conv(F.pad(out, pad), k.reshape(shape), groups=n * c)
        return out.reshape(x.shape)


@TRANSFORMS.register("contrast")
class Contrast(PairTransform):
    """Scale deviations from each sample's mean by a factor ~ U(min_factor, max_factor)."""

    name = "contrast"

    def __init__(self, min_factor: float = 0.5, max_factor: float = 1.5):
        self.min_factor = float(min_factor)
        self.max_factor = float(max_factor)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _spatial_dims(x)
        f = _uniform(x.shape[0], self.min_factor, self.max_factor, x).reshape(-1, *[1] * (x.dim() - 1))
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        return mean + f * (x - mean)


def _require_rgb(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ConfigError(f"transform {name!r} needs RGB images (N, 3, H, W), got shape {tuple(x.shape)}")


@TRANSFORMS.register("saturation")
class Saturation(PairTransform):
    """Blend each RGB image with its grey version by a factor ~ U(min_factor, max_factor)."""

    name = "saturation"

    def __init__(self, min_factor: float = 0.0, max_factor: float = 2.0):
        self.min_factor = float(min_factor)
        self.max_factor = float(max_factor)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _require_rgb(x, self.name)
        w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).reshape(1, 3, 1, 1)
        grey = (x * w).sum(1, keepdim=True)
        f = _uniform(x.shape[0], self.min_factor, self.max_factor, x).reshape(-1, 1, 1, 1)
        return (grey + f * (x - grey)).clamp(0, 1)


@TRANSFORMS.register("hue")
class Hue(PairTransform):
    """Rotate the chroma of each RGB image in YIQ space by U(-max_shift, max_shift) turns."""

    name = "hue"

    def __init__(self, max_shift: float = 0.5):
        self.max_shift = float(max_shift)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _require_rgb(x, self.name)
        to_yiq = torch.tensor(
            [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
            device=x.device,
            dtype=x.dtype,
        )
        from_yiq = torch.linalg.inv(to_yiq)
        h = 2 * math.pi * _uniform(x.shape[0], -self.max_shift, self.max_shift, x)
        c, s = torch.cos(h), torch.sin(h)
        o, i = torch.zeros_like(h), torch.ones_like(h)
        rot = torch.stack([i, o, o, o, c, -s, o, s, c], -1).reshape(-1, 3, 3)
        m = from_yiq @ rot @ to_yiq  # (N, 3, 3)
        return torch.einsum("nij,njhw->nihw", m, x).clamp(0, 1)


@TRANSFORMS.register("compose")
class Compose(PairTransform):
    """Apply several transformations in order."""

    name = "compose"

    def __init__(self, parts: list[dict[str, Any]]):
        if not parts:
            raise ConfigError("transform 'compose' needs a non-empty 'parts' list")
        self.parts = [build_transform(p) for p in parts]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.parts:
            x = p(x)
        return x

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "parts": [p.describe() for p in self.parts]}


def build_transform(spec: dict[str, Any] | str) -> PairTransform:
    """Build a transformation from ``{"name": ..., **params}`` (or just a name)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    params = dict(spec)
    name = params.pop("name", None)
    if name is None:
        raise ConfigError("a transform needs a 'name'")
    cls = TRANSFORMS.get(name)
    try:
        return cls(**params)
    except TypeError as e:
        raise ConfigError(f"bad parameters for transform {name!r}: {e}") from None
