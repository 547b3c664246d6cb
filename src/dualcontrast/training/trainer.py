"""The training loop shared by every method: epochs, schedules, logging, checkpoints, resume."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config
from ..data.base import DataSplits
from ..errors import ConfigError, RunDirError
from ..models import DisentanglementModel, build_model
from .batches import BatchSource
from .checkpoint import atomic_save, load_checkpoint
from .rundir import RunDir
from .runtime import rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


def infer_output(cfg: Config, splits: DataSplits) -> str:
    """``model.output: auto`` -> sigmoid when the data lie in [0, 1] (images), else linear."""
    if cfg.model.output != "auto":
        return cfg.model.output
    sample = splits.train.batch(np.arange(min(len(splits.train), 256)))
    return "sigmoid" if sample.min() >= 0.0 and sample.max() <= 1.0 else "linear"


@dataclass
class TrainState:
    model: DisentanglementModel
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    epoch: int = 0  # epochs completed
    meta: dict[str, Any] = field(default_factory=dict)

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": rng_state(),
            "meta": self.meta,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        self.epoch = int(ckpt["epoch"])
        set_rng_state(ckpt["rng"])


def build_state(cfg: Config, sample_shape: tuple[int, ...], output: str, device: torch.device) -> TrainState:
    """Model, optimizers and StepLR schedulers, seeded by ``train.seed``."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg, sample_shape, output).to(device)
    optimizers = model.configure_optimizers(cfg.train.lr)
    schedulers = {
        k: torch.optim.lr_scheduler.StepLR(o, step_size=cfg.train.lr_step, gamma=cfg.train.lr_gamma)
        for k, o in optimizers.items()
    }
    meta = {"sample_shape": list(sample_shape), "output": output, "model": cfg.model.name}
    return TrainState(model, optimizers, schedulers, meta=meta)


def load_trained_model(
    run: RunDir, cfg: Config, device: torch.device
) -> tuple[DisentanglementModel, dict[str, Any]]:
    """The model of a run's last checkpoint (finished or interrupted), in eval mode."""
    ckpt = load_checkpoint(run.last_checkpoint, map_location=device)
    meta = ckpt["meta"]
    model = build_model(cfg, tuple(meta["sample_shape"]), meta["output"]).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


class Trainer:
    """Runs ``train.epochs`` epochs of ``model.training_step`` and keeps the run directory current.

    ``on_epoch_end(state)`` callbacks run after each checkpoint (e.g. periodic evaluation).
    With ``rank != 0`` nothing is written (distributed runs log and checkpoint on rank 0).
    """

    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        splits: DataSplits,
        device: torch.device,
        *,
        rank: int = 0,
        world_size: int = 1,
        callbacks: list[Callable[[TrainState], None]] | None = None,
    ):
        if cfg.train.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
        self.cfg = cfg
        self.run = run
        self.splits = splits
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.callbacks = callbacks or []
        output = infer_output(cfg, splits)
        self.state = build_state(cfg, splits.sample_shape, output, device)
        if cfg.train.amp:
            self.state.model.amp_dtype = torch.bfloat16 if device.type == "cuda" else None
        self.batches = BatchSource(
            splits.train,
            cfg.train.batch_size,
            device,
            resident=cfg.train.resident,
            rank=rank,
            world_size=world_size,
        )

    @property
    def model(self) -> DisentanglementModel:
        return self.state.model

    def resume(self) -> None:
        ckpt = load_checkpoint(self.run.last_checkpoint, map_location=self.device)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise RunDirError(
                f"{self.run.last_checkpoint}: checkpoint format {ckpt.get('format')} not supported"
            )
        self.state.restore(ckpt)
        # Rows written after the checkpoint (a crash between log and save) would repeat.
        for path in (self.run.log, self.run.eval_log):
            trim_csv(path, self.state.epoch)
        log.info("resumed %s at epoch %d", self.run.root, self.state.epoch)

    def fit(self) -> TrainState:
        st = self.state
        cfg = self.cfg.train
        show = cfg.progress and self.rank == 0
        epochs = tqdm(
            range(st.epoch, cfg.epochs),
            desc="epochs",
            disable=not show,
            unit="epoch",
            initial=st.epoch,
            total=cfg.epochs,
        )
        for epoch in epochs:
            st.model.train()
            t0 = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            bar = tqdm(self.batches, desc=f"epoch {epoch + 1}", disable=not show, leave=False, unit="batch")
            last_shown = time.perf_counter()
            for i, x in enumerate(bar):
                terms = st.model.training_step(x, st.optimizers)
                for k, v in terms.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                if show and time.perf_counter() - last_shown > 1.0:
                    # Reading values syncs the device, so the bar refreshes about once a second.
                    bar.set_postfix({k: f"{float(v) / (i + 1):.4f}" for k, v in sums.items()})
                    last_shown = time.perf_counter()
            lr = st.optimizers[next(iter(st.optimizers))].param_groups[0]["lr"]
            for s in st.schedulers.values():
                s.step()
            st.model.on_epoch_end(epoch)
            st.epoch = epoch + 1
            means = {k: float(v) / len(self.batches) for k, v in sums.items()}
            for k, v in means.items():
                if not np.isfinite(v):
                    raise FloatingPointError(
                        f"loss term {k!r} became {v} in epoch {epoch + 1}; lower train.lr"
                    )
            seconds = time.perf_counter() - t0
            if self.rank == 0:
                self._log(epoch + 1, seconds, lr, means)
                atomic_save(st.checkpoint(), self.run.last_checkpoint)
            epochs.set_postfix(loss=f"{means.get('loss', float('nan')):.4f}", sec=f"{seconds:.1f}")
            for cb in self.callbacks:
                cb(st)
        return st

    def _log(self, epoch: int, seconds: float, lr: float, means: dict[str, float]) -> None:
        row = {
            "epoch": epoch,
            "seconds": round(seconds, 3),
            "lr": lr,
            **{k: round(v, 6) for k, v in means.items()},
        }
        append_csv(self.run.log, row)


def append_csv(path, row: dict[str, Any]) -> None:
    """Append a row; the header is written with the first row (columns fixed by it)."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        if new:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
        else:
            with open(path, newline="") as r:
                fields = next(csv.reader(r))
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writerow(row)


def trim_csv(path, max_epoch: int) -> None:
    """Drop rows whose ``epoch`` exceeds ``max_epoch`` (no-op for a missing file)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or all(int(r["epoch"]) <= max_epoch for r in rows):
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["epoch"]) <= max_epoch)
