"""The run directory, the one place a run writes and what later commands read; its checkpoints; the
one atomic file writer every module uses.

::

    RUN/config.yaml        resolved config + version, command line, time
    RUN/checkpoints/last.pt
    RUN/checkpoints/best.pt  the epoch with the best validation score (data.val_fraction > 0)
    RUN/log.csv            per-epoch mean loss terms, learning rate, seconds
    RUN/eval_log.csv       validation scores: every epoch the one that picks best.pt, or all of
                           them every train.eval_every epochs
    RUN/embeddings.npz     c/z means and log-variances for train and test, labels, ids
    RUN/metrics.json       D-scores, SAP, ARI ... with the protocol
    RUN/figures/           transfer_grid.png, loss.png, projection_c.png, projection_z.png ...
    RUN/report.html        all of the above on one self-contained page (dualcontrast.report)

The model of a trained run is loaded by :func:`dualcontrast.models.load_trained_model` (it builds
models, so it lives with them; this module sits below models, which read checkpoints too).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import RunDirError

if TYPE_CHECKING:
    import torch

_OUTPUTS = (
    "config.yaml",
    "checkpoints",
    "log.csv",
    "eval_log.csv",
    "embeddings.npz",
    "metrics.json",
    "figures",
    "analysis",
    "report.html",
    "benchmark.json",
    "restarts",
    "restarts.csv",
)
_OUTPUT_PATTERNS = ("embeddings_*.npz",)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def log(self) -> Path:
        return self.root / "log.csv"

    @property
    def eval_log(self) -> Path:
        return self.root / "eval_log.csv"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.npz"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @classmethod
    def create(cls, path: str | Path, *, overwrite: bool = False) -> RunDir:
        """A new run directory. An existing non-empty one is refused unless ``overwrite``,
        which removes only the files a run writes (anything else the user put there stays)."""
        root = Path(path)
        cls.check_new(root, overwrite=overwrite)
        if root.exists() and any(root.iterdir()):
            cls(root).remove_outputs()
        root.mkdir(parents=True, exist_ok=True)
        (root / "checkpoints").mkdir(exist_ok=True)
        (root / "figures").mkdir(exist_ok=True)
        return cls(root)

    @staticmethod
    def check_new(root: Path, *, overwrite: bool = False) -> None:
        """RunDirError unless a new run may be made at ``root`` (missing or empty, or ``overwrite``)."""
        if root.exists() and not root.is_dir():
            raise RunDirError(f"{root}: exists and is not a directory")
        if root.exists() and any(root.iterdir()) and not overwrite:
            raise RunDirError(
                f"{root}: run directory already exists; choose another -o, resume it with "
                "--resume, or pass --overwrite to replace its outputs"
            )

    def outputs(self) -> list[Path]:
        """The files and folders of this directory that runs and later commands wrote."""
        found = [self.root / name for name in _OUTPUTS if (self.root / name).exists()]
        for pattern in _OUTPUT_PATTERNS:
            found += sorted(self.root.glob(pattern))
        return found

    def remove_outputs(self) -> None:
        """Delete :meth:`outputs` (anything else the user put here stays)."""
        for target in self.outputs():
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()

    def staging(self) -> Path:
        """A new empty sibling directory to build a replacement of this run in."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root.parent, prefix=f".{self.root.name}.new-"))

    def replace_with(self, staged: Path) -> None:
        """Make the run built in ``staged`` this run: the old outputs go, the user's other files stay.

        Two renames (old aside, new in): at every moment one complete run exists on disk.
        """
        old = Path(tempfile.mkdtemp(dir=self.root.parent, prefix=f".{self.root.name}.old-"))
        os.replace(self.root, old / "run")
        os.replace(staged, self.root)
        previous = RunDir(old / "run")
        keep = set(previous.outputs())
        for entry in (old / "run").iterdir():
            if entry not in keep and not (self.root / entry.name).exists():
                os.replace(entry, self.root / entry.name)
        shutil.rmtree(old)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run (finished or interrupted)."""
        root = Path(path)
        if not root.is_dir():
            raise RunDirError(f"{root}: no such run directory")
        run = cls(root)
        if not run.config.exists():
            raise RunDirError(f"{root}: not a run directory (no config.yaml)")
        run.figures.mkdir(exist_ok=True)
        return run


# --------------------------------------------------------------------------- atomic files


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file in the same folder, then rename:
    a crash never leaves a torn file, and readers see the old content or the new, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, doc: Any) -> Path:
    """:func:`atomic_write` of ``doc`` as indented JSON."""
    return atomic_write_text(path, json.dumps(doc, indent=2))


# --------------------------------------------------------------------------- checkpoints


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch  # here: config.py writes through this module and needs no torch

    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_copy(source: str | Path, path: str | Path) -> None:
    """Copy a file (a checkpoint) to ``path`` through :func:`atomic_write`."""
    with open(source, "rb") as src:
        atomic_write(path, lambda f: shutil.copyfileobj(src, f))


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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    import torch

    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: no checkpoint (was the run started?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise RunDirError(f"{path}: cannot read checkpoint: {e}") from None
