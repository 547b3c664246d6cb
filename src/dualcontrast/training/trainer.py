"""The training loop shared by every method: epochs, schedules, logging, checkpoints, resume."""

from __future__ import annotations

import csv
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config
from ..data.base import DataSplits
from ..errors import ConfigError, DivergenceError, RunDirError
from ..models import DisentanglementModel, build_model
from ..rundir import RunDir, atomic_copy, atomic_save, load_checkpoint
from . import distributed
from .batches import BatchSource, batches_per_epoch
from .runtime import rng_state, seed_everything, set_rng_state
from .schedule import build_schedulers, resync
from .validation import ValidationScore, describe_best

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
    schedule_interval: str = "epoch"  # when the schedulers step: "epoch" or "batch"
    meta: dict[str, Any] = field(default_factory=dict)

    def checkpoint(self, rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything to resume. ``rng_ranks``: the RNG state of every process of a
        distributed run (rank order); ``"rng"`` is always this process's state."""
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": rng_state(),
            "meta": self.meta,
        }
        if rng_ranks is not None:
            ckpt["rng_ranks"] = rng_ranks
        return ckpt

    def restore(self, ckpt: dict[str, Any], rank: int = 0, world_size: int = 1) -> None:
        self.model.load_state_dict(ckpt["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        resync(self.schedulers)
        self.epoch = int(ckpt["epoch"])
        ranks = ckpt.get("rng_ranks")
        if world_size == 1:
            set_rng_state(ckpt["rng"])
        elif ranks is not None and len(ranks) == world_size:
            set_rng_state(ranks[rank])
        else:
            # A different process count: batches stay exact (seeded per epoch), the
            # per-process random draws cannot.
            set_rng_state(ckpt["rng"])
            if rank > 0:
                seed_everything(_rank_seed(int(self.meta.get("seed", 0)), rank, self.epoch))
            if rank == 0:
                log.warning(
                    "resuming with %d processes; the checkpoint was written by %s: the run continues "
                    "correctly but not bit-identically to an uninterrupted one",
                    world_size,
                    f"{len(ranks)} processes" if ranks else "1 process",
                )


def build_state(
    cfg: Config,
    sample_shape: tuple[int, ...],
    output: str,
    device: torch.device,
    steps_per_epoch: int = 1,
    train_data=None,
) -> TrainState:
    """Model, optimizers and their ``train.schedule`` schedulers, seeded by ``train.seed``.

    ``steps_per_epoch``: batches per epoch, which per-batch schedules need to know their length.
    An auto-decoding method (``model.wants_indices``, e.g. Hydra) sizes its per-sample tables
    from ``train_data`` (:meth:`bind_data`) before its optimizers are made.
    """
    seed_everything(cfg.train.seed)
    model = build_model(cfg, sample_shape, output)
    if getattr(model, "wants_indices", False):
        model.bind_data(train_data)
    model = model.to(device)
    optimizers = model.configure_optimizers(cfg.train.lr)
    schedulers, interval = build_schedulers(cfg.train, optimizers, steps_per_epoch)
    meta = {
        "sample_shape": list(sample_shape),
        "output": output,
        "model": cfg.model.name,
        "seed": cfg.train.seed,
    }
    return TrainState(model, optimizers, schedulers, schedule_interval=interval, meta=meta)


def _rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """A seed for process ``rank`` > 0 (rank 0 keeps the single-process stream)."""
    return (seed * 1_000_003 + rank * 7_919 + epoch) % 2**63


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast on ``device`` (emulated bf16 on a CPU is slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # bf16 instructions proper; oneDNN also "supports" bf16 on plain AVX-512 by conversion.
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def apply_runtime(
    model: DisentanglementModel,
    device: torch.device,
    spatial_dims: int,
    *,
    amp: bool = False,
    compile: bool = False,
    channels_last: bool = False,
) -> torch.memory_format | None:
    """Device-specific speed settings; none of them changes the objective.

    - ``amp``: bf16 autocast of the forward passes (the losses are taken in float32), on CUDA
      and on CPUs with native bf16 arithmetic (AVX512-BF16 / AMX); elsewhere float32;
    - ``channels_last``: NHWC / NDHWC weights; returns the memory format batches must use;
    - ``compile``: ``model.compile_step()`` where the method has one, else ``torch.compile`` of
      every network in place (state-dict keys unchanged either way).
    """
    if amp:
        model.amp_dtype = torch.bfloat16 if bf16_supported(device) else None
        if model.amp_dtype is None:
            log.warning("train.amp: %s has no native bf16 arithmetic; training in float32", device)
    fmt = None
    if channels_last:
        fmt = torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
        for _, net in model.named_networks():
            net.to(memory_format=fmt)
    if compile:
        # A method may compile more than its networks (DualContrast: its whole fused forward).
        custom = getattr(model, "compile_step", None)
        if custom is not None:
            custom()
        else:
            for _, net in model.named_networks():
                net.compile()
    return fmt


def checkpoint_label(kind: str, epoch: int, best: dict[str, Any] | None) -> str:
    """What metrics.json records: ``"best (epoch 7, validation d_c_c 0.9123)"`` / ``"last (epoch 20)"``."""
    if kind == "best" and best is not None:
        return f"best ({describe_best(best)})"
    return f"{kind} (epoch {epoch})"


class Trainer:
    """Runs ``train.epochs`` epochs of ``model.training_step`` and keeps the run directory current.

    ``on_epoch_end(state)`` callbacks run after each checkpoint.

    ``validate(state)`` (optional, see :mod:`.validation`) runs before each checkpoint: its
    scores go to eval_log.csv, and an epoch that beats the best so far is copied to best.pt.

    Distributed runs (``world_size > 1``, process group started by
    :func:`~dualcontrast.training.distributed.init_distributed`): every process trains its
    share of each epoch; gradients are averaged before every optimizer step
    (:class:`~dualcontrast.training.distributed.GradientAverager`), so the replicas stay
    identical (checked every epoch). Rank 0 alone logs, checkpoints and runs the callbacks;
    the checkpoint holds every rank's RNG state, so resume is exact.

    The loss terms stay on the device during the epoch: they are summed as tensors and read
    at the end of the epoch (and, for the progress bar, at most once a second).
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
        channels_last: bool | None = None,
        validate: Callable[[TrainState], ValidationScore | None] | None = None,
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
        self.validate = validate
        output = infer_output(cfg, splits)
        steps = batches_per_epoch(len(splits.train), cfg.train.batch_size, world_size)
        self.state = build_state(cfg, splits.sample_shape, output, device, steps, splits.train)
        if channels_last is None:
            # NDHWC convolutions measured 1.1-1.3x faster per 3D step on a CPU; NHWC slower in 2D.
            channels_last = splits.train.spatial_dims == 3
        memory_format = apply_runtime(
            self.state.model,
            device,
            splits.train.spatial_dims,
            amp=cfg.train.amp,
            compile=cfg.train.compile,
            channels_last=channels_last,
        )
        if world_size > 1:
            distributed.broadcast_module(self.state.model)
            self.state.model.set_gradient_sync(distributed.GradientAverager(world_size))
            if rank > 0:
                seed_everything(_rank_seed(cfg.train.seed, rank))
        self.batches = BatchSource(
            splits.train,
            cfg.train.batch_size,
            device,
            resident=cfg.train.resident,
            rank=rank,
            world_size=world_size,
            seed=cfg.train.seed,
            memory_format=memory_format,
            with_indices=getattr(self.state.model, "wants_indices", False),
        )

    @property
    def model(self) -> DisentanglementModel:
        return self.state.model

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def resume(self) -> None:
        ckpt = load_checkpoint(self.run.last_checkpoint, map_location=self.device)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise RunDirError(
                f"{self.run.last_checkpoint}: checkpoint format {ckpt.get('format')} not supported"
            )
        self.state.restore(ckpt, self.rank, self.world_size)
        if self.world_size > 1:
            distributed.broadcast_module(self.state.model)
        if self.is_main:
            # Rows written after the checkpoint (a crash between log and save) would repeat.
            for path in (self.run.log, self.run.eval_log):
                trim_csv(path, self.state.epoch)
            self._resume_best(ckpt)
            log.info("resumed %s at epoch %d", self.run.root, self.state.epoch)

    def _resume_best(self, ckpt: dict[str, Any]) -> None:
        """Go on comparing against the checkpoint's best; redo its best.pt if a crash came
        between writing last.pt and copying it."""
        best = ckpt.get("meta", {}).get("best")
        self.state.meta["best"] = best
        if best is not None and int(best["epoch"]) == self.state.epoch:
            atomic_copy(self.run.last_checkpoint, self.run.best_checkpoint)

    def fit(self, until: int | None = None) -> TrainState:
        """Train to ``train.epochs``, or stop after epoch ``until`` (the schedules still follow
        ``train.epochs``, so a run stopped there and resumed is the run trained straight through)."""
        st = self.state
        cfg = self.cfg.train
        last = cfg.epochs if until is None else min(until, cfg.epochs)
        # Bars only on a terminal: redirected to a file, their refreshes would fill it; there the
        # log line of each epoch says how far the run is.
        show = cfg.progress and self.is_main and sys.stderr.isatty()
        epochs = tqdm(
            range(st.epoch, last),
            desc="epochs",
            disable=not show,
            unit="epoch",
            initial=st.epoch,
            total=cfg.epochs,
        )
        for epoch in epochs:
            st.model.train()
            t0 = time.perf_counter()
            self.batches.set_epoch(epoch)
            # The lr the epoch starts at (per-batch schedules change it within the epoch).
            lr = st.optimizers[next(iter(st.optimizers))].param_groups[0]["lr"]
            sums = self._run_epoch(epoch, show)
            if st.schedule_interval == "epoch":
                self._step_schedulers()
            st.epoch = epoch + 1
            st.model.on_epoch_end(st.epoch)
            means = self._epoch_means(sums)
            for k, v in means.items():
                if not np.isfinite(v):
                    raise DivergenceError(
                        f"loss term {k!r} became {v} in epoch {epoch + 1}: training diverged; lower "
                        f"train.lr (now {lr:g}), or, if the data holds extreme values, scale them "
                        f"(data.normalize=per_sample)"
                    )
            seconds = time.perf_counter() - t0
            rng_ranks = None
            if self.world_size > 1:
                distributed.check_replicas(st.model, self.world_size)
                rng_ranks = distributed.gather_objects(rng_state(), self.world_size)
            if self.is_main:
                self._log(epoch + 1, seconds, lr, means)
                improved = self._validate()
                atomic_save(st.checkpoint(rng_ranks), self.run.last_checkpoint)
                if improved:
                    atomic_copy(self.run.last_checkpoint, self.run.best_checkpoint)
            loss = means.get("loss", float("nan"))
            epochs.set_postfix(loss=f"{loss:.4f}", sec=f"{seconds:.1f}")
            if self.is_main and not show:
                log.info("epoch %d/%d: loss %.4f, %.1f s", epoch + 1, cfg.epochs, loss, seconds)
            if self.is_main:
                for cb in self.callbacks:
                    cb(st)
        return st

    def _validate(self) -> bool:
        """Score the epoch just done on validation (eval_log.csv); whether it is the best so far
        (then ``meta["best"]`` records it, in the checkpoint written next)."""
        st = self.state
        result = self.validate(st) if self.validate is not None else None
        if result is None:
            return False
        append_csv(self.run.eval_log, {"epoch": st.epoch, **{k: round(v, 4) for k, v in result.scores.items()}})
        improved = result.beats(st.meta.get("best"))
        if improved:
            st.meta["best"] = result.record(st.epoch)
        log.info("epoch %d: validation %s %.4f%s", st.epoch, result.metric, result.value,
                 " (best so far: best.pt)" if improved else "")  # fmt: skip
        return improved

    def _run_epoch(self, epoch: int, show: bool) -> dict[str, torch.Tensor]:
        """One pass over the batches; the summed loss terms, still on the device."""
        st = self.state
        sums: dict[str, torch.Tensor] = {}
        bar = tqdm(self.batches, desc=f"epoch {epoch + 1}", disable=not show, leave=False, unit="batch")
        last_shown = time.perf_counter()
        for i, x in enumerate(bar):
            terms = st.model.training_step(x, st.optimizers)
            if st.schedule_interval == "batch":
                self._step_schedulers()
            for k, v in terms.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            if show and time.perf_counter() - last_shown > 1.0:
                # Reading values syncs the device, so the bar refreshes about once a second.
                bar.set_postfix({k: f"{float(v) / (i + 1):.4f}" for k, v in sums.items()})
                last_shown = time.perf_counter()
        return sums

    def _step_schedulers(self) -> None:
        with warnings.catch_warnings():
            # Schedules advance even for an optimizer that had nothing to do (DisCo's generator
            # after its phase, vae2's idle encoder optimizer).
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            for s in self.state.schedulers.values():
                s.step()

    def _epoch_means(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Mean of each term over the epoch's batches (of all processes): the one host read."""
        if not sums:
            return {}
        keys = list(sums)  # insertion order: the same on every rank, and the log's column order
        values = torch.stack([sums[k].detach().float() for k in keys]) / len(self.batches)
        if self.world_size > 1:
            values = distributed.all_reduce_mean(values, self.world_size)
        return dict(zip(keys, values.tolist(), strict=True))

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
