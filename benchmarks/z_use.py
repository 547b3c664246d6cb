"""Does the decoder read z? ``z_use`` of finished run directories, one table.

``z_use`` (dualcontrast.evaluation.metrics.decoder_z_use; in metrics.json of runs evaluated since
it exists) is the change of the decoded test samples when z is swapped between them, over that
change plus the change when c is swapped: 0 when the decoder ignores z. This script scores runs
evaluated before it existed, from their kept checkpoint and the test codes in embeddings.npz.

    python benchmarks/z_use.py RUN [RUN ...] --results benchmarks/results --name z_use
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from dualcontrast.api import load_run
from dualcontrast.evaluation.metrics import decoder_z_use

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories with embeddings.npz")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", default="z_use", help="file name of the table (without .md)")
    args = p.parse_args()
    for run in args.runs:
        if not (run / "embeddings.npz").exists():
            print(f"z_use: {run}: no embeddings.npz (not an evaluated run directory)", file=sys.stderr)
            return 2
    rows = []
    for run in args.runs:
        codes = np.load(run / "embeddings.npz")
        loaded = load_run(run, device="cpu")
        metrics = loaded.metrics or {}
        score = decoder_z_use(loaded.model, codes["test_c_mu"], codes["test_z_mu"], batch_size=64)
        rows.append((run, loaded.config.model.name, metrics.get("checkpoint", "?"), metrics.get("scores", {}), score))
    lines = [
        "# Does the decoder read z? z_use of trained runs",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/z_use.py', *sys.argv[1:]])}`",
        "",
        "z_use: change of up to 256 decoded test samples when z is swapped between them (a fixed cyclic "
        "shift), over that plus the change when c is swapped; 0 = the decoder ignores z, 0.5 = z matters "
        "as much as c. D(c|c), D(c|z), SAP(c) from the run's metrics.json.",
        "",
        "| run | model | checkpoint | z_use | D(c\\|c) | D(c\\|z) | SAP(c) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, model, checkpoint, scores, score in rows:
        cells = " | ".join(f"{scores[k]:.3f}" if k in scores else "-" for k in ("d_c_c", "d_c_z", "sap_c"))
        z_use = "-" if score is None else f"{score['z_use']:.3f}"
        lines.append(f"| {run.parent.name}/{run.name} | {model} | {checkpoint} | {z_use} | {cells} |")
    notes = args.results / f"{args.name}_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
