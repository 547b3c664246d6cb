"""What ``train.restarts N`` gives: the best of N consecutive seeds by validation, from per-seed runs.

``train.restarts N`` with ``train.seed s`` trains seeds s .. s + N - 1, each exactly as the run of
that seed alone (tests/unit/test_workflow_restarts.py), and keeps the one with the best
validation score of ``train.select``. So its outcome can be read off runs already made one seed
at a time: this script takes ``shapes2d_state.py`` result files (JSON; one variant, each seed
once), groups the seeds into consecutive blocks of N (0-1, 2-3, ... for N = 2) and reports, per
block, the seed the validation score keeps and its test scores, then mean ± std over blocks.
With ``--workdir`` (the runs' ``shapes2d_state.py --workdir``) it also scores each run's kept
checkpoint by the training objective on the validation split and by its content-negative term
(the score ``train.restarts`` compares where the data have no content labels), and says which
seed each would keep. ``restart_scores.py`` compares more label-free scores over all subsets.

    python benchmarks/restarts.py --variant base --restarts 2 3 4 \\
        --inputs benchmarks/results/shapes2d_state_n1000.json benchmarks/results/shapes2d_state_n1000_seeds23.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes2d_state import tag
from sweep import cell, write_report

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("d_c_c", "d_z_z", "d_z_c", "ari_c")
LABELS = {"d_c_c": "D(c\\|c)", "d_z_z": "D(state\\|z)", "d_z_c": "D(state\\|c)", "ari_c": "ARI(c)"}
SCORE_LABELS = {"d_c_c": "D(c\\|c)", "c_neg": "content-negative term"}


def seed_rows(paths: list[Path], variant: str) -> dict[int, dict]:
    """``{seed: row}`` of ``variant`` over the result files (a seed found twice is an error)."""
    found: dict[int, dict] = {}
    for path in paths:
        doc = json.loads(path.read_text())
        for seed, row in zip(doc["args"]["seeds"], doc["variants"].get(variant, []), strict=False):
            if seed in found:
                raise SystemExit(f"{path}: seed {seed} of {variant!r} is in another input too")
            found[seed] = {**row, "file": path.name}
    return dict(sorted(found.items()))


def blocks(seeds: list[int], n: int) -> list[list[int]]:
    """Consecutive seeds in blocks of ``n`` starting at multiples of ``n`` (incomplete blocks left out)."""
    return [list(range(s, s + n)) for s in range(0, max(seeds) + 1, n) if all(t in seeds for t in range(s, s + n))]


def choose(rows: dict[int, dict], block: list[int], score: str = "d_c_c") -> int:
    """The seed ``train.restarts`` keeps: the best validation ``score`` at the kept checkpoints
    (highest D(c|c), lowest c_neg), the lower seed on a tie."""
    sign = -1.0 if score == "c_neg" else 1.0
    return max(block, key=lambda s: (sign * rows[s]["val"][score], -s))


def curves(workdir: str, variant: str, seeds: list[int], score: str, extra: list[Path] = ()) -> dict[int, dict[int, float]]:
    """``{seed: {epoch: validation score}}`` from the runs' eval_log.csv, or for seeds without a run directory
    from ``extra`` ``train.restarts`` runs (``restarts/seed<S>/``, exactly the seed's run, perhaps stopped
    early by ``train.restart_epochs``); seeds found in neither are left out."""
    import csv

    out = {}
    for s in seeds:
        found = [Path(f"{workdir}_shapes2d_{tag(variant, s)}") / "eval_log.csv",
                 *(Path(r) / "restarts" / f"seed{s}" / "eval_log.csv" for r in extra)]  # fmt: skip
        for path in (f for f in found if f.exists()):
            with open(path, newline="") as f:
                out[s] = {int(r["epoch"]): float(r[score]) for r in csv.DictReader(f) if r.get(score)}
            break
    return out


def choose_early(curve: dict[int, dict[int, float]], subset: tuple[int, ...], epoch: int, score: str = "d_c_c") -> int:
    """The seed ``train.restart_epochs epoch`` keeps: the best validation score up to ``epoch`` (lower seed on a tie)."""
    sign = -1.0 if score == "c_neg" else 1.0
    return max(subset, key=lambda s: (max(sign * v for e, v in curve[s].items() if e <= epoch), -s))


def model_validation_terms(model, cfg, val) -> dict[str, float]:
    """The loss terms of a trained ``model`` on the validation split ``val`` (no optimizer step), as
    ``train.select`` scores runs without labels."""
    import torch

    from dualcontrast.training import validation_loss

    return validation_loss(model, model.configure_optimizers(cfg.train.lr), val, batch_size=cfg.train.batch_size,
                           device=torch.device("cpu"), seed=cfg.eval.seed)  # fmt: skip


def validation_terms(run_dir: Path, checkpoint: str = "best") -> dict[str, float]:
    """:func:`model_validation_terms` of a run's ``checkpoint`` (best | last)."""
    import torch

    from dualcontrast.config import load_config
    from dualcontrast.models import load_trained_model
    from dualcontrast.rundir import RunDir
    from dualcontrast.workflow import load_splits

    run = RunDir.open(run_dir)
    cfg = load_config(run.config)
    model, _ = load_trained_model(run, cfg, torch.device("cpu"), checkpoint)
    return model_validation_terms(model, cfg, load_splits(cfg).val)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=Path, nargs="+", required=True, help="shapes2d_state.py result JSON files")
    p.add_argument("--variant", default="base")
    p.add_argument("--restarts", type=int, nargs="+", default=[2, 3])
    p.add_argument("--score", choices=["d_c_c", "c_neg"], default="d_c_c",
                   help="the runs' train.select: the validation score restarts compare")  # fmt: skip
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", default="shapes2d_restarts")
    p.add_argument("--workdir", help="the runs' shapes2d_state.py --workdir: score their validation losses too")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="which checkpoint --workdir scores")
    p.add_argument("--restart-runs", type=Path, nargs="*", default=[],
                   help="train.restarts runs whose restarts/seed<S>/eval_log.csv give the curves of seeds without "
                        "their own run directory")  # fmt: skip
    p.add_argument("--choose-at", type=int, nargs="*", default=[],
                   help="with --workdir: also the choice of train.restart_epochs E, from the runs' eval_log.csv")  # fmt: skip
    args = p.parse_args()
    rows = seed_rows(args.inputs, args.variant)
    seeds = list(rows)
    losses = {}
    if args.workdir:
        for s in seeds:
            run_dir = Path(f"{args.workdir}_shapes2d_{tag(args.variant, s)}")
            if (run_dir / "config.yaml").exists():
                losses[s] = validation_terms(run_dir, args.checkpoint)
    lines = [
        f"# `train.restarts`: the best of N seeds by validation ({args.variant}, built-in 2D data)",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/restarts.py', *sys.argv[1:]])}`",
        "",
        f"- per-seed runs: {', '.join(sorted({r['file'] for r in rows.values()}))} (seeds {seeds}); the "
        "protocol, device and wall time are in those files",
        "- restarts N: seeds in blocks of N (0..N-1, N..2N-1, ...); per block the seed with the best "
        f"validation {SCORE_LABELS[args.score].replace(chr(92), '')} at its kept checkpoint, as `train.restarts N` "
        "with `train.seed` at the block's first seed keeps it; its test scores. Training costs N runs per block.",
        "",
        f"| restarts | block | kept seed (validation {SCORE_LABELS[args.score]}) | " + " | ".join(f"{LABELS[k]} test" for k in COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    single = {k: [float(rows[s]["test"][k]) for s in seeds] for k in COLUMNS}
    lines.append("| 1 | each seed | " + f"{len(seeds)} runs | " + " | ".join(cell(single[k]) for k in COLUMNS) + " |")
    summary = {"1": {k: single[k] for k in COLUMNS}}
    for n in args.restarts:
        kept = []
        for block in blocks(seeds, n):
            s = choose(rows, block, args.score)
            kept.append(s)
            lines.append(f"| {n} | {block[0]}-{block[-1]} | {s} ({rows[s]['val'][args.score]:.3f}) | "
                         + " | ".join(f"{float(rows[s]['test'][k]):.3f}" for k in COLUMNS) + " |")  # fmt: skip
        if len(kept) > 1:
            lines.append(f"| {n} | mean ± std | {len(kept)} blocks | "
                         + " | ".join(cell([float(rows[s]["test"][k]) for s in kept]) for k in COLUMNS) + " |")  # fmt: skip
        summary[str(n)] = {k: [float(rows[s]["test"][k]) for s in kept] for k in COLUMNS}
    if losses:
        terms = [k for k in next(iter(losses.values())) if k != "loss"]
        lines += [
            "",
            "Without labels `train.restarts` compares the content-negative term of the training objective on the "
            "validation split (before 2026-12-08 the whole objective, now `train.select val_loss`; here at "
            + ("each run's best.pt, kept by validation D(c|c)" if args.checkpoint == "best" else "each run's last.pt")
            + "). Seeds whose run directory was found:",
            "",
            "| seed | validation D(c\\|c) | test D(c\\|c) | validation loss | " + " | ".join(terms) + " |",
            "|---|---|---|---|" + "---|" * len(terms),
        ]
        for s, t in losses.items():
            lines.append(f"| {s} | {rows[s]['val']['d_c_c']:.3f} | {float(rows[s]['test']['d_c_c']):.3f} | "
                         f"{t['loss']:.4f} | " + " | ".join(f"{t[k]:.4f}" for k in terms) + " |")  # fmt: skip
        for n in args.restarts:
            for block in blocks(list(losses), n):
                by_loss = min(block, key=lambda s: (losses[s]["loss"], s))
                by_c_neg = min(block, key=lambda s: (losses[s]["c_neg"], s))
                lines.append(f"- restarts {n}, seeds {block[0]}-{block[-1]}: validation D(c|c) keeps seed "
                             f"{choose(rows, block)}, the validation loss seed {by_loss}, its content-negative "
                             f"term (`train.select c_neg`) seed {by_c_neg}")  # fmt: skip
    early: dict[str, dict[str, dict[str, float]]] = {}
    if args.choose_at and args.workdir:
        curve = curves(args.workdir, args.variant, seeds, args.score, args.restart_runs)
        epochs = max(max(c) for c in curve.values())
        test = {s: float(rows[s]["test"]["d_c_c"]) for s in seeds}
        lines += [
            "",
            f"`train.restart_epochs E`: the restarts compared after E of {epochs} epochs (best validation "
            f"{SCORE_LABELS[args.score]} so far, from the runs' eval_log.csv), the kept one trained on: its outcome "
            "is its full run's. Over all N-subsets of the seeds whose log reaches E: mean test D(c\\|c) of the "
            "kept seed, the share of subsets where it is >= 0.95, and how often it is the seed chosen at the end "
            "(on the full runs' validation score, as above). Cost in epochs of training: N E + (T - E) against N T.",
            "",
            "| restarts | E | seeds | subsets | epochs trained | test D(c\\|c) | share >= 0.95 | same choice as at "
            "the end | at the end: test D(c\\|c), share >= 0.95 | random seed |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in args.restarts:
            for e in args.choose_at:
                usable = [s for s in seeds if s in curve and max(curve[s]) >= e]
                subsets = list(itertools.combinations(usable, n))
                if not subsets:
                    continue
                kept = [choose_early(curve, t, e, args.score) for t in subsets]
                end = [choose(rows, list(t), args.score) for t in subsets]
                row = {"seeds": usable, "test_d_c_c": float(np.mean([test[s] for s in kept])),
                       "share_0.95": float(np.mean([test[s] >= 0.95 for s in kept])),
                       "same": float(np.mean([a == b for a, b in zip(kept, end, strict=True)])),
                       "end_test_d_c_c": float(np.mean([test[s] for s in end])),
                       "end_share_0.95": float(np.mean([test[s] >= 0.95 for s in end])),
                       "random": float(np.mean([test[s] for t in subsets for s in t]))}  # fmt: skip
                early.setdefault(str(n), {})[str(e)] = row
                lines.append(f"| {n} | {e} | {usable[0]}-{usable[-1]} ({len(usable)}) | {len(subsets)} | "
                             f"{n * e + epochs - e} | {row['test_d_c_c']:.3f} | {row['share_0.95']:.2f} | "
                             f"{row['same']:.2f} | {row['end_test_d_c_c']:.3f}, {row['end_share_0.95']:.2f} | "
                             f"{row['random']:.3f} |")  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    doc = {"args": {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in vars(args).items()},
           "test": summary, "validation_losses": {str(s): t for s, t in losses.items()}, "restart_epochs": early}  # fmt: skip
    (args.results / f"{args.name}.json").write_text(json.dumps(doc, indent=1))
    write_report(args.results, args.name, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
