"""Built-in 2D data set ``shapes2d``: articulated shapes with ground truth for BOTH factors.

Every image shows one figure: a class-specific **body** with a jointed **arm** attached to it.

- **Content** (factor ``"content"``, int in ``[0, n_classes)``): the body shape, one of
  :data:`CLASS_NAMES` in order (disc, ring, square, triangle, cross, star, crescent, dumbbell);
  at least 2 and at most 8 classes, 5 by default.
- **Transformation state** (factor ``"transform"``, int in ``[0, n_states)``): a non-rigid
  conformation change shared by every class. The arm's upper part is rigidly fixed to the body;
  its forearm (ending in a round "hand") bends at the elbow by ``bend_angles(n_states)[state]``
  degrees, evenly spaced from 0 (straight) to 100 degrees. Bending changes the figure's shape,
  not its pose (the hand's distance from and direction relative to the body both change), so
  the state stays identifiable from the image under any rotation. Between 2 and 8 states, 4 by
  default. The bend moves a small part of the image, so states differ less than classes do.
- **Pose** (nuisance, stored as extra factors, not scored): a rotation uniform in
  ``[-max_angle, max_angle)`` degrees (full circle by default), a shift uniform in
  ``[-max_shift * size, max_shift * size]`` pixels per axis, and an isotropic scale uniform in
  ``[1 - scale_jitter, 1 + scale_jitter]``. Factors ``"angle"`` (degrees), ``"shift_x"``,
  ``"shift_y"`` (pixels) and ``"scale"`` follow the convention of
  :func:`dualcontrast.transforms.geometry.warp`: the canonical figure is scaled, rotated by
  :func:`~dualcontrast.geometry.rotation_matrix_2d` of the angle about the image
  centre, then shifted; ``x`` runs along the last array axis, ``y`` along H.

Rendering is analytic and vectorised (torch): each figure is a union of primitives described
by signed distance functions in the canonical frame (coordinates in ``[-1, 1]``, the figure
fits in a radius of about 0.76 around the rotation centre so no pose cuts it off). Each pixel
centre is mapped back to the canonical frame by the inverse pose, and its grey value is the
anti-aliased coverage ``clip(0.5 - d, 0, 1)`` with ``d`` the signed distance in pixels (a
one-pixel linear edge ramp). Images are ``(N, 1, size, size)`` float32 in ``[0, 1]`` (the figure
is 1, background 0); optional additive Gaussian noise of std ``noise`` is clipped back to
``[0, 1]``.

Splits: ``n_train_per_cell`` and ``n_test_per_cell`` samples for every (class, state) cell
(1000 and 200 by default: 20000 train and 4000 test images for 5 x 4 cells), shuffled. Train and
test come from two independent random streams spawned from ``seed``, so the same seed always gives
identical arrays and no sample appears in both. Nothing is cached on disk.

Parameters of :func:`make_shapes2d` (all optional): ``n_train_per_cell``, ``n_test_per_cell``,
``size`` (>= 16 pixels), ``n_classes``, ``n_states``, ``seed``, ``noise``, ``max_angle``,
``max_shift``, ``scale_jitter``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..geometry import rotation_matrix_2d
from .base import CONTENT, TRANSFORM, Dataset, DataSplits
from .loading import BUILTIN_DATASETS

logger = logging.getLogger(__name__)

CLASS_NAMES = ("disc", "ring", "square", "triangle", "cross", "star", "crescent", "dumbbell")
MAX_STATES = 8
MAX_BEND_DEGREES = 100.0

# Canonical figure layout (normalised units, the image spans [-1, 1]). The body sits left of
# the rotation centre and the arm points right, so the whole figure is roughly centred.
_BODY_CENTRE = (-0.2, 0.0)
_ELBOW = (0.34, 0.0)
_ARM_HALF_WIDTH = 0.06
_FOREARM_LENGTH = 0.32
_HAND_RADIUS = 0.1
# Points rendered per chunk (samples x pixels), to bound memory for large sizes.
_CHUNK_POINTS = 1 << 22

SdfFn = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Signed distance functions: ``q`` is ``(..., 2)`` canonical points, the result ``(...)``, negative
# inside. Arguments broadcast against ``q[..., 0]`` so parameters may be per sample.


def _disc(q: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    return (q - centre).norm(dim=-1) - radius


def _segment(q: torch.Tensor, a: torch.Tensor, b: torch.Tensor, half_width: float) -> torch.Tensor:
    """Capsule: points within ``half_width`` of the segment ``a``-``b``."""
    ab = b - a
    t = (((q - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (q - a - t.unsqueeze(-1) * ab).norm(dim=-1) - half_width


def _rect(
    q: torch.Tensor, centre: torch.Tensor, half: tuple[float, float], rounding: float, angle: float = 0.0
) -> torch.Tensor:
    """Rectangle of half sides ``half`` rotated by ``angle`` radians, corners rounded by ``rounding``."""
    local = (q - centre) @ rotation_matrix_2d(torch.tensor(angle, dtype=q.dtype))
    inner = torch.tensor(half, dtype=q.dtype) - rounding
    d = local.abs() - inner
    outside = d.clamp_min(0.0).norm(dim=-1)
    inside = d.max(dim=-1).values.clamp_max(0.0)
    return outside + inside - rounding


def _polygon(q: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Exact signed distance to a simple polygon ``(V, 2)`` (any winding, convex or not)."""
    dist = None
    inside = torch.zeros(q.shape[:-1], dtype=torch.bool)
    for i in range(vertices.shape[0]):
        a, b = vertices[i], vertices[(i + 1) % vertices.shape[0]]
        d = _segment(q, a, b, 0.0)
        dist = d if dist is None else torch.minimum(dist, d)
        # Crossing-number test: does a ray towards +x from q cross this edge?
        straddles = (a[1] > q[..., 1]) != (b[1] > q[..., 1])
        x_cross = a[0] + (q[..., 1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1] + 1e-12)
        inside ^= straddles & (q[..., 0] < x_cross)
    return torch.where(inside, -dist, dist)


def _radial_polygon(radii: list[float]) -> torch.Tensor:
    """Vertices at evenly spaced angles and the given distances from the body centre, the first
    at angle pi (pointing away from the arm). ``-> (len(radii), 2)``."""
    t = math.pi + 2 * math.pi * torch.arange(len(radii), dtype=torch.float32) / len(radii)
    r = torch.tensor(radii, dtype=torch.float32)[:, None]
    return r * torch.stack([torch.cos(t), torch.sin(t)], -1) + torch.tensor(_BODY_CENTRE)


def _body_functions() -> tuple[SdfFn, ...]:
    """One signed distance function per class, in :data:`CLASS_NAMES` order."""
    c = torch.tensor(_BODY_CENTRE)
    # Pointed bodies point away from the arm (vertex at angle pi) so the arm never meets a tip.
    triangle = _radial_polygon([0.40] * 3)
    star = _radial_polygon([0.42, 0.19] * 5)
    up, down = torch.tensor([0.0, 0.24]), torch.tensor([0.0, -0.24])
    return (
        lambda q: _disc(q, c, 0.34),
        lambda q: _disc(q, c, 0.28).abs() - 0.085,
        lambda q: _rect(q, c, (0.26, 0.26), 0.03),
        lambda q: _polygon(q, triangle),
        lambda q: torch.minimum(
            _rect(q, c, (0.37, 0.095), 0.02, math.pi / 4), _rect(q, c, (0.37, 0.095), 0.02, -math.pi / 4)
        ),
        lambda q: _polygon(q, star),
        lambda q: torch.maximum(_disc(q, c, 0.35), -_disc(q, c + torch.tensor([-0.17, 0.0]), 0.27)),
        lambda q: torch.minimum(
            torch.minimum(_disc(q, c + up, 0.17), _disc(q, c + down, 0.17)),
            _rect(q, c, (0.07, 0.24), 0.0),
        ),
    )


def bend_angles(n_states: int) -> np.ndarray:
    """Elbow bend (degrees) of each conformation state: ``(n_states,)`` evenly from 0 to 100."""
    _check_int("n_states", n_states, 2, MAX_STATES)
    return np.linspace(0.0, MAX_BEND_DEGREES, n_states)


def _arm_sdf(q: torch.Tensor, bend: torch.Tensor) -> torch.Tensor:
    """Upper arm (body centre to elbow), forearm bent by ``bend`` radians ``(n,)``, and hand."""
    shoulder = torch.tensor(_BODY_CENTRE, dtype=q.dtype)
    elbow = torch.tensor(_ELBOW, dtype=q.dtype)
    hand = elbow + _FOREARM_LENGTH * torch.stack([torch.cos(bend), torch.sin(bend)], -1)
    hand = hand[:, None, :]  # (n, 1, 2) against q (n, P, 2)
    upper = _segment(q, shoulder, elbow, _ARM_HALF_WIDTH)
    forearm = _segment(q, elbow, hand, _ARM_HALF_WIDTH)
    return torch.minimum(torch.minimum(upper, forearm), _disc(q, hand, _HAND_RADIUS))


def _pixel_centres(size: int) -> torch.Tensor:
    """``(size * size, 2)`` normalised ``(x, y)`` pixel centres, row-major like the image."""
    t = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
    y, x = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)


def _render_chunk(
    classes: np.ndarray,
    bends: np.ndarray,
    angles: np.ndarray,
    shifts: np.ndarray,
    scales: np.ndarray,
    size: int,
    bodies: tuple[SdfFn, ...],
) -> np.ndarray:
    """Coverage images ``(n, size, size)`` for one chunk of per-sample parameters."""
    n = classes.shape[0]
    rot = rotation_matrix_2d(torch.from_numpy(np.radians(angles)).float())
    shift = torch.from_numpy(2.0 * shifts / size).float()[:, None, :]  # pixels -> normalised
    scale = torch.from_numpy(scales).float()[:, None]
    # Inverse pose: canonical q = R^T (p - t) / s; row vectors, so (p - t) @ R.
    q = ((_pixel_centres(size)[None] - shift) @ rot) / scale[..., None]
    sdf = _arm_sdf(q, torch.from_numpy(np.radians(bends)).float())
    for k in np.unique(classes):
        rows = torch.from_numpy(np.flatnonzero(classes == k))
        sdf[rows] = torch.minimum(sdf[rows], bodies[int(k)](q[rows]))
    # Distances were measured in the unscaled frame; convert to output pixels for the edge ramp.
    sdf_pixels = sdf * scale * (size / 2.0)
    return (0.5 - sdf_pixels).clamp(0.0, 1.0).reshape(n, size, size).numpy()


def render_shapes(
    classes: np.ndarray,
    states: np.ndarray,
    angles: np.ndarray | None = None,
    shifts: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    *,
    size: int = 28,
    n_states: int = 4,
    progress: bool | None = False,
) -> np.ndarray:
    """Draw figures of chosen class, state and pose, noise-free.

    Args:
        classes: ``(N,)`` ints in ``[0, 8)``, indices into :data:`CLASS_NAMES`.
        states: ``(N,)`` ints in ``[0, n_states)``; state ``s`` bends the elbow by
            ``bend_angles(n_states)[s]`` degrees.
        angles: ``(N,)`` rotation in degrees (default 0).
        shifts: ``(N, 2)`` shift ``(x, y)`` in pixels (default 0).
        scales: ``(N,)`` isotropic scale (default 1).
        size: image side in pixels.
        progress: show a progress bar (None: only on a terminal).

    Returns:
        ``(N, 1, size, size)`` float32 in ``[0, 1]``.
    """
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    n = classes.shape[0]
    states = np.asarray(states, dtype=np.int64).reshape(-1)
    angles = np.zeros(n) if angles is None else np.asarray(angles, dtype=np.float64).reshape(-1)
    shifts = np.zeros((n, 2)) if shifts is None else np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    scales = np.ones(n) if scales is None else np.asarray(scales, dtype=np.float64).reshape(-1)
    _check_int("size", size, 16, 4096)
    if not all(a.shape[0] == n for a in (states, angles, shifts, scales)):
        raise ValueError("classes, states, angles, shifts and scales must have one entry per sample")
    if n and not (classes.min() >= 0 and classes.max() < len(CLASS_NAMES)):
        raise ValueError(f"classes must be in [0, {len(CLASS_NAMES)}), got {classes.min()}..{classes.max()}")
    bend_table = bend_angles(n_states)
    if n and not (states.min() >= 0 and states.max() < n_states):
        raise ValueError(f"states must be in [0, {n_states}), got {states.min()}..{states.max()}")
    if n and not np.all(scales > 0):
        raise ValueError("scales must be positive")

    bodies = _body_functions()
    out = np.empty((n, 1, size, size), dtype=np.float32)
    chunk = max(1, _CHUNK_POINTS // (size * size))
    starts = range(0, n, chunk)
    with torch.no_grad():
        for start in tqdm(
            starts,
            desc="rendering shapes",
            unit="chunk",
            leave=False,
            disable=None if progress is None else not progress,
        ):
            sl = slice(start, start + chunk)
            out[sl, 0] = _render_chunk(
                classes[sl], bend_table[states[sl]], angles[sl], shifts[sl], scales[sl], size, bodies
            )
    return out


# ---------------------------------------------------------------------------------------------
# The registered data set.


@dataclass(frozen=True)
class Shapes2DConfig:
    """Parameters of ``shapes2d``; see the module docstring."""

    n_train_per_cell: int = 1000
    n_test_per_cell: int = 200
    size: int = 28
    n_classes: int = 5
    n_states: int = 4
    seed: int = 0
    noise: float = 0.0
    max_angle: float = 180.0
    max_shift: float = 0.03
    scale_jitter: float = 0.08

    def __post_init__(self) -> None:
        _check_int("n_train_per_cell", self.n_train_per_cell, 1, 10**7)
        _check_int("n_test_per_cell", self.n_test_per_cell, 1, 10**7)
        _check_int("size", self.size, 16, 4096)
        _check_int("n_classes", self.n_classes, 2, len(CLASS_NAMES))
        _check_int("n_states", self.n_states, 2, MAX_STATES)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_float("noise", self.noise, 0.0, 10.0)
        _check_float("max_angle", self.max_angle, 0.0, 180.0)
        # Beyond these limits parts of the figure can leave the image.
        _check_float("max_shift", self.max_shift, 0.0, 0.05)
        _check_float("scale_jitter", self.scale_jitter, 0.0, 0.15)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"shapes2d: {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"shapes2d: {name} must be in [{low}, {high}], got {value}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"shapes2d: {name} must be a number, got {value!r}")
    if not low <= float(value) <= high:
        raise ConfigError(f"shapes2d: {name} must be in [{low}, {high}], got {value}")


def generate_shapes(config: Shapes2DConfig, n_per_cell: int, rng: np.random.Generator) -> Dataset:
    """A balanced, shuffled set of ``n_per_cell`` samples per (class, state), poses from ``rng``."""
    k, s = config.n_classes, config.n_states
    cells = np.repeat(np.arange(k * s), n_per_cell)
    rng.shuffle(cells)
    classes, states = cells // s, cells % s
    n = cells.shape[0]
    angles = rng.uniform(-config.max_angle, config.max_angle, n) if config.max_angle > 0 else np.zeros(n)
    half_range = config.max_shift * config.size
    shifts = rng.uniform(-half_range, half_range, (n, 2))
    scales = rng.uniform(1.0 - config.scale_jitter, 1.0 + config.scale_jitter, n)
    x = render_shapes(classes, states, angles, shifts, scales, size=config.size, n_states=s, progress=None)
    if config.noise > 0:
        x += rng.normal(0.0, config.noise, x.shape).astype(np.float32)
        np.clip(x, 0.0, 1.0, out=x)
    factors = {
        CONTENT: classes,
        TRANSFORM: states,
        "angle": angles.astype(np.float32),
        "shift_x": shifts[:, 0].astype(np.float32),
        "shift_y": shifts[:, 1].astype(np.float32),
        "scale": scales.astype(np.float32),
    }
    return Dataset(x=x, factors=factors, source="builtin:shapes2d")


@BUILTIN_DATASETS.register("shapes2d")
def make_shapes2d(**params) -> DataSplits:
    """Train/test splits of ``shapes2d`` (see the module docstring for ``params``).

    Raises:
        ConfigError: for an unknown parameter or a value out of range.
    """
    known = {f.name for f in fields(Shapes2DConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(
            f"unknown shapes2d parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    config = Shapes2DConfig(**params)
    logger.info("generating shapes2d: %s", asdict(config))
    train_seq, test_seq = np.random.SeedSequence(config.seed).spawn(2)
    train = generate_shapes(config, config.n_train_per_cell, np.random.default_rng(train_seq))
    test = generate_shapes(config, config.n_test_per_cell, np.random.default_rng(test_seq))
    return DataSplits(train=train, test=test, name="shapes2d")
