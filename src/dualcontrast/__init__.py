"""dualcontrast: unsupervised disentanglement of content and transformations.

Per sample, a content code ``c`` (what the object is) and a transformation code ``z``
(its pose, conformation or style), learned without labels by DualContrast and its baselines.

From Python: :func:`load_run` opens a trained run (embed, decode, transfer) and
:class:`DualContrast` is a scikit-learn style estimator (see :mod:`dualcontrast.api`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dualcontrast")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["DualContrast", "Run", "__version__", "load_run"]

# The Python API needs torch; it is imported on first use, so `import dualcontrast` (and the
# CLI's start-up) stays fast.
_API = {"DualContrast", "Run", "load_run"}


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
