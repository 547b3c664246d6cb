"""Training: devices, batches, the loop (checkpoints and the run directory: :mod:`dualcontrast.rundir`)."""

from .batches import BatchSource
from .runtime import resolve_device, rng_state, run_device, seed_everything, set_rng_state
from .trainer import (
    Trainer,
    TrainState,
    append_csv,
    apply_runtime,
    build_state,
    infer_output,
)

__all__ = [
    "BatchSource",
    "TrainState",
    "Trainer",
    "append_csv",
    "apply_runtime",
    "build_state",
    "infer_output",
    "resolve_device",
    "rng_state",
    "run_device",
    "seed_everything",
    "set_rng_state",
]
