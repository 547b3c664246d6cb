"""The run directory: the one place a run writes, and what later commands read.

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
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunDirError

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
