"""Network building blocks: encoders, decoders and the reference architecture presets."""

from .decoders import ConvTransposeDecoder, MLPDecoder
from .encoders import ConvEncoder, GaussianHeads
from .presets import ARCHITECTURES, build_decoder, build_encoder, one_trunk, resolve_arch

__all__ = [
    "ARCHITECTURES",
    "ConvEncoder",
    "ConvTransposeDecoder",
    "GaussianHeads",
    "MLPDecoder",
    "build_decoder",
    "build_encoder",
    "one_trunk",
    "resolve_arch",
]
