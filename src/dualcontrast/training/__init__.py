"""Training: devices, batches, the loop, checkpoints and the run directory."""

from .batches import BatchSource
from .checkpoint import atomic_save, load_checkpoint
from .rundir import RunDir
from .runtime import resolve_device, rng_state, seed_everything, set_rng_state
from .trainer import (
    Trainer,
    TrainState,
    append_csv,
    apply_runtime,
    build_state,
    checkpoint_label,
    infer_output,
    load_trained_model,
)
from .validation import ValidationScore, validation_loss

__all__ = [
    "BatchSource",
    "RunDir",
    "TrainState",
    "Trainer",
    "ValidationScore",
    "append_csv",
    "apply_runtime",
    "atomic_save",
    "build_state",
    "checkpoint_label",
    "infer_output",
    "load_checkpoint",
    "load_trained_model",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "validation_loss",
]
