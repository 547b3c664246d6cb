"""Pair views and code geometry on subtomograms: which setting lets the content code separate identities.

Trains short runs of named variants (each a list of ``--set`` overrides on ``configs/subtomo.yaml``)
on a VALIDATION draw of the built-in phantoms (``data.params.seed`` 1 by default, a different
random draw from the seed-0 set the quality benchmark reports on), and records per variant:
D(c|c), D(c|z), SAP(c), ARI(c) with k = 3, conformation D(state|z) / D(state|c) within the
nucleosome, and the code geometry: ``c_neg`` (mean |cos| between two particles' c) at the first
and last epoch, and at initialisation.

Usage (from the repository root)::

    python benchmarks/subtomo_views.py --epochs 8 --n-per-state 100 --threads 2

Writes ``benchmarks/results/subtomo_views.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import torch

from dualcontrast.workflow import resolve_config, train_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_2d import device_name

REPO = Path(__file__).resolve().parents[1]
LIGHT = [
    "model.encoder_options={channels: [16, 32, 64], head_channels: [128, 256]}",
    "model.decoder_options={channels: [32, 16, 8]}",
]
VARIANTS: dict[str, list[str]] = {
    "paper pairing": ["views.pairing=paper"],
    "symmetric views (default)": [],
    "symmetric + instance norm": ["model.encoder_options.norm=instance"],
    "vae2, symmetric": ["model.name=vae2"],
}


def init_geometry(n: int = 64) -> list[dict]:
    """At initialisation (reference 3D encoder, d = 10, seed 0): mean |cos| between two particles'
    c, on raw and on batch-centred codes, and the head bias's share of |c|, with and without instance
    norm in the trunk and with the head bias zeroed. Inputs: finished views of seed-1 phantoms."""
    import numpy as np

    from dualcontrast.data import load_data
    from dualcontrast.nn import build_encoder
    from dualcontrast.transforms.views import PairViews

    splits = load_data(name="phantoms3d", params={"n_per_state": 10, "seed": 1, "progress": False},
                       normalize="per_sample")
    x = PairViews().prepare(torch.as_tensor(np.asarray(splits.train.x[:n]), dtype=torch.float32))

    def mean_abs_cos(c: torch.Tensor) -> float:
        u = torch.nn.functional.normalize(c, dim=1)
        m = (u @ u.T).abs()
        return float(m[~torch.eye(len(c), dtype=torch.bool)].mean())

    rows = []
    for norm in ("none", "instance"):
        for zero_bias in (False, True):
            torch.manual_seed(0)
            enc = build_encoder("subtomo", tuple(x.shape[1:]), 10, 10, norm=norm)
            if zero_bias:
                torch.nn.init.zeros_(enc.heads.linear.bias)
            with torch.no_grad():
                c = enc(x)[0]
            bias = enc.heads.linear.bias.detach()[:10]
            rows.append({
                "trunk norm": norm, "head bias": "zero" if zero_bias else "default init",
                "c_neg": mean_abs_cos(c), "c_neg centred": mean_abs_cos(c - c.mean(0)),
                "bias share of |c|": float(bias.norm() / c.norm(dim=1).mean()),
            })  # fmt: skip
    return rows


def _log_column(path: Path, column: str) -> list[float]:
    with path.open() as f:
        return [float(r[column]) for r in csv.DictReader(f) if r.get(column) not in (None, "")]


def run_variant(label: str, overrides: list[str], args: argparse.Namespace) -> dict:
    run = Path(args.workdir) / label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    data = [
        f"data.params.n_per_state={args.n_per_state}",
        f"data.params.snr={args.snr}",
        f"data.params.seed={args.data_seed}",
        "data.params.progress=false",
        f"train.epochs={args.epochs}",
        f"train.lr={args.lr}",
        f"train.seed={args.seed}",
        "train.progress=false",
        "eval.figures=false",
    ]
    cfg = resolve_config(
        config_files=[REPO / "configs" / "subtomo.yaml"], overrides=data + LIGHT + overrides + args.overrides
    )
    t0 = time.time()
    if args.reuse and (run / "metrics.json").exists():
        seconds = json.loads((run / "train_seconds.json").read_text()) if (run / "train_seconds.json").exists() else float("nan")
    else:
        train_run(cfg, run, overwrite=True)
        seconds = time.time() - t0
        (run / "train_seconds.json").write_text(json.dumps(seconds))
    scores = json.loads((run / "metrics.json").read_text())["scores"]
    c_neg = _log_column(run / "log.csv", "c_neg") if cfg.loss.w_c_neg and cfg.model.name != "vae2" else []
    nucleosome = scores.get("within_content", {}).get("0", {})
    return {
        "overrides": overrides,
        "d_c_c": scores.get("d_c_c"),
        "d_c_z": scores.get("d_c_z"),
        "sap_c": scores.get("sap_c"),
        "ari_c": scores.get("ari_c"),
        "d_state_z_nucleosome": nucleosome.get("d_z_z"),
        "d_state_c_nucleosome": nucleosome.get("d_z_c"),
        "c_neg_first_epoch": c_neg[0] if c_neg else None,
        "c_neg_last_epoch": c_neg[-1] if c_neg else None,
        "seconds": seconds,
    }


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n-per-state", type=int, default=100)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=1, help="phantom draw (the quality benchmark reports on 0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=str(REPO / "runs" / "bench_subtomo_views"))
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--reuse", action="store_true", help="read variants already trained in --workdir")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    device = device_name("cpu")
    t0 = time.time()
    geometry = init_geometry()
    results = {v: run_variant(v, VARIANTS[v], args) for v in args.variants}
    wall = time.time() - t0
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "subtomo_views.json").write_text(
        json.dumps({"args": vars(args), "device": device, "wall_seconds": wall, "results": results,
                    "init_geometry": geometry}, indent=2)
    )
    cmd = " ".join(["python benchmarks/subtomo_views.py", *sys.argv[1:]])
    lines = [
        "# Pair views and code geometry on subtomograms (validation draw of the built-in phantoms)",
        "",
        f"Command: `{cmd}`",
        "",
        f"- device: {device}; wall time {wall / 60:.1f} min for all variants",
        f"- data: phantoms3d, {args.n_per_state} copies per state, SNR {args.snr}, draw seed {args.data_seed} "
        "(a validation draw: settings are chosen here, never on the quality benchmark's seed-0 test split)",
        f"- schedule: {args.epochs} epochs, Adam {args.lr:g}, batch 50, light networks (encoder channels "
        "16-32-64, head 128-256; conv decoder 32-16-8), one seed",
        "- c_neg: mean |cos| between the content codes of two different particles (1: every c points the same way)",
        "",
        "| variant | D(c\\|c) | D(c\\|z) | SAP(c) | ARI(c), k=3 | D(state\\|z) nucleosome | D(state\\|c) nucleosome "
        "| c_neg epoch 1 | c_neg last | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v, r in results.items():
        lines.append(
            f"| {v} | {fmt(r['d_c_c'])} | {fmt(r['d_c_z'])} | {fmt(r['sap_c'])} | {fmt(r['ari_c'])} | "
            f"{fmt(r['d_state_z_nucleosome'])} | {fmt(r['d_state_c_nucleosome'])} | "
            f"{fmt(r['c_neg_first_epoch'])} | {fmt(r['c_neg_last_epoch'])} | {r['seconds']:.0f} |"
        )
    lines += [
        "",
        "## Code geometry at initialisation (reference 3D encoder, d = 10, 64 finished phantom views)",
        "",
        "| trunk norm | head bias | c_neg | c_neg on batch-centred c | head bias / mean \\|c\\| |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {g['trunk norm']} | {g['head bias']} | {g['c_neg']:.3f} | {g['c_neg centred']:.3f} | "
        f"{g['bias share of |c|']:.3f} |"
        for g in geometry
    ]
    notes = out / "subtomo_views_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    (out / "subtomo_views.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
