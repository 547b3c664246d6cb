"""Transformations T(x) that make contrastive pairs, and the warps that apply them (the rotation
maths itself is :mod:`dualcontrast.geometry`)."""

from .geometry import rotate_2d, warp
from .pairs import TRANSFORMS, PairTransform, build_transform

__all__ = ["TRANSFORMS", "PairTransform", "build_transform", "rotate_2d", "warp"]
