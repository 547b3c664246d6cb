"""Hydra vs DualContrast on the built-in phantoms: composition ARI, AUC-FSC of class maps, speed.

Data: the built-in ``phantoms3d`` (3 identities x 4 conformational states, SNR 0.1 in 3D, CTF
defocus -5 um, 300 kV, Cs 1.7 mm, amplitude contrast 0.1). Hydra trains on their projections
along z (``data.project``, the paper's recipe) with K = 3 (the number of identities); DualContrast
on the same particles as 3D subtomograms (configs/subtomo.yaml with the lighter 3D networks of the
cpu-hour table budget).

Scores:
- composition ARI: Hydra's most probable class vs the identity; DualContrast's content clusters (eval.cluster_method, k = 3) on c
  (``metrics.json``), both over the training particles;
- AUC-FSC: each Hydra class map (and its mirror image: projections do not fix the hand) aligned
  onto the best-matching ground-truth map; DualContrast's aligned cluster averages from
  ``dualcontrast analyze``;
- speed: samples/s of a pose-search step and of a refinement step (batch 16, K = 3, untrained
  fields: the cost does not depend on the weights), for box sizes and grid sizes.

Usage (from the repository root)::

    python benchmarks/hydra.py                      # the small CPU budget recorded in results/hydra.md
    python benchmarks/hydra.py --n-per-state 1500 --epochs 130 --pose-search-epochs 30 \\
        --dc-epochs 150 --device cuda               # the paper's schedule (18,000 particles) on a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dualcontrast.analysis.structures import TruthMaps, compare_to_truth
from dualcontrast.benchmark.suites import _LIGHT_3D
from dualcontrast.data.ctf import ctf_factors
from dualcontrast.models import load_trained_model
from dualcontrast.models.hydra import Hydra, HydraParams
from dualcontrast.simulation.phantoms import phantom_maps
from dualcontrast.workflow import analyze_run, open_run, resolve_config, train_run

REPO = Path(__file__).resolve().parents[1]
IDENTITIES = ["nucleosome", "spike", "fas"]


def _sets(layer: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in layer.items():
        if isinstance(v, dict) and k not in ("encoder_options", "decoder_options"):
            out += _sets(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={json.dumps(v)}")
    return out


def common(args) -> list[str]:
    return [
        f"data.params.n_per_state={args.n_per_state}",
        f"data.params.snr={args.snr}",
        "data.params.progress=false",
        "train.progress=false",
        "eval.projection=pca",
    ]


def train_hydra(args) -> dict:
    run = Path(args.workdir) / "hydra"
    params = {"classes": len(IDENTITIES), "pose_search_epochs": args.pose_search_epochs}
    settings = {
        "model": {"name": "hydra", "params": params},
        "data": {"project": True, "normalize": "none"},
        "train": {"epochs": args.epochs, "device": args.device, "lr": args.lr, "batch_size": args.batch_size},
    }
    cfg = resolve_config(config_files=[REPO / "configs" / "subtomo.yaml"], settings=settings, overrides=common(args))
    t0 = time.time()
    train_run(cfg, run, overwrite=True)
    seconds = time.time() - t0
    rd, cfg = open_run(run)
    model, _ = load_trained_model(rd, cfg, torch.device("cpu"))
    emb = np.load(run / "embeddings.npz")
    from sklearn.metrics import adjusted_rand_score

    ari = adjusted_rand_score(emb["train_content"], emb["train_c_mu"].argmax(1))
    ari_test = adjusted_rand_score(emb["test_content"], emb["test_c_mu"].argmax(1))
    truth = truth_maps(cfg)
    vols = model.class_volumes()
    structures = {}
    for k, vol in enumerate(vols):
        best = max(
            (compare_to_truth(v, truth, n_rotations=args.align_rotations) for v in (vol, vol[::-1].copy())),
            key=lambda r: r["alignment_score"],
        )
        structures[str(k)] = {key: best[key] for key in ("best_match", "alignment_score", "auc_fsc")}
    log = np.genfromtxt(run / "log.csv", delimiter=",", names=True)
    n_train = len(emb["train_content"])
    steps = n_train // args.batch_size * args.batch_size
    search = log["seconds"][: args.pose_search_epochs]
    refine = log["seconds"][args.pose_search_epochs :]
    metrics = json.loads((run / "metrics.json").read_text())["scores"]
    return {
        "ari_train": ari,
        "ari_test": ari_test,
        "d_c_c": metrics.get("d_c_c"),
        "structures": structures,
        "seconds": seconds,
        "search_samples_per_s": steps / float(np.mean(search)) if len(search) else None,
        "refine_samples_per_s": steps / float(np.mean(refine)) if len(refine) else None,
        "class_sizes": np.bincount(emb["train_c_mu"].argmax(1), minlength=len(IDENTITIES)).tolist(),
    }


def truth_maps(cfg) -> TruthMaps:
    p = cfg.data.params
    box, voxel, states = p.get("box", 32), p.get("voxel_size", 1.0), p.get("n_states", 4)
    maps = phantom_maps(box=box, voxel_size=voxel, n_states=states)
    return TruthMaps(np.stack(list(maps.values())), [f"{i}/{s}" for i, s in maps], voxel)


def train_dualcontrast(args) -> dict:
    run = Path(args.workdir) / "dualcontrast"
    settings = {"model": {"name": "dualcontrast", **_LIGHT_3D}, "train": {"epochs": args.dc_epochs, "device": args.device}}
    cfg = resolve_config(config_files=[REPO / "configs" / "subtomo.yaml"], settings=settings, overrides=common(args))
    t0 = time.time()
    train_run(cfg, run, overwrite=True)
    seconds = time.time() - t0
    analyze_run(run, max_particles=args.max_particles, device=args.device, projection="none")
    analysis = json.loads((run / "analysis" / "analysis.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())["scores"]
    structures = {
        k: {"best_match": v["truth"]["best_match"], "auc_fsc": v["truth"]["auc_fsc"]}
        for k, v in analysis.get("structures", {}).items()
        if "truth" in v
    }
    return {
        "ari_k3": metrics.get("ari_c"),
        "ari_bic": analysis.get("content_clusters", {}).get("ari"),
        "d_c_c": metrics.get("d_c_c"),
        "structures": structures,
        "seconds": seconds,
    }


def speed(boxes: list[int], directions: list[int], batch: int = 16, repeats: int = 2) -> list[dict]:
    """Samples/s of one pose-search step and one refinement step, K = 3, with the CTF."""
    rows = []
    for box in boxes:
        for dirs in directions:
            from dualcontrast.data.base import Dataset

            rng = np.random.default_rng(0)
            x = rng.standard_normal((batch, 1, box, box)).astype(np.float32)
            data = Dataset(x=x, factors=ctf_factors(batch, defocus_u_um=-5.0, pixel_size_a=10.0 * 32 / box))
            model = Hydra((1, box, box), HydraParams(classes=3, directions=dirs, pose_search_epochs=1))
            model.bind_data(data)
            opts = model.configure_optimizers(1e-3)
            xb, rows_b = torch.as_tensor(x), torch.arange(batch)
            model.training_step((xb, rows_b), opts)  # warm-up
            t0 = time.perf_counter()
            for _ in range(repeats):
                model.training_step((xb, rows_b), opts)
            search = batch * repeats / (time.perf_counter() - t0)
            model.epochs_done.fill_(1)
            t0 = time.perf_counter()
            for _ in range(repeats * 5):
                model.training_step((xb, rows_b), opts)
            refine = batch * repeats * 5 / (time.perf_counter() - t0)
            rows.append({"box": box, "directions": dirs, "rotations": int(model.so3.shape[0]),
                         "search_samples_per_s": search, "refine_samples_per_s": refine})  # fmt: skip
            logging.info("speed %s", rows[-1])
    return rows


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-per-state", type=int, default=20)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=8, help="Hydra epochs (pose search included)")
    p.add_argument("--pose-search-epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3, help="Hydra's field learning rate")
    p.add_argument("--dc-epochs", type=int, default=8, help="DualContrast epochs")
    p.add_argument("--max-particles", type=int, default=100, help="particles aligned per DualContrast average")
    p.add_argument("--align-rotations", type=int, default=500, help="rotations searched to align a map to truth")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--workdir", default=str(REPO / "runs" / "bench_hydra"))
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    speeds = speed([16, 24, 32], [48, 100, 200])
    results = {} if args.speed_only else {"hydra": train_hydra(args), "dualcontrast": train_dualcontrast(args)}
    total = time.time() - t0
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"args": vars(args), "results": results, "speed": speeds, "total_seconds": total}
    (out / "hydra.json").write_text(json.dumps(doc, indent=2, default=float))
    print(json.dumps(doc, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
