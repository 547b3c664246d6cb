"""Supervised ceiling of the conformation bar: how well can the subtomogram encoder read each
identity's state when it is trained WITH the state labels, on the data and budget of
``subtomo_quality.py``?

D(state|z) >= 0.80 within the nucleosome asks an unsupervised z to hold the conformation. This
trains the same conv trunk (one trunk, its content head sized to the number of states) with
cross-entropy on the states of one identity, rotation-augmented by the training transformation,
keeps the epoch of best validation accuracy (validation carved from training, as in training
runs) and scores it on the test particles of that identity. If labels cannot get there, no
unsupervised code can: the bar is then out of reach of the data, not of the method.

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
from dualcontrast.workflow import load_splits, resolve_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_2d import device_name
from subtomo_quality import IDENTITIES, REPO

log = logging.getLogger("state_ceiling")


def identity_rows(data, identity: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(data.labels(CONTENT) == identity)
    return rows, data.labels(TRANSFORM)[rows]


def accuracy(encoder, x: np.ndarray, y: np.ndarray, batch: int = 100) -> float:
    encoder.eval()
    with torch.no_grad():
        pred = np.concatenate([encoder(torch.from_numpy(x[i:i + batch]))[0].argmax(1).numpy()
                               for i in range(0, len(x), batch)])  # fmt: skip
    encoder.train()
    return float((pred == y).mean())


def ceiling(cfg, splits, identity: int, epochs: int, lr: float, seed: int) -> dict:
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    parts = {}
    for name in ("train", "val", "test"):
        data = getattr(splits, name)
        rows, y = identity_rows(data, identity)
        parts[name] = (data.batch(rows), y)
    n_states = int(parts["train"][1].max()) + 1
    shape = parts["train"][0].shape[1:]
    options = {**cfg.model.encoder_options, "split": False}
    encoder = build_encoder(cfg.model.arch, shape, n_states, 1, **options)
    transform = build_transform(cfg.transform)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    x_train, y_train = parts["train"]
    batch = cfg.train.batch_size
    best = {"val": -1.0}
    curve = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        for i in range(0, len(order), batch):
            rows = order[i:i + batch]
            x = transform(torch.from_numpy(x_train[rows]))
            loss = F.cross_entropy(encoder(x)[0], torch.from_numpy(y_train[rows]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = accuracy(encoder, *parts["val"])
        curve.append({"epoch": epoch, "val_accuracy": val, "train_loss": float(loss)})
        log.info("%s epoch %d: validation accuracy %.3f", IDENTITIES[identity], epoch, val)
        if val > best["val"]:
            best = {"val": val, "epoch": epoch, "test": accuracy(encoder, *parts["test"])}
    return {"n_train": len(x_train), "n_val": len(parts["val"][1]), "n_test": len(parts["test"][1]),
            "chance": float(np.bincount(parts["test"][1]).max() / len(parts["test"][1])),
            "best_epoch": best["epoch"], "val_accuracy": best["val"], "test_accuracy": best["test"],
            "curve": curve}  # fmt: skip


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
        f"# Supervised ceiling of D(state|z): the encoder trained on the state labels (SNR {args.snr}, "
        f"{args.n_per_state} per state)",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/state_ceiling.py', *sys.argv[1:]])}`",
        "",
        f"- device: {device_name('cpu')}; wall {wall / 60:.1f} min for all identities; seed {args.seed}",
        f"- network: configs/subtomo.yaml's encoder with one trunk (options as set), a head with one logit per state; "
        f"Adam lr {args.lr}, batch {cfg.train.batch_size}, {args.epochs} epochs, each batch rotated by the "
        "training transformation; epoch kept by validation accuracy",
        "",
        "| identity | train / val / test particles | best epoch (val acc) | test accuracy | chance |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['n_train']} / {r['n_val']} / {r['n_test']} | {r['best_epoch']} "
                     f"({r['val_accuracy']:.3f}) | {r['test_accuracy']:.3f} | {r['chance']:.3f} |")  # fmt: skip
    notes = args.results / f"{args.name}_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
