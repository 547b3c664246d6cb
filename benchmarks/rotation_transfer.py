"""Does z carry the rotation on MNIST? A check of trained runs that the D-scores and SAP cannot make.

SAP(c) is high both when z holds the transformation and when z holds nothing at all. This script
asks the codes of trained runs (``dualcontrast train`` run directories) directly, on MNIST test
digits rotated by known angles (uniform in [-90, 90] deg, one per digit, fixed seed):

- R^2 of the angle's ``(cos, sin)`` predicted linearly from z and from c (5-fold cross-validation);
  DualContrast's aim is a high value from z and a low one from c;
- z's share of the decoded variation: a grid decoded from c of 8 digits x z of one digit at 7
  angles; the variance across the angles (rows: what z changes) over the total variance of the
  grid. Near 0: the decoder ignores z; about 0.5 or more: z moves the decoded image.

It writes ``<results>/rotation_transfer.md`` and, per run, ``rotation_transfer_<name>.png`` (the
grid: first column the z source at each angle, then the decoded digits).

    python benchmarks/rotation_transfer.py /work/bench/mnist_mnist_paper_gz5_select ...
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_score

from dualcontrast.api import load_run
from dualcontrast.transforms.geometry import rotate_2d

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import write_report

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist.npz"
GRID_ANGLES = np.linspace(-90, 90, 7)


def rotate_images(images: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` images, each rotated by its angle (degrees), as the training transformation."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    return rotate_2d(x, torch.from_numpy(np.radians(angles_deg)).float())[:, 0].numpy()


def angle_r2(code: np.ndarray, angles_deg: np.ndarray) -> float:
    target = np.stack([np.cos(np.radians(angles_deg)), np.sin(np.radians(angles_deg))], 1)
    return float(cross_val_score(LinearRegression(), code, target, cv=5, scoring="r2").mean())


def check(run_dir: Path, x: np.ndarray, n: int, out_png: Path) -> dict[str, Any]:
    run = load_run(run_dir, device="cpu")
    rng = np.random.default_rng(0)
    rows = rng.choice(len(x), n, replace=False)
    angles = rng.uniform(-90, 90, n)
    c, z = run.embed(rotate_images(x[rows], angles))[:2]
    source = rotate_images(np.repeat(x[:1], len(GRID_ANGLES), 0), GRID_ANGLES)
    grid = np.asarray(run.transfer(x[1:9], source))[:, :, 0]  # (angles, digits, H, W)
    z_share = float(grid.var(axis=0).mean() / grid.reshape(-1, *grid.shape[2:]).var(axis=0).mean())
    fig, ax = plt.subplots(len(GRID_ANGLES), grid.shape[1] + 1, figsize=(6.5, 5.8))
    for i, a in enumerate(GRID_ANGLES):
        ax[i, 0].imshow(source[i], cmap="gray")
        ax[i, 0].set_title(f"z from {a:+.0f} deg", fontsize=6)
        for j in range(grid.shape[1]):
            ax[i, j + 1].imshow(grid[i, j], cmap="gray")
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"{run_dir.name}: c from the columns' digits, z from the first column", fontsize=8)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return {"r2_angle_z": angle_r2(z, angles), "r2_angle_c": angle_r2(c, angles), "z_share": z_share,
            "checkpoint": (run.metrics or {}).get("checkpoint", "?")}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories trained on MNIST")
    p.add_argument("--data", type=Path, default=MNIST)
    p.add_argument("--n", type=int, default=2000, help="rotated test digits for the R^2")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", default="rotation_transfer", help="stem of the result files in --results")
    args = p.parse_args()
    if not args.data.exists():
        print(f"rotation_transfer: MNIST not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    for run in args.runs:
        if not (run / "config.yaml").exists():
            print(f"rotation_transfer: {run}: not a run directory (no config.yaml)", file=sys.stderr)
            return 2
    x = np.load(args.data)["x_test"].astype(np.float32) / 255.0
    args.results.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Does z carry the rotation? Trained MNIST runs, rotated test digits",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/rotation_transfer.py', *sys.argv[1:]])}`",
        "",
        f"- {args.n} test digits, each rotated by a known angle uniform in [-90, 90] deg (seed 0); "
        "R^2 of the angle's (cos, sin) from the code means, linear, 5-fold cross-validation",
        "- z share: variance of a decoded grid (c of 8 test digits x z of one digit at 7 angles) "
        "across the angles, over its total variance; 0 = the decoder ignores z",
        "",
        "| run | checkpoint | R^2 angle from z | R^2 angle from c | z share of decoded variation | grid |",
        "|---|---|---|---|---|---|",
    ]
    for run in args.runs:
        png = args.results / f"rotation_transfer_{run.name}.png"
        s = check(run, x, args.n, png)
        lines.append(f"| {run.name} | {s['checkpoint']} | {s['r2_angle_z']:.3f} | {s['r2_angle_c']:.3f} | "
                     f"{s['z_share']:.3f} | [png]({png.name}) |")  # fmt: skip
    write_report(args.results, args.name, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
