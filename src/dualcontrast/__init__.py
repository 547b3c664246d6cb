"""dualcontrast: unsupervised disentanglement of content and transformations.

Per sample, a content code ``c`` (what the object is) and a transformation code ``z``
(its pose, conformation or style), learned without labels by DualContrast and its baselines.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dualcontrast")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
