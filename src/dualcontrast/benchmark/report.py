"""The report of a benchmark suite: a Markdown table (+ CSV) and a figure of transfer grids.

Reads what the runs of :func:`dualcontrast.benchmark.runner.plan_suite` left in their run
directories (``metrics.json``, ``benchmark.json``, ``figures/transfer_grid.png``); it never
trains. Each cell is ``mean ± std (n)`` over the seeds that finished — ``std`` the sample
standard deviation (ddof 1; 0 for one seed) — with the paper's value next to it where its
Table 1 has one. Cells of unsupported combinations are ``-`` (as in the paper), cells with no
finished run say ``not run`` or ``failed``.

Transformation scores (D(z|z), D(z|c), SAP(z)) of a data set whose state index means a
different conformation for each identity (``transform_scores="within_content"``) come from
the identity with the highest D(z|z) averaged over every finished run of the data set — the
identity whose states differ most, as the paper's nucleosome — and a second table gives
SAP(z) for every identity.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .runner import PlannedRun, read_sidecar, set_overrides
from .suites import DATASETS, METHODS, MIN_EPOCHS, PAPER_TABLE1, Budget, DatasetSpec, Suite, merge_layers

# (key in metrics.json's scores, column title with the better direction)
C_METRICS = (("d_c_c", "D(c|c) ↑"), ("d_c_z", "D(c|z) ↓"), ("sap_c", "SAP(c) ↑"))
Z_METRICS = (("d_z_z", "D(z|z) ↑"), ("d_z_c", "D(z|c) ↓"), ("sap_z", "SAP(z) ↑"))
ARI = (("ari_c", "ARI(c) ↑"),)


@dataclass
class RunRecord:
    """What one planned run left behind. ``status``: done | failed | not run | unsupported."""

    dataset: str
    method: str
    seed: int
    path: Path
    status: str
    scores: dict[str, Any] = field(default_factory=dict)
    n_train: int | None = None
    n_test: int | None = None
    wall_s: float | None = None
    device: str | None = None
    note: str | None = None  # the error of a failed run, the reason of an unsupported one

    @property
    def grid(self) -> Path:
        return self.path / "figures" / "transfer_grid.png"


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Stat | None:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None
    return Stat(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


def _read_metrics(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def _log_seconds(path: Path) -> float | None:
    """Training seconds from log.csv, for runs made without the benchmark's sidecar."""
    try:
        with open(path / "log.csv", newline="") as f:
            return float(sum(float(row["seconds"]) for row in csv.DictReader(f)))
    except (OSError, KeyError, ValueError):
        return None


def collect_records(runs: Sequence[PlannedRun]) -> list[RunRecord]:
    """One record per planned run, from the files in its run directory."""
    records = []
    for run in runs:
        rec = RunRecord(run.dataset, run.method, run.seed, run.path, "not run")
        if run.argv is None:
            rec.status, rec.note = "unsupported", run.unsupported
            records.append(rec)
            continue
        side = read_sidecar(run.path)
        doc = _read_metrics(run.path)
        if doc is not None:
            rec.status = "done"
            rec.scores = doc.get("scores", {})
            rec.n_train = doc.get("data", {}).get("n_train")
            rec.n_test = doc.get("data", {}).get("n_test")
            rec.wall_s = side.get("wall_s", _log_seconds(run.path))
            rec.device = side.get("device_name")
        elif side.get("status") == "failed":
            rec.status, rec.note = "failed", side.get("error")
            rec.wall_s = side.get("wall_s")
        records.append(rec)
    return records


# --------------------------------------------------------------------------- scores of a data set


def transform_identity(records: Sequence[RunRecord], spec: DatasetSpec) -> str | None:
    """The content class whose within-class D(z|z), averaged over finished runs, is highest."""
    if spec.transform_scores != "within_content":
        return None
    sums: dict[str, list[float]] = {}
    for rec in records:
        if rec.dataset == spec.name and rec.status == "done":
            for cls, inner in rec.scores.get("within_content", {}).items():
                if "d_z_z" in inner:
                    sums.setdefault(cls, []).append(float(inner["d_z_z"]))
    if not sums:
        return None
    return max(sorted(sums), key=lambda cls: np.mean(sums[cls]))


def row_scores(rec: RunRecord, spec: DatasetSpec, identity: str | None) -> dict[str, float]:
    """The table's scores of one run: content scores, ARI, and the data set's transformation scores."""
    keys = [k for k, _ in C_METRICS + ARI]
    out = {k: float(rec.scores[k]) for k in keys if k in rec.scores}
    if spec.transform_scores == "global":
        out.update({k: float(rec.scores[k]) for k, _ in Z_METRICS if k in rec.scores})
    elif spec.transform_scores == "within_content" and identity is not None:
        inner = rec.scores.get("within_content", {}).get(identity, {})
        out.update({k: float(inner[k]) for k, _ in Z_METRICS if k in inner})
    return out


def columns(spec: DatasetSpec) -> tuple[tuple[str, str], ...]:
    return C_METRICS + (Z_METRICS if spec.transform_scores != "none" else ()) + ARI


@dataclass
class MethodRow:
    method: str
    status: str  # done (some seeds finished) | failed | not run | unsupported
    stats: dict[str, Stat] = field(default_factory=dict)
    wall: Stat | None = None
    seeds: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def method_rows(records: Sequence[RunRecord], spec: DatasetSpec, methods: Sequence[str]) -> list[MethodRow]:
    identity = transform_identity(records, spec)
    rows = []
    for method in methods:
        mine = [r for r in records if r.dataset == spec.name and r.method == method]
        done = [r for r in mine if r.status == "done"]
        if done:
            status = "done"
        elif any(r.status == "unsupported" for r in mine):
            status = "unsupported"
        elif any(r.status == "failed" for r in mine):
            status = "failed"
        else:
            status = "not run"
        row = MethodRow(method, status, seeds=[r.seed for r in done])
        per_run = [row_scores(r, spec, identity) for r in done]
        for key, _ in columns(spec):
            stat = summarize([s[key] for s in per_run if key in s])
            if stat is not None:
                row.stats[key] = stat
        row.wall = summarize([r.wall_s for r in done if r.wall_s is not None])
        row.notes = sorted({f"seed {r.seed}: {r.note}" for r in mine if r.status == "failed" and r.note})
        if status == "unsupported":
            row.notes = [next(r.note for r in mine if r.note)]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- formatting


def format_stat(stat: Stat | None, paper: float | None = None) -> str:
    text = "not run" if stat is None else f"{stat.mean:.3f} ± {stat.std:.3f} ({stat.n})"
    return text if paper is None else f"{text} [paper {paper:.2f}]"


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s // 60 % 60:02d} min"


def _cell(row: MethodRow, key: str, paper: dict[str, float]) -> str:
    if row.status == "unsupported":
        return "-"
    if row.status in ("failed", "not run"):
        return row.status
    return format_stat(row.stats.get(key), paper.get(key))


def _gap(a: MethodRow, b: MethodRow, word: str) -> str:
    """How far apart two rows' SAP(c) are, and whether that exceeds the seed-to-seed spread."""
    sa, sb = a.stats["sap_c"], b.stats["sap_c"]
    gap = abs(sa.mean - sb.mean)
    other = a if word == "below" else b
    text = f"{gap:.3f} {word} {METHODS[other.method].label}"
    if gap <= max(sa.std, sb.std):
        text += " (within one seed std: not a clear difference)"
    return text


def sap_sentence(rows: Sequence[MethodRow], spec: DatasetSpec) -> str:
    """Which method has the highest mean SAP(c); plainly so when it is not DualContrast."""
    scored = [r for r in rows if "sap_c" in r.stats]
    if not scored:
        return f"No finished runs on {spec.name}: no SAP(c) ranking."
    ranked = sorted(scored, key=lambda r: -r.stats["sap_c"].mean)
    best = ranked[0]
    text = f"Highest SAP(c) on {spec.name}: {METHODS[best.method].label} ({best.stats['sap_c'].mean:.3f})"
    dual = next((i for i, r in enumerate(ranked) if r.method == "dualcontrast"), None)
    if best.method == "dualcontrast":
        text += ". DualContrast has the highest SAP(c) here"
        if len(ranked) > 1:
            text += ", " + _gap(best, ranked[1], "above")
        text += "."
    elif dual is None:
        text += ". DualContrast has no finished run on this data set."
    else:
        text += (
            f". **DualContrast does not have the highest SAP(c) on {spec.name}**: "
            f"rank {dual + 1} of {len(ranked)}, " + _gap(best, ranked[dual], "below") + "."
        )
    paper = PAPER_TABLE1.get(spec.paper or "", {})
    if paper:
        top = max(paper, key=lambda m: paper[m]["sap_c"])
        text += f" (Paper's Table 1: highest SAP(c) {METHODS[top].label}, {paper[top]['sap_c']:.2f}.)"
    return text


def _settings_lines(spec: DatasetSpec, budget: Budget, methods: Sequence[str]) -> list[str]:
    layer = budget.datasets.get(spec.name, {})
    configs = " + ".join(f"`{c}`" for c in spec.config_files) or "defaults"
    sets = " ".join(set_overrides(merge_layers(spec.layer, budget.common, layer))) or "(none)"
    lines = [f"- settings: {configs}, then `{sets}`"]
    epochs = layer.get("train", {}).get("epochs")
    for method in methods:
        extra = budget.methods.get(spec.name, {}).get(method)
        if extra:
            lines.append(f"- {METHODS[method].label} only: `{' '.join(set_overrides(extra))}`")
        if epochs is not None and epochs < MIN_EPOCHS.get(method, 1):
            lines.append(f"- {METHODS[method].label}: {MIN_EPOCHS[method]} epochs, its minimum")
    return lines


def _data_line(records: Sequence[RunRecord], spec: DatasetSpec) -> str | None:
    sizes = sorted({(r.n_train, r.n_test) for r in records if r.dataset == spec.name and r.status == "done"})
    if not sizes:
        return None
    return "- samples (train / test): " + ", ".join(f"{a} / {b}" for a, b in sizes)


def dataset_section(
    records: Sequence[RunRecord], spec: DatasetSpec, suite: Suite, budget: Budget
) -> tuple[list[str], list[MethodRow]]:
    methods = list(suite.methods)
    rows = method_rows(records, spec, methods)
    paper = PAPER_TABLE1.get(spec.paper or "", {})
    total = sum(r.wall_s or 0.0 for r in records if r.dataset == spec.name and r.status == "done")
    lines = [f"## {spec.title}", ""]
    lines += _settings_lines(spec, budget, methods)
    if (data := _data_line(records, spec)) is not None:
        lines.append(data)
    identity = transform_identity(records, spec)
    if spec.transform_scores == "within_content":
        name = _identity_name(spec, identity)
        lines.append(
            f"- D(z|z), D(z|c), SAP(z): within identity {name}, the identity with the highest "
            "D(z|z) averaged over all finished runs (a state index means a different "
            "conformation for each identity; per-identity SAP(z) below)"
        )
    elif spec.transform_scores == "none":
        lines.append("- no transformation labels: D(z|z), D(z|c), SAP(z) do not apply")
    lines.append(f"- wall time of the finished runs: {format_seconds(total)}")
    lines.append("")
    cols = columns(spec)
    lines.append("| method | " + " | ".join(t for _, t in cols) + " | seeds | time / run |")
    lines.append("|---|" + "---|" * (len(cols) + 2))
    for row in rows:
        cells = [_cell(row, key, paper.get(row.method, {})) for key, _ in cols]
        seeds = ",".join(map(str, row.seeds)) if row.seeds else "-"
        wall = format_seconds(row.wall.mean) if row.wall else "-"
        lines.append(f"| {METHODS[row.method].label} | " + " | ".join(cells) + f" | {seeds} | {wall} |")
    lines += ["", sap_sentence(rows, spec), ""]
    if spec.transform_scores == "within_content":
        lines += _per_identity_table(records, spec, methods)
    notes = [(row.method, n) for row in rows for n in row.notes]
    if notes:
        lines += ["Notes:", ""] + [f"- {METHODS[m].label}: {n}" for m, n in notes] + [""]
    return lines, rows


def _identity_name(spec: DatasetSpec, identity: str | None) -> str:
    if identity is None:
        return "(none finished)"
    i = int(identity)
    return f"{i} ({spec.content_names[i]})" if i < len(spec.content_names) else str(i)


def _per_identity_table(records: Sequence[RunRecord], spec: DatasetSpec, methods: Sequence[str]) -> list[str]:
    done = [r for r in records if r.dataset == spec.name and r.status == "done"]
    ids = sorted({k for r in done for k in r.scores.get("within_content", {})}, key=int)
    if not ids:
        return []
    lines = [
        "SAP(z) = |D(z|z) - D(z|c)| within each identity (mean ± std (n)):",
        "",
        "| method | " + " | ".join(_identity_name(spec, i) for i in ids) + " |",
        "|---|" + "---|" * len(ids),
    ]
    for method in methods:
        mine = [r for r in done if r.method == method]
        if not mine:
            continue
        cells = [
            format_stat(summarize([r.scores["within_content"].get(i, {}).get("sap_z") for r in mine]))
            for i in ids
        ]
        lines.append(f"| {METHODS[method].label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _header(records: Sequence[RunRecord], suite: Suite, budget: Budget, command: str | None) -> list[str]:
    done = [r for r in records if r.status == "done"]
    devices = sorted({r.device for r in done if r.device})
    total = sum(r.wall_s or 0.0 for r in done)
    planned = [r for r in records if r.status != "unsupported"]
    lines = [f"# {suite.title}", ""]
    if budget.reduced:
        lines += [
            f"**Reduced table** (budget `{budget.name}`: {budget.description}). Far fewer epochs "
            "and samples than the paper: the numbers show the harness and early-training "
            "behaviour, not the paper's converged values (in brackets).",
            "",
        ]
    else:
        lines += [f"Budget `{budget.name}`: {budget.description}.", ""]
    lines += [
        f"- suite `{suite.name}`: {len(suite.methods)} methods x {len(suite.datasets)} data sets x "
        f"seeds {', '.join(map(str, suite.seeds))}; {len(done)} of {len(planned)} runs finished",
        "- each cell: mean ± sample std (ddof 1) over the finished seeds, their number in "
        "parentheses; [paper x] = Table 1 of the paper where it reports this method and data set; "
        "`-` = not supported / not in the comparison (reason in the notes)",
        "- D(f|code): test accuracy of a logistic regression predicting factor f from the code "
        "means (fit on train codes); SAP = |D(own) - D(other)|; ARI(c): the test content codes "
        "clustered by the run's eval.cluster_method (spectral by default) into as many clusters as "
        "true classes, vs the true classes",
        f"- device: {'; '.join(devices) if devices else 'no finished runs'}",
        f"- total wall time of the finished runs (training + evaluation + figures): {format_seconds(total)}",
        f"- written {time.strftime('%Y-%m-%d %H:%M')} by dualcontrast {__version__}"
        + (f": `{command}`" if command else ""),
        "",
    ]
    return lines


# --------------------------------------------------------------------------- writers


def write_csv(path: Path, sections: dict[str, list[MethodRow]], records: Sequence[RunRecord]) -> None:
    """Long format: one row per (data set, method, metric) with mean, std, n and the paper's value."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["dataset", "method", "metric", "mean", "std", "n", "paper", "status", "transform_identity"]
        )
        for name, rows in sections.items():
            spec = DATASETS[name]
            identity = transform_identity(records, spec) or ""
            paper = PAPER_TABLE1.get(spec.paper or "", {})
            for row in rows:
                for key, _ in columns(spec):
                    stat = row.stats.get(key)
                    ref = paper.get(row.method, {}).get(key)
                    w.writerow([
                        name, row.method, key,
                        "" if stat is None else f"{stat.mean:.4f}",
                        "" if stat is None else f"{stat.std:.4f}",
                        0 if stat is None else stat.n,
                        "" if ref is None else ref,
                        row.status,
                        identity if key in dict(Z_METRICS) else "",
                    ])  # fmt: skip
                if row.wall is not None:
                    w.writerow([name, row.method, "wall_s", f"{row.wall.mean:.1f}", f"{row.wall.std:.1f}",
                                row.wall.n, "", row.status, ""])  # fmt: skip


def write_runs_csv(path: Path, records: Sequence[RunRecord]) -> None:
    """One row per run with every flat score of its metrics.json."""
    from ..evaluation.metrics import flat_scores

    flat = [flat_scores(r.scores) if r.status == "done" else {} for r in records]
    keys = sorted({k for f in flat for k in f})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "method", "seed", "status", "wall_s", "device", "n_train", "n_test", *keys])
        for rec, scores in zip(records, flat, strict=True):
            w.writerow([
                rec.dataset, rec.method, rec.seed, rec.status,
                "" if rec.wall_s is None else rec.wall_s, rec.device or "",
                rec.n_train or "", rec.n_test or "",
                *[f"{scores[k]:.4f}" if k in scores else "" for k in keys],
            ])  # fmt: skip


def transfer_grid_figure(
    records: Sequence[RunRecord], suite: Suite, path: str | Path, *, seed: int = 0
) -> Path:
    """One panel per (data set, method): the run's ``figures/transfer_grid.png`` of ``seed``.

    Rows are data sets, columns methods. Panels say ``no decoder`` for encoder-only methods,
    ``-`` for unsupported cells and ``not run`` / ``no figure`` where the image is missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d for d in suite.datasets if any(r.dataset == d for r in records)]
    methods = list(suite.methods)
    fig, axes = plt.subplots(
        len(names), len(methods), figsize=(2.3 * len(methods), 2.6 * len(names)), squeeze=False
    )
    for i, name in enumerate(names):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            rec = next((r for r in records if (r.dataset, r.method, r.seed) == (name, method, seed)), None)
            if rec is not None and rec.status == "done" and rec.grid.exists():
                ax.imshow(plt.imread(rec.grid))
            else:
                ax.text(0.5, 0.5, _missing_grid_text(rec, method), ha="center", va="center", fontsize=9,
                        transform=ax.transAxes, wrap=True)  # fmt: skip
            if i == 0:
                ax.set_title(METHODS[method].label, fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle(
        f"content from columns, transformation from rows (seed {seed}; one panel per method)", fontsize=11
    )
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def _missing_grid_text(rec: RunRecord | None, method: str) -> str:
    if rec is None or rec.status == "not run":
        return "not run"
    if rec.status == "unsupported":
        return "-\n(not in comparison)"
    if rec.status == "failed":
        return "failed"
    return "no decoder:\nno transfer grid" if not METHODS[method].decoder else "no figure"


def write_report(
    runs: Sequence[PlannedRun],
    suite: Suite,
    budget: Budget,
    out: str | Path,
    *,
    command: str | None = None,
    figure: bool = True,
) -> dict[str, Path]:
    """Write ``out`` (Markdown), ``<out>.csv``, ``<out>_runs.csv`` and ``<out>_transfer_grids.png``.

    A hand-written ``<out>_notes.md`` next to ``out`` (the reading of the numbers: why a row is
    where it is) is appended as the table's last section, so re-rendering keeps it.
    """
    md = Path(out)
    md.parent.mkdir(parents=True, exist_ok=True)
    records = collect_records(runs)
    lines = _header(records, suite, budget, command)
    sections: dict[str, list[MethodRow]] = {}
    for name in suite.datasets:
        section, rows = dataset_section(records, DATASETS[name], suite, budget)
        lines += section
        sections[name] = rows
    notes = md.with_name(md.stem + "_notes.md")
    if notes.exists():
        lines += ["## Notes", "", notes.read_text().strip(), ""]
    md.write_text("\n".join(lines).rstrip() + "\n")
    paths = {"table": md, "csv": md.with_suffix(".csv"), "runs_csv": md.with_name(md.stem + "_runs.csv")}
    write_csv(paths["csv"], sections, records)
    write_runs_csv(paths["runs_csv"], records)
    if figure:
        paths["figure"] = transfer_grid_figure(records, suite, md.with_name(md.stem + "_transfer_grids.png"))
    return paths
