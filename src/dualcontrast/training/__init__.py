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
    infer_output,
    load_trained_model,
)

__all__ = [
    "BatchSource",
    "RunDir",
    "TrainState",
    "Trainer",
    "append_csv",
    "apply_runtime",
    "atomic_save",
    "build_state",
    "infer_output",
    "load_checkpoint",
    "load_trained_model",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]
