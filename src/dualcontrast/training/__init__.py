"""Training: devices, batches, the loop (checkpoints and the run directory: :mod:`dualcontrast.rundir`)."""

from .batches import BatchSource
from .runtime import resolve_device, rng_state, run_device, seed_everything, set_rng_state
from .trainer import (
    Trainer,
    TrainState,
    append_csv,
    apply_runtime,
    build_state,
    checkpoint_label,
    infer_output,
)
from .validation import ValidationScore, validation_loss

__all__ = [
    "BatchSource",
    "TrainState",
    "Trainer",
    "ValidationScore",
    "append_csv",
    "apply_runtime",
    "build_state",
    "checkpoint_label",
    "infer_output",
    "resolve_device",
    "rng_state",
    "run_device",
    "seed_everything",
    "set_rng_state",
    "validation_loss",
]
