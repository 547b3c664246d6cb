"""Method-specific settings (``model.params``) checked against each method's defaults."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError


def method_params(method: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``given``; keys not in ``defaults`` raise a ConfigError naming them."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown model.params for {method}: {', '.join(hints)}; known: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **given}


def choice(method: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else a ConfigError naming the setting."""
    if value not in allowed:
        raise ConfigError(
            f"model.params.{key} for {method} must be one of {', '.join(allowed)}, got {value!r}"
        )
    return value


def positive(method: str, key: str, value: Any) -> float:
    """``value`` as a float if it is a number > 0, else a ConfigError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"model.params.{key} for {method} must be a number > 0, got {value!r}")
    return float(value)


def non_negative(method: str, key: str, value: Any) -> float:
    """``value`` as a float if it is a number >= 0, else a ConfigError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"model.params.{key} for {method} must be a number >= 0, got {value!r}")
    return float(value)
