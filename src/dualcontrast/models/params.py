"""Method-specific settings (``model.params``): each method's typed parameter class, built from the
config with unknown keys and out-of-range values refused (one line naming the setting)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import ConfigError

P = TypeVar("P", bound="ModelParams")


@dataclasses.dataclass
class ModelParams:
    """Base of the ``@dataclass XParams`` of each method: its ``model.params`` keys are the fields,
    with their defaults. :meth:`parse` refuses unknown keys; :meth:`check` (a method's range
    checks) may also normalise values (e.g. ints to floats). A method without parameters uses
    this class itself: any key is refused."""

    @classmethod
    def parse(cls: type[P], method: str, given: Mapping[str, Any]) -> P:
        defaults = {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            for f in dataclasses.fields(cls)
        }
        params = cls(**method_params(method, given, defaults))
        params.check(method)
        return params

    def check(self, method: str) -> None:
        """ConfigError for a value out of range (none to check by default)."""
        del method

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as constructor keywords (values not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}



def method_params(method: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``given``; keys not in ``defaults`` raise a ConfigError naming them."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown model.params for {method}: {', '.join(hints)}; "
            f"known: {', '.join(sorted(defaults)) or '(none: the method takes no model.params)'}"
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


def positive_int(method: str, key: str, value: Any) -> int:
    """``value`` if it is an integer >= 1, else a ConfigError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.params.{key} for {method} must be an integer >= 1, got {value!r}")
    return value


def non_negative(method: str, key: str, value: Any) -> float:
    """``value`` as a float if it is a number >= 0, else a ConfigError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"model.params.{key} for {method} must be a number >= 0, got {value!r}")
    return float(value)
