"""Human-readable summaries of a run directory."""

from .html import write_report

__all__ = ["write_report"]
