"""Transformations T(x) that make contrastive pairs, and the geometry behind them."""

from .geometry import (
    euler_zyz_to_matrix,
    quaternion_to_matrix,
    random_rotation_3d,
    rotate_2d,
    rotation_matrix_2d,
    warp,
)
from .pairs import TRANSFORMS, PairTransform, build_transform

__all__ = [
    "TRANSFORMS",
    "PairTransform",
    "build_transform",
    "euler_zyz_to_matrix",
    "quaternion_to_matrix",
    "random_rotation_3d",
    "rotate_2d",
    "rotation_matrix_2d",
    "warp",
]
