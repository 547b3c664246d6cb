"""Which label-free score chooses among restarts? Each candidate against validation D(c|c), on runs already made.

Without content labels ``train.restarts`` (and best.pt) must rank trainings by something the data
alone give. This script scores the saved checkpoints of ``shapes2d_state.py`` runs (one group of
seeds per variant, each seed one run; seeds are exchangeable, so every subset of N seeds of a
group is a possible restart run) by each candidate, on the validation split:

- ``val_loss``: the training objective (no optimizer step);
- ``c_neg``: its content-negative term, the mean |cos| between content codes of different samples
  (lower better);
- ``kl_c``: its content KL term, the information c carries (higher better);
- ``mean_abs_cos``: |cos| over all pairs of validation content codes as embedded (lower better);
- ``silhouette``: the best silhouette of k-means on the standardised content codes, k = 2 .. 10;
- ``agreement``: the mean adjusted Rand index between this run's k-means clusters of the content
  codes and the other restarts' (k = the number of content classes, which a user would have to
  guess: an advantage this candidate is given). Good runs resemble each other and bad runs each
  differ in their own way (the idea of UDR, Duan et al. 2020); with two restarts it cannot choose.

For N restarts it reports over all N-subsets of each group how often each score keeps the seed
that validation D(c|c) (labels) keeps, and the mean test D(c|c) of the seed it keeps, beside a
random choice and the labelled choice.

    python benchmarks/restart_scores.py --workdir runs/bench_state_n1000 \\
        --group base:2-11 --group hinge-pivot-z-neg-0.3:0-3 --group cosine:0-1
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from restarts import model_validation_terms
from shapes2d_state import tag
from sweep import write_report

REPO = Path(__file__).resolve().parents[1]
# name -> (label, higher is better)
SCORES = {
    "val_loss": ("validation loss", False),
    "c_neg": ("content-negative term", False),
    "kl_c": ("content KL", True),
    "mean_abs_cos": ("mean \\|cos\\| of c", False),
    "silhouette": ("silhouette of c", True),
    "agreement": ("agreement with the other restarts", True),
}
FIT_SAMPLES = 4000  # training codes the D(c|c) probes are fit on (the first ones; enough to rank runs)


def parse_group(text: str) -> tuple[str, list[int]]:
    """``variant:2-5`` or ``variant:0,3`` -> (variant, seeds)."""
    variant, _, seeds = text.rpartition(":")
    if not variant:
        raise SystemExit(f"--group {text!r}: use VARIANT:FIRST-LAST or VARIANT:S,S,...")
    if "-" in seeds:
        first, last = (int(s) for s in seeds.split("-"))
        return variant, list(range(first, last + 1))
    return variant, [int(s) for s in seeds.split(",")]


def cluster_scores(c: np.ndarray, k_agree: int, seed: int = 0) -> tuple[float, float, np.ndarray]:
    """(mean |cos| over all pairs, best k-means silhouette over k = 2..10, the k_agree-means labels)
    of content codes ``c``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    unit = c / np.linalg.norm(c, axis=1, keepdims=True)
    cos = np.abs(unit @ unit.T)
    mean_abs_cos = float(cos[np.triu_indices(len(c), 1)].mean())
    x = StandardScaler().fit_transform(c)
    silhouette = max(
        float(silhouette_score(x, KMeans(k, n_init=4, random_state=seed).fit_predict(x))) for k in range(2, 11)
    )
    return mean_abs_cos, silhouette, KMeans(k_agree, n_init=4, random_state=seed).fit_predict(x)


def score_run(run_dir: Path, checkpoint: str, splits_cache: dict) -> dict:
    """A run's validation / test D(c|c) and its label-free scores (agreement labels kept aside)."""
    import torch

    from dualcontrast.config import load_config
    from dualcontrast.data import CONTENT
    from dualcontrast.evaluation import d_score, embed
    from dualcontrast.models import load_trained_model
    from dualcontrast.rundir import RunDir
    from dualcontrast.workflow import load_splits

    run = RunDir.open(run_dir)
    cfg = load_config(run.config)
    key = json.dumps(cfg.to_dict()["data"], sort_keys=True, default=str)
    if key not in splits_cache:
        splits_cache[key] = load_splits(cfg)
    splits = splits_cache[key]
    model, _ = load_trained_model(run, cfg, torch.device("cpu"), checkpoint)
    fit = splits.train.subset(np.arange(min(FIT_SAMPLES, len(splits.train))))
    tr, va, te = (embed(model, d, batch_size=500, progress=False) for d in (fit, splits.val, splits.test))
    terms = model_validation_terms(model, cfg, splits.val)
    k = len(np.unique(va[CONTENT]))
    mean_abs_cos, silhouette, labels = cluster_scores(va["c_mu"], k, cfg.eval.seed)
    return {
        "val_d_c_c": d_score(tr["c_mu"], tr[CONTENT], va["c_mu"], va[CONTENT], seed=cfg.eval.seed),
        "test_d_c_c": d_score(tr["c_mu"], tr[CONTENT], te["c_mu"], te[CONTENT], seed=cfg.eval.seed),
        "val_loss": terms["loss"], "c_neg": terms["c_neg"], "kl_c": terms["kl_c"],
        "mean_abs_cos": mean_abs_cos, "silhouette": silhouette, "labels": labels,
    }  # fmt: skip


def agreement(runs: dict[int, dict], subset: tuple[int, ...]) -> dict[int, float]:
    """Each seed's mean adjusted Rand index with the other seeds of ``subset``."""
    from sklearn.metrics import adjusted_rand_score

    return {s: float(np.mean([adjusted_rand_score(runs[s]["labels"], runs[t]["labels"]) for t in subset if t != s]))
            for s in subset}  # fmt: skip


def choices(runs: dict[int, dict], n: int) -> dict[str, dict[str, float]]:
    """Over all n-subsets: per score, how often it keeps the seed validation D(c|c) keeps (``hit``) and the
    mean test D(c|c) of the seed it keeps; ``random`` and ``labels`` for reference."""
    subsets = list(itertools.combinations(sorted(runs), n))
    picks: dict[str, list[int]] = {name: [] for name in ["labels", *SCORES]}
    for subset in subsets:
        values = {name: {s: runs[s][name] for s in subset} for name in SCORES if name != "agreement"}
        values["agreement"] = agreement(runs, subset)
        values["labels"] = {s: runs[s]["val_d_c_c"] for s in subset}
        for name, by_seed in values.items():
            sign = -1.0 if name in SCORES and not SCORES[name][1] else 1.0
            picks[name].append(max(subset, key=lambda s: (sign * by_seed[s], -s)))
    out = {"random": {"test_d_c_c": float(np.mean([runs[s]["test_d_c_c"] for t in subsets for s in t])),
                      "hit": float(np.mean([1.0 / n for _ in subsets]))}}  # fmt: skip
    for name, kept in picks.items():
        if name == "agreement" and n < 3:
            continue  # two restarts agree with each other equally
        best = [max(runs[s]["val_d_c_c"] for s in t) for t in subsets]
        out[name] = {"test_d_c_c": float(np.mean([runs[s]["test_d_c_c"] for s in kept])),
                     "hit": float(np.mean([runs[s]["val_d_c_c"] >= b for s, b in zip(kept, best, strict=True)]))}  # fmt: skip
    out["subsets"] = len(subsets)  # type: ignore[assignment]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="the runs' shapes2d_state.py --workdir")
    p.add_argument("--group", action="append", required=True, help="VARIANT:FIRST-LAST (or VARIANT:S,S,...)")
    p.add_argument("--checkpoints", nargs="+", choices=["best", "last"], default=["best", "last"])
    p.add_argument("--restarts", type=int, nargs="+", default=[2, 3])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", default="restart_scores")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    start = time.time()
    groups = [parse_group(g) for g in args.group]
    cache: dict = {}
    scored: dict[str, dict[str, dict[int, dict]]] = {}
    for variant, seeds in groups:
        for ck in args.checkpoints:
            runs = {}
            for s in seeds:
                run_dir = Path(f"{args.workdir}_shapes2d_{tag(variant, s)}")
                if not (run_dir / "checkpoints" / f"{ck}.pt").exists():
                    raise SystemExit(f"{run_dir}: no {ck}.pt (train it with shapes2d_state.py first)")
                runs[s] = score_run(run_dir, ck, cache)
            scored.setdefault(variant, {})[ck] = runs
    lines = [
        "# Label-free scores for choosing among restarts (built-in 2D data)",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/restart_scores.py', *sys.argv[1:]])}`",
        "",
        f"- runs: `{args.workdir}_shapes2d_state_<variant>[_seed<S>]`, made by `shapes2d_state.py` (their "
        "protocol, device and training times are in its result files); each checkpoint is scored here, "
        f"on the validation split (2,000 images), D(c|c) probes fit on the first {FIT_SAMPLES} training images",
        f"- device: CPU, {args.threads} torch thread(s); wall {(time.time() - start) / 60:.1f} min for the scoring",
        "- per group and checkpoint, over all N-subsets of its seeds (each a possible `train.restarts N`): "
        "`hit` = how often the score keeps the seed that validation D(c|c) keeps; `test` = mean test D(c|c) "
        "of the seed it keeps. best.pt was kept by validation D(c|c) in these runs (labels); last.pt is "
        "what a run whose label-free score falls to the end keeps",
        "",
    ]
    names = ["random", "labels", *SCORES]
    heads = {"random": "random", "labels": "validation D(c\\|c) (labels)", **{k: v[0] for k, v in SCORES.items()}}
    summary: dict = {}
    for variant, by_ck in scored.items():
        for ck, runs in by_ck.items():
            lines += [f"## {variant}, {ck}.pt, seeds {min(runs)}-{max(runs)}", "",
                      "| seed | validation D(c\\|c) | test D(c\\|c) | " + " | ".join(v[0] for k, v in SCORES.items() if k != "agreement") + " |",
                      "|---|---|---|" + "---|" * (len(SCORES) - 1)]  # fmt: skip
            for s, r in runs.items():
                lines.append(f"| {s} | {r['val_d_c_c']:.3f} | {r['test_d_c_c']:.3f} | "
                             + " | ".join(f"{r[k]:.4f}" for k in SCORES if k != "agreement") + " |")  # fmt: skip
            lines += ["", "| restarts | subsets | " + " | ".join(heads[n] for n in names) + " |",
                      "|---|---|" + "---|" * len(names)]  # fmt: skip
            for n in args.restarts:
                if n > len(runs):
                    continue
                res = choices(runs, n)
                summary.setdefault(variant, {}).setdefault(ck, {})[str(n)] = res
                lines.append(f"| {n} | {res['subsets']} | " + " | ".join(
                    f"hit {res[m]['hit']:.2f}, test {res[m]['test_d_c_c']:.3f}" if m in res else "-" for m in names) + " |")  # fmt: skip
            lines.append("")
    args.results.mkdir(parents=True, exist_ok=True)
    runs_doc = {v: {ck: {str(s): {k: x for k, x in r.items() if k != "labels"} for s, r in runs.items()}
                    for ck, runs in by_ck.items()} for v, by_ck in scored.items()}  # fmt: skip
    doc = {"args": {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in vars(args).items()},
           "runs": runs_doc, "choices": summary}  # fmt: skip
    (args.results / f"{args.name}.json").write_text(json.dumps(doc, indent=1))
    write_report(args.results, args.name, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
