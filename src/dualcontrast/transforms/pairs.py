"""Random transformations T used to build contrastive pairs ``(x, T(x))``.

Every transformation draws its parameters independently PER SAMPLE (the reference scripts
apply one torchvision ``RandomAffine`` draw to a whole batch, which is a bug) and works on
2D ``(N, C, H, W)`` batches; rotation, translation, scale, blur, contrast and the non-rigid
elastic and hinge deformations also work on 3D ``(N, C, D, H, W)`` batches. Randomness comes from torch's global generator on the batch's
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


# -- non-rigid transformations (conformational change rather than pose) ---------------------------


def _pixel_grid(spatial: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Pixel centres relative to the array centre, in pixels. ``-> (*spatial, k)``, last axis ``(x, y[, z])``.

    The pixel-unit twin of the ``align_corners=False`` normalised grid of :mod:`.geometry`
    (normalised = pixels * 2 / size).
    """
    axes = [torch.arange(n, device=like.device, dtype=like.dtype) - (n - 1) / 2 for n in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], -1)


def _displace(x: torch.Tensor, source: torch.Tensor, mode: str) -> torch.Tensor:
    """``out(p) = x(source(p))``, ``source: (N, *spatial, k)`` in the pixels of :func:`_pixel_grid`, zero padding."""
    sizes = torch.tensor(x.shape[2:][::-1], device=x.device, dtype=x.dtype)
    grid = source * (2.0 / sizes)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


@TRANSFORMS.register("elastic")
class Elastic(PairTransform):
    """A smooth random deformation of low spatial frequency, up to ``max_displacement`` pixels.

    Each sample's displacement field (one per axis) is a random combination of the products of
    ``cos(pi m (i + 1/2) / n)`` along the axes, ``m = 0 .. modes - 1`` (the constant term, a
    translation, left out; weights ``N(0, 1 / (1 + |m|^2))``, favouring the lowest frequencies),
    rescaled so its largest displacement is ``U(0, max_displacement)`` pixels. With the default 3
    modes the shortest wavelength is the box: the field bends and stretches the whole object,
    like a conformational change, without local ripples. 2D and 3D; compose with a rotation via
    ``{name: compose, parts: [{name: rotation}, {name: elastic}]}``.
    """

    name = "elastic"

    def __init__(self, max_displacement: float = 2.0, modes: int = 3, mode: str = "bilinear"):
        if max_displacement < 0:
            raise ConfigError(f"transform.max_displacement must be >= 0 pixels, got {max_displacement}")
        if not isinstance(modes, int) or modes < 2:
            raise ConfigError(f"transform.modes must be an integer >= 2, got {modes!r}")
        self.max_displacement = float(max_displacement)
        self.modes = modes
        self.mode = mode

    def displacement(self, n: int, spatial: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Random fields ``(n, *spatial, k)`` in pixels, components ``(x, y[, z])``."""
        k = len(spatial)
        m = torch.arange(self.modes, device=like.device, dtype=like.dtype)
        # One cosine table per array axis: (modes, size).
        tables = [torch.cos(math.pi * m[:, None] * (torch.arange(s, device=like.device, dtype=like.dtype) + 0.5) / s)
                  for s in spatial]
        orders = torch.cartesian_prod(*[m] * k).reshape(-1, k)[1:]  # (B, k), the constant term dropped
        basis = tables[0][orders[:, 0].long()]
        for axis in range(1, k):
            basis = basis[..., None] * tables[axis][orders[:, axis].long()].reshape(
                -1, *[1] * axis, spatial[axis]
            )
        std = 1.0 / (1.0 + orders.pow(2).sum(-1))
        coef = torch.randn(n, k, orders.shape[0], device=like.device, dtype=like.dtype) * std
        field = torch.einsum("nkb,b...->n...k", coef, basis)
        peak = field.norm(dim=-1).flatten(1).amax(1).clamp_min(1e-12)
        amplitude = _uniform(n, 0.0, self.max_displacement, like)
        return field * (amplitude / peak).reshape(-1, *[1] * (k + 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _spatial_dims(x)
        spatial = tuple(x.shape[2:])
        u = self.displacement(x.shape[0], spatial, x)
        return _displace(x, _pixel_grid(spatial, x) + u, self.mode)


@TRANSFORMS.register("hinge")
class Hinge(PairTransform):
    """A domain-hinge motion: one part of the object turns against the rest about an axis
    through a pivot.

    Per sample: a random plane through the pivot (a line in 2D) splits the box; the part on
    one side turns by ``U(-max_angle, max_angle)`` degrees about a random axis lying in that
    plane (2D: about the pivot), the other part stays. The pivot is the box centre
    (``pivot_radius: 0``, the default) or a point drawn uniformly in the disc / ball of
    ``pivot_radius`` x half the box about it: then the plane can cut off a limb or a domain at
    an off-centre joint (an elbow), not only halve the object. Turning the outer part or the
    inner one differ by a global rotation, which a composed rotation already spans. In between, the turn angle blends
    smoothly with the angle ``psi`` of a point from the plane, seen from the axis, over a wedge of
    ``blend_angle`` degrees: the deformation is continuous, and the sampling map is fold-free
    because ``max_angle * 0.75 / sin(blend_angle / 2) < 1`` is required. The frame (plane normal,
    in-plane direction, axis) is a uniform random rotation (:func:`.geometry.random_rotation_3d`);
    the turn inside it is :func:`.geometry.rotation_matrix_2d`.
    """

    name = "hinge"

    def __init__(
        self, max_angle: float = 15.0, blend_angle: float = 60.0, pivot_radius: float = 0.0, mode: str = "bilinear"
    ):
        if not 0 <= pivot_radius <= 1:
            raise ConfigError(f"transform.pivot_radius must be in [0, 1] (a fraction of half the box), got {pivot_radius}")
        if not 0 < blend_angle <= 180:
            raise ConfigError(f"transform.blend_angle must be in (0, 180] degrees, got {blend_angle}")
        if max_angle < 0 or math.radians(max_angle) * 0.75 / math.sin(math.radians(blend_angle) / 2) >= 1:
            raise ConfigError(
                f"transform.max_angle must be >= 0 and small enough for blend_angle {blend_angle:g} "
                f"(max_angle * 0.75 / sin(blend_angle / 2) < 1 rad keeps the warp fold-free), got {max_angle}"
            )
        self.max_angle = float(max_angle)
        self.blend_angle = float(blend_angle)
        self.pivot_radius = float(pivot_radius)
        self.mode = mode

    def source(self, n: int, spatial: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Where each output pixel samples the input: ``(n, *spatial, k)`` in pixels from the centre."""
        k = len(spatial)
        if k == 2:
            frame = rotation_matrix_2d(_uniform(n, 0.0, 2 * math.pi, like))
        else:
            frame = random_rotation_3d(n, device=like.device, dtype=like.dtype)
        theta = _uniform(n, -math.radians(self.max_angle), math.radians(self.max_angle), like)
        p = _pixel_grid(spatial, like).reshape(1, -1, k)
        pivot = None
        if self.pivot_radius > 0:  # drawn only then, so centred hinges keep their random stream
            direction = F.normalize(torch.randn(n, k, device=like.device, dtype=like.dtype), dim=-1)
            radius = self.pivot_radius * min(spatial) / 2 * torch.rand(n, 1, device=like.device, dtype=like.dtype) ** (1 / k)
            pivot = (direction * radius)[:, None, :]
            p = p - pivot
        # Coordinates in the frame: u[..., 0] along the plane normal, u[..., 1] in the plane, u[..., 2] the axis.
        u = p @ frame  # (n, P, k)
        in_plane = u[..., :2]
        sin_psi = in_plane[..., 0] / in_plane.norm(dim=-1).clamp_min(1e-6)
        s = (sin_psi / math.sin(math.radians(self.blend_angle) / 2)).clamp(-1, 1) * 0.5 + 0.5
        weight = s * s * (3 - 2 * s)  # smoothstep: 0 on the fixed half, 1 on the moving one
        # Sampling by the inverse turn moves the object's half by +theta.
        turn = rotation_matrix_2d(-theta[:, None] * weight)  # (n, P, 2, 2)
        turned = (turn @ in_plane[..., None]).squeeze(-1)
        u = torch.cat([turned, u[..., 2:]], -1)
        source = u @ frame.transpose(-1, -2)
        if pivot is not None:
            source = source + pivot
        return source.reshape(n, *spatial, k)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _spatial_dims(x)
        return _displace(x, self.source(x.shape[0], tuple(x.shape[2:]), x), self.mode)
