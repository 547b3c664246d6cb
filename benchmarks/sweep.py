"""What the variant sweeps (``shapes2d_state.py``, ``z_checks.py``) share: one ``quality_2d.py``
run per variant and seed, read back from its JSON, and the table's cells and file."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quality_2d_result(
    data: str, tag: str, settings: list[str], *, epochs: int, eval_every: int, workdir: str,
    runs_results: str, threads: int | None, rerun: bool,
) -> dict:  # fmt: skip
    """The JSON ``quality_2d.py`` writes for ``tag``, training the run first where it is missing
    (or always with ``rerun``). ``settings``: ``--set`` overrides; ``data``: its ``--data``."""
    name = "mnist" if data.endswith(".npz") else data
    stem = Path(runs_results) / f"{name}_quality_{tag}.json"
    if rerun or not stem.exists():
        cmd = [sys.executable, str(REPO / "benchmarks" / "quality_2d.py"), "--data", data,
               "--epochs", str(epochs), "--eval-every", str(eval_every), "--tag", tag,
               "--workdir", workdir, "--results", runs_results, "--set", "train.progress=false"]  # fmt: skip
        if threads:
            cmd += ["--threads", str(threads)]
        for o in settings:
            cmd += ["--set", o]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(stem.read_text())


def kept_validation_row(doc: dict) -> dict:
    """The curve row (validation scores) of the checkpoint a ``quality_2d.py`` run kept. Files
    older than ``"best_epoch"`` kept the best validation D(c|c), the only rule there was."""
    kept = doc.get("best_epoch")
    if kept is None:
        return max(doc["curve"], key=lambda r: float(r["d_c_c"]))
    return next(r for r in doc["curve"] if int(r["epoch"]) == kept)


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_report(out: Path, name: str, lines: list[str]) -> None:
    """``<out>/<name>.md`` from ``lines`` and the hand-written ``<name>_notes.md`` (kept on reruns)."""
    notes = out / f"{name}_notes.md"
    if notes.exists():
        lines = [*lines, "", notes.read_text().strip()]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
