"""Supervised reference points for the conformation bar: how well can each identity's state be
read from the particles when the state labels are given, on the data and budget of
``subtomo_quality.py``?

D(state|z) >= 0.80 within the nucleosome asks an unsupervised z to hold the conformation. Two
supervised readers, each fit on the training particles of one identity, chosen on validation
(carved from training, as in training runs) and scored on its test particles:

- **encoder**: the same conv trunk (one trunk, its content head sized to the number of states)
  trained with cross-entropy, each batch drawn as a training view (the training transformation,
  then :meth:`PairViews.finish`; evaluation through :meth:`PairViews.prepare`), the epoch of best
  validation accuracy kept. Training accuracy is logged too: a network that does not fit its own
  training set within the budget cannot give an unsupervised code the state either.
- **invariant features**: logistic regression on rotation-invariant statistics of each particle
  (radial profile of the density about the box centre and of the log power spectrum), the
  regularisation chosen on validation. A floor on what the data show: any reader that sees the
  state at least as well as these few numbers reaches this accuracy.

If labelled readers stay far below the bar, the bar is out of reach of the data and budget, not
of the unsupervised method.

    python benchmarks/state_ceiling.py --epochs 30 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dualcontrast.evaluation.metrics import CONTENT, TRANSFORM
from dualcontrast.nn.presets import build_encoder
from dualcontrast.training.runtime import seed_everything
from dualcontrast.transforms import build_transform
from dualcontrast.transforms.views import PairViews, ViewSettings
from dualcontrast.workflow import load_splits, resolve_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_2d import device_name
from subtomo_quality import IDENTITIES, REPO

log = logging.getLogger("state_ceiling")


def identity_rows(data, identity: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(data.labels(CONTENT) == identity)
    return rows, data.labels(TRANSFORM)[rows]


def accuracy(encoder, views: PairViews, x: np.ndarray, y: np.ndarray, batch: int = 100) -> float:
    encoder.eval()
    with torch.no_grad():
        pred = np.concatenate([encoder(views.prepare(torch.from_numpy(x[i:i + batch])))[0].argmax(1).numpy()
                               for i in range(0, len(x), batch)])  # fmt: skip
    encoder.train()
    return float((pred == y).mean())


def invariant_features(x: np.ndarray) -> np.ndarray:
    """Rotation-invariant statistics of ``x (N, 1, D, D, D)``: the mean density and the mean log
    power in each one-voxel shell about the box centre (the power spectrum is shift-invariant too).
    ``-> (N, 2 * (D // 2))``."""
    vol = x[:, 0].astype(np.float64)
    size = vol.shape[-1]
    axis = np.arange(size) - (size - 1) / 2
    shell = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    shell = np.minimum(shell.astype(int), size // 2 - 1).ravel()
    counts = np.bincount(shell, minlength=size // 2)
    power = np.abs(np.fft.fftshift(np.fft.fftn(vol, axes=(1, 2, 3)), axes=(1, 2, 3))) ** 2
    density = np.stack([np.bincount(shell, v.ravel(), minlength=size // 2) for v in vol]) / counts
    spectrum = np.stack([np.bincount(shell, np.log(p.ravel() + 1e-12), minlength=size // 2) for p in power]) / counts
    return np.hstack([density, spectrum])


def feature_reader(parts: dict) -> dict:
    """Logistic regression on :func:`invariant_features`, C chosen on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = {name: (invariant_features(x), y) for name, (x, y) in parts.items()}
    best: dict = {"val": -1.0}
    for c in (0.01, 0.1, 1.0, 10.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(*feats["train"])
        val = float(clf.score(*feats["val"]))
        if val > best["val"]:
            best = {"val": val, "C": c, "train": float(clf.score(*feats["train"])),
                    "test": float(clf.score(*feats["test"]))}  # fmt: skip
    return {"C": best["C"], "train_accuracy": best["train"], "val_accuracy": best["val"],
            "test_accuracy": best["test"]}  # fmt: skip


def ceiling(cfg, splits, identity: int, epochs: int, lr: float, seed: int) -> dict:
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    parts = {}
    for name in ("train", "val", "test"):
        data = getattr(splits, name)
        rows, y = identity_rows(data, identity)
        parts[name] = (data.batch(rows), y)
    features = feature_reader(parts)
    log.info("%s invariant features: validation %.3f, test %.3f", IDENTITIES[identity],
             features["val_accuracy"], features["test_accuracy"])  # fmt: skip
    n_states = int(parts["train"][1].max()) + 1
    shape = parts["train"][0].shape[1:]
    options = {**cfg.model.encoder_options, "split": False}
    encoder = build_encoder(cfg.model.arch, shape, n_states, 1, **options)
    transform = build_transform(cfg.transform)
    views = PairViews(ViewSettings(**vars(cfg.views)))
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    x_train, y_train = parts["train"]
    batch = cfg.train.batch_size
    best = {"val": -1.0}
    curve = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        losses, hits = [], []
        for i in range(0, len(order), batch):
            rows = order[i:i + batch]
            x = views.finish(transform(torch.from_numpy(x_train[rows])))
            y = torch.from_numpy(y_train[rows]).long()
            logits = encoder(x)[0]
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            hits.append(float((logits.argmax(1) == y).float().mean()))
        val = accuracy(encoder, views, *parts["val"])
        curve.append({"epoch": epoch, "val_accuracy": val, "train_loss": float(np.mean(losses)),
                      "train_accuracy": float(np.mean(hits))})  # fmt: skip
        log.info("%s epoch %d: training loss %.3f, accuracy %.3f; validation accuracy %.3f",
                 IDENTITIES[identity], epoch, curve[-1]["train_loss"], curve[-1]["train_accuracy"], val)  # fmt: skip
        if val > best["val"]:
            best = {"val": val, "epoch": epoch, "test": accuracy(encoder, views, *parts["test"])}
    return {"n_train": len(x_train), "n_val": len(parts["val"][1]), "n_test": len(parts["test"][1]),
            "chance": float(np.bincount(parts["test"][1]).max() / len(parts["test"][1])),
            "best_epoch": best["epoch"], "val_accuracy": best["val"], "test_accuracy": best["test"],
            "best_train_accuracy": max(r["train_accuracy"] for r in curve),
            "features": features, "curve": curve}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--n-per-state", type=int, default=500)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--identities", nargs="+", default=IDENTITIES, choices=IDENTITIES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", default="state_ceiling")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = resolve_config(
        config_files=[REPO / "configs" / "subtomo.yaml"],
        overrides=[f"data.params.n_per_state={args.n_per_state}", f"data.params.snr={args.snr}",
                   "data.params.progress=false", *args.overrides],
    )  # fmt: skip
    splits = load_splits(cfg)
    start = time.time()
    results = {name: ceiling(cfg, splits, IDENTITIES.index(name), args.epochs, args.lr, args.seed)
               for name in args.identities}  # fmt: skip
    wall = time.time() - start
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(
        json.dumps({"args": vars(args), "device": device_name("cpu"), "wall_seconds": wall, "results": results},
                   indent=1, default=str)
    )
    lines = [
        f"# Supervised readers of the conformation state (SNR {args.snr}, {args.n_per_state} per state)",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/state_ceiling.py', *sys.argv[1:]])}`",
        "",
        f"- device: {device_name('cpu')}; wall {wall / 60:.1f} min for all identities; seed {args.seed}",
        f"- encoder: configs/subtomo.yaml's encoder with one trunk (options as set), a head with one logit per "
        f"state; Adam lr {args.lr}, batch {cfg.train.batch_size}, {args.epochs} epochs, each batch drawn as a "
        "training view (transformation, then the views' low-pass, mask and normalisation); epoch kept by "
        "validation accuracy",
        "- invariant features: radial profiles of density and log power spectrum (2 x 16 numbers), "
        "logistic regression, C chosen on validation",
        "",
        "| identity | train / val / test particles | encoder: best training accuracy | encoder: best epoch (val acc) "
        "| encoder: test accuracy | features: train / val / test accuracy | chance (test) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        f = r["features"]
        lines.append(f"| {name} | {r['n_train']} / {r['n_val']} / {r['n_test']} | {r['best_train_accuracy']:.3f} | "
                     f"{r['best_epoch']} ({r['val_accuracy']:.3f}) | {r['test_accuracy']:.3f} | "
                     f"{f['train_accuracy']:.3f} / {f['val_accuracy']:.3f} / {f['test_accuracy']:.3f} | "
                     f"{r['chance']:.3f} |")  # fmt: skip
    notes = args.results / f"{args.name}_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
