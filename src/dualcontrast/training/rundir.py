"""The run directory: the one place a run writes, and what later commands read.

::

    RUN/config.yaml        resolved config + version, command line, time
    RUN/checkpoints/last.pt
    RUN/log.csv            per-epoch mean loss terms, learning rate, seconds
    RUN/eval_log.csv       per-epoch metrics when train.eval_every > 0
    RUN/embeddings.npz     c/z means and log-variances for train and test, labels, ids
    RUN/metrics.json       D-scores, SAP, ARI ... with the protocol
    RUN/figures/           transfer_grid.png, loss.png, projection_c.png, projection_z.png ...
    RUN/report.html        all of the above on one self-contained page (dualcontrast.report)
"""

from __future__ import annotations

import shutil
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
    "report.html",
)


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
        if root.exists() and not root.is_dir():
            raise RunDirError(f"{root}: exists and is not a directory")
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise RunDirError(
                    f"{root}: run directory already exists; choose another -o, resume it with "
                    "--resume, or pass --overwrite to replace its outputs"
                )
            for name in _OUTPUTS:
                target = root / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        root.mkdir(parents=True, exist_ok=True)
        (root / "checkpoints").mkdir(exist_ok=True)
        (root / "figures").mkdir(exist_ok=True)
        return cls(root)

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
