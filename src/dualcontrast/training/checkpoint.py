"""Atomic checkpoints holding everything needed to resume exactly."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import RunDirError


def atomic_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: no checkpoint (was the run started?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise RunDirError(f"{path}: cannot read checkpoint: {e}") from None


def atomic_copy(source: str | Path, path: str | Path) -> None:
    """Copy a checkpoint file to ``path`` through a temporary file and a rename (as :func:`atomic_save`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, open(source, "rb") as src:
            shutil.copyfileobj(src, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


CHECKPOINT_CHOICES = ("auto", "best", "last")


def choose_checkpoint(last: Path, best: Path, which: str = "auto") -> tuple[Path, str]:
    """``(path, "best" | "last")``: ``auto`` takes best.pt when it exists, else last.pt."""
    if which not in CHECKPOINT_CHOICES:
        raise RunDirError(f"checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)}, got {which!r}")
    if which == "best" and not best.exists():
        raise RunDirError(
            f"{best}: no best checkpoint (the run has no validation set, data.val_fraction=0, or was "
            "trained before best.pt existed); use --checkpoint last"
        )
    if which == "best" or (which == "auto" and best.exists()):
        return best, "best"
    return last, "last"
