"""Structures from clusters of subtomograms: aligned averages, FSC against ground truth, STAR export."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.base import Dataset, DataSplits
from ..evaluation.fsc import auc_fsc, fsc, resolution_at

log = logging.getLogger(__name__)


class ConcatSamples:
    """The splits of one data set read as one lazy stack (rows: train, validation, test)."""

    def __init__(self, parts: list[Dataset]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self._shape = (int(self.offsets[-1]), *parts[0].sample_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows))
        out = np.empty((len(rows), *self._shape[1:]), dtype=np.float32)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for k, data in enumerate(self.parts):
            sel = np.flatnonzero(part == k)
            if len(sel):
                out[sel] = data.batch(rows[sel] - self.offsets[k])  # normalised as configured
        return out


def all_samples(splits: DataSplits) -> Dataset:
    """Every sample of a data set (train, validation, test) as one lazy dataset."""
    parts = [data for _, data in splits.parts()]
    factors = {
        k: np.concatenate([p.factors[k] for p in parts])
        for k in splits.train.factors
        if all(k in p.factors for p in parts)
    }
    return Dataset(
        x=ConcatSamples(parts),
        factors=factors,
        source=splits.train.source,
        ids=np.concatenate([p.ids for p in parts]),
    )


@dataclass
class TruthMaps:
    """Ground-truth density maps with their names, for FSC of cluster averages."""

    maps: np.ndarray  # (K, n, n, n)
    names: list[str]
    voxel_size: float = 1.0


def load_truth_maps(path: str | Path) -> TruthMaps:
    """Read ``<data stem>_maps.npz`` as written by ``dualcontrast simulate``."""
    z = np.load(path, allow_pickle=False)
    names = [f"{i}/{s}" for i, s in zip(z["identity"], z["state"], strict=True)]
    return TruthMaps(np.asarray(z["maps"], np.float32), names, float(z["voxel_size_nm"]))


def compare_to_truth(
    average: np.ndarray, truth: TruthMaps, *, device: str = "cpu", n_rotations: int = 1000
) -> dict[str, Any]:
    """Align the average onto each ground-truth map; report the best match's FSC and AUC-FSC."""
    from .averaging import align_maps

    best: dict[str, Any] | None = None
    for name, ref in zip(truth.names, truth.maps, strict=True):
        aligned, _, _, score = align_maps(average, ref, n_rotations=n_rotations, device=device)
        if best is None or score > best["score"]:
            best = {"score": score, "name": name, "aligned": aligned, "ref": ref}
    assert best is not None
    curve = fsc(best["aligned"], best["ref"], voxel_size=truth.voxel_size)
    return {
        "best_match": best["name"],
        "alignment_score": round(float(best["score"]), 4),
        "auc_fsc": round(auc_fsc(curve), 4),
        "resolution_fsc05": round(float(resolution_at(curve, 0.5)), 3),
        "fsc": [round(float(v), 4) for v in curve.fsc],
        "freq": [round(float(v), 4) for v in curve.freq],
    }


def fsc_figure(results: dict[str, dict[str, Any]], path: Path, voxel_size: float = 1.0) -> None:
    """FSC of each cluster average against its best-matching ground-truth map, against spatial
    frequency in 1/\u00c5 (bottom) and resolution in \u00c5 (top); ``voxel_size`` in nm."""
    from .figures import plt, save_figure

    nyquist = 1.0 / (2.0 * voxel_size * 10.0)  # in 1/A
    fig, ax = plt.subplots(figsize=(6.5, 4.6), layout="constrained")
    for name, r in results.items():
        if "truth" in r:
            t = r["truth"]
            freq = np.asarray(t["freq"]) * nyquist
            ax.plot(freq, t["fsc"], label=f"{name} vs {t['best_match']} (AUC {t['auc_fsc']:.2f}, "
                    f"FSC=0.5 at {t['resolution_fsc05'] * 10:.0f} \u00c5)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, nyquist)
    ax.set_xlabel("spatial frequency (1/\u00c5)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.02)
    top = ax.secondary_xaxis(
        "top", functions=(lambda f: 1.0 / np.maximum(f, 1e-9), lambda r: 1.0 / np.maximum(r, 1e-9))
    )
    ticks = nyquist / np.array([8.0, 4.0, 2.0, 1.333, 1.0])
    top.set_xticks(1.0 / ticks)
    top.set_xticklabels([f"{1.0 / t:.0f}" for t in ticks])
    top.set_xlabel("resolution (\u00c5)")
    ax.set_title("FSC of cluster averages against the ground truth", fontsize=10)
    ax.legend(fontsize=6, loc="upper right")
    save_figure(fig, path)


def save_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)
