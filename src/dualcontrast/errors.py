"""Errors a user can act on: each names the file or setting and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class DualContrastError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class DataError(DualContrastError, ValueError):
    """A data file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(DualContrastError, ValueError):
    """A configuration file or override is invalid."""


class RunDirError(DualContrastError, ValueError):
    """A run directory is missing, incomplete, or would be overwritten."""


class DivergenceError(DualContrastError, FloatingPointError):
    """Training produced a non-finite loss (learning rate too high, or data with extreme values)."""
