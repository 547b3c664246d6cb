"""Codes for a whole data set, streamed in chunks so memory stays bounded."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.base import Dataset, DataSplits
from ..models.base import DisentanglementModel, evaluating
from ..rundir import atomic_write
from ..training.batches import prefetched

CODE_KEYS = ("c_mu", "c_logvar", "z_mu", "z_logvar")


@torch.no_grad()
def embed(
    model: DisentanglementModel,
    data: Dataset,
    *,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
    desc: str = "embed",
) -> dict[str, np.ndarray]:
    """Posterior means and log-variances of every sample, plus ids and factors.

    Returns ``{"c_mu": (N, dc), "c_logvar", "z_mu": (N, dz), "z_logvar", "ids": (N,),
    "<factor>": (N,) ...}``; codes a method does not have are absent. The input is streamed:
    a background thread reads the next batches while the model encodes this one, pages of
    memory-mapped files are handed back as it goes, and only the codes (preallocated float32
    arrays) grow with ``N``. Peak memory is that of a few batches.
    ``progress`` None: a bar only on a terminal (tqdm's auto mode).
    """
    device = torch.device(device)
    n = len(data)
    out: dict[str, np.ndarray] = {}
    starts = range(0, n, batch_size)
    indices = (np.arange(start, min(start + batch_size, n)) for start in starts)
    batches = prefetched(data, indices, device)
    bar = tqdm(
        zip(starts, batches, strict=True), total=len(starts), desc=desc, disable=None if progress is None else not progress, leave=False
    )
    # Auto-decoding methods (Hydra) read their codes from per-sample tables (training samples,
    # found by id) or fit them to unseen samples, which needs the rows' side data (CTF).
    indexed = getattr(model, "wants_indices", False)
    # closing: stops the reader thread if encoding fails part-way
    with evaluating(model), contextlib.closing(batches):
        for start, x in bar:
            with model.autocast():
                if indexed:
                    codes = model.encode_rows(x, data, np.arange(start, start + x.shape[0]))
                else:
                    codes = model.embed_codes(x)
            for key, value in zip(CODE_KEYS, codes.as_tuple(), strict=True):
                if value is None:
                    continue
                if key not in out:
                    out[key] = np.empty((n, value.shape[1]), dtype=np.float32)
                out[key][start : start + x.shape[0]] = value.float().cpu().numpy()
    out["ids"] = np.asarray(data.ids)
    for name, values in data.factors.items():
        out[name] = np.asarray(values)
    return out


def embed_splits(model: DisentanglementModel, splits: DataSplits, **kwargs) -> dict[str, np.ndarray]:
    """``embed`` on train, validation (where there is one) and test, keys prefixed ``train_`` /
    ``val_`` / ``test_`` (the embeddings.npz layout)."""
    out: dict[str, np.ndarray] = {}
    for split, data in splits.parts():
        for key, value in embed(model, data, desc=f"embed {split}", **kwargs).items():
            out[f"{split}_{key}"] = value
    return out


def save_embeddings(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def split_view(arrays: dict[str, np.ndarray], split: str) -> dict[str, np.ndarray]:
    """``{"train_c_mu": ...}`` -> ``{"c_mu": ...}`` for one split."""
    prefix = f"{split}_"
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
