"""The reference architectures of METHOD.md, selectable by name (``model.arch``).

``auto`` picks by sample shape: volumes -> ``subtomo``; RGB or >= 64 px images -> ``linemod``;
other images -> ``mnist``. The conv stacks adapt to any input size (the flattened feature
size is measured, not assumed), so e.g. ``mnist`` also runs on 64x64 grey images.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import ConfigError
from .decoders import ConvTransposeDecoder, MLPDecoder
from .encoders import ConvEncoder

log = logging.getLogger(__name__)

ARCHITECTURES: dict[str, dict[str, dict[str, Any]]] = {
    "mnist": {
        "encoder": dict(
            channels=(16, 32, 64), kernel=5, stride=2, padding=1, norm="instance", activation="relu"
        ),
        "mlp": dict(input_hidden=256, hidden=(512, 512, 512), activation="relu"),
        "conv": dict(channels=(64, 32, 16), activation="relu"),
    },
    "linemod": {
        "encoder": dict(
            channels=(16, 32, 64, 128), kernel=5, stride=2, padding=1, norm="instance", activation="relu"
        ),
        "mlp": dict(input_hidden=None, hidden=(512, 512, 1024, 1024), activation="relu"),
        "conv": dict(channels=(128, 64, 32, 16), activation="relu"),
    },
    "subtomo": {
        "encoder": dict(
            channels=(32, 64, 128),
            kernel=4,
            stride=2,
            padding=1,
            norm="none",
            activation="leaky_relu",
            head_channels=(512, 1024),
            head_kernel=4,
        ),
        "mlp": dict(input_hidden=512, hidden=(1024, 1024, 1024, 5000), activation="leaky_relu"),
        "conv": dict(channels=(128, 64, 32), activation="leaky_relu"),
    },
}


def resolve_arch(arch: str, sample_shape: Sequence[int]) -> str:
    if arch != "auto":
        if arch not in ARCHITECTURES:
            raise ConfigError(f"unknown model.arch {arch!r}; known: auto, {', '.join(ARCHITECTURES)}")
        return arch
    if len(sample_shape) == 4:
        return "subtomo"
    channels, size = sample_shape[0], max(sample_shape[1:])
    return "linemod" if channels == 3 or size >= 64 else "mnist"


def _check_options(cls: type, spec: dict[str, Any], key: str) -> None:
    """Unknown option names of ``model.<key>`` are a config error naming the known ones."""
    params = inspect.signature(cls.__init__).parameters
    known = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise ConfigError(
            f"model.{key}: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )


def one_trunk(options: dict[str, Any], method: str, why: str) -> dict[str, Any]:
    """``options`` without ``split``, with a warning where it was asked for: for methods whose
    encoder has one trunk by design (configs/subtomo.yaml asks every method for split trunks)."""
    if not options.get("split"):
        return options
    log.warning("%s: model.encoder_options.split ignored: %s", method, why)
    return {k: v for k, v in options.items() if k != "split"}


def build_encoder(
    arch: str, sample_shape: Sequence[int], content_dim: int, transform_dim: int, **overrides: Any
) -> ConvEncoder:
    spec = {**ARCHITECTURES[resolve_arch(arch, sample_shape)]["encoder"], **overrides}
    if spec.get("head_channels"):
        # The k4 head reduces the 4^3 left of a 32^3 input to 1^3; smaller inputs get a smaller kernel.
        left = min(sample_shape[1:]) // 2 ** len(spec["channels"])
        spec["head_kernel"] = max(1, min(spec.get("head_kernel", 4), left))
    _check_options(ConvEncoder, spec, "encoder_options")
    return ConvEncoder(sample_shape, content_dim, transform_dim, **spec)


def build_decoder(
    arch: str,
    kind: str,
    sample_shape: Sequence[int],
    content_dim: int,
    transform_dim: int,
    *,
    output: str,
    **overrides: Any,
) -> nn.Module:
    if kind not in ("mlp", "conv"):
        raise ConfigError(f"unknown model.decoder {kind!r} (use 'mlp' or 'conv')")
    spec = {**ARCHITECTURES[resolve_arch(arch, sample_shape)][kind], **overrides, "output": output}
    cls = MLPDecoder if kind == "mlp" else ConvTransposeDecoder
    _check_options(cls, spec, "decoder_options")
    return cls(sample_shape, content_dim, transform_dim, **spec)
