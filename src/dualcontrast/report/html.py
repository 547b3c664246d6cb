"""``RUN/report.html``: one self-contained page (no network needed) summarising a run directory.

Everything is read from the files a run writes (``config.yaml``, ``metrics.json``, ``log.csv``,
``eval_log.csv``, ``embeddings.npz``, ``figures/`` and, after ``analyze``, ``analysis/``), so the
page can be rebuilt at any time and shows whatever the run holds so far. Interactive plots are
plotly figures; plotly's JavaScript is embedded once, images are inline PNGs. A little glue script
turns a lasso selection on a projection into a CSV download of the selected samples.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..evaluation.metrics import score_info
from ..rundir import atomic_write_text

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
MAX_POINTS = 2000  # points per interactive projection: enough to see structure, light to render
CODE_KEYS = ("c_mu", "c_logvar", "z_mu", "z_logvar", "ids")

_JS = """
function dcSelection(divId, columns) {
  const gd = document.getElementById(divId);
  const button = document.getElementById(divId + '-download');
  const count = document.getElementById(divId + '-count');
  let rows = [];
  const update = (points) => {
    rows = (points || []).map((p) => p.customdata);
    count.textContent = rows.length ? rows.length + ' samples selected' : 'no selection';
    button.disabled = rows.length === 0;
  };
  gd.on('plotly_selected', (ev) => update(ev && ev.points));
  gd.on('plotly_deselect', () => update([]));
  button.addEventListener('click', () => {
    const text = [columns.join(',')].concat(rows.map((r) => r.join(','))).join('\\n') + '\\n';
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], {type: 'text/csv'}));
    a.download = divId + '_selection.csv';
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
}
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; max-height: 28em; }
img { max-width: 100%; } .note { color: #555; } .grid { display: flex; flex-wrap: wrap; gap: 1em; }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


class _Plots:
    """Plotly figures as HTML fragments; the first one carries plotly's JavaScript."""

    def __init__(self) -> None:
        self.count = 0

    def html(self, fig, div_id: str) -> str:
        import plotly.io as pio

        fragment = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=self.count == 0,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
        self.count += 1
        return fragment


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def _metrics_section(metrics: dict[str, Any], chance: dict[str, float]) -> str:
    scores = metrics.get("scores", {})
    rows = []
    for key, value in scores.items():
        if isinstance(value, dict):
            continue
        info = score_info(key)
        level = _fmt(chance[info.factor]) if info is not None and info.factor in chance else ""
        rows.append(
            f'<tr><th>{_esc(key)}</th><td class="num" data-metric="{_esc(key)}">{_fmt(float(value))}</td>'
            f'<td class="num">{level}</td><td>{_esc(info.text() if info else "")}</td></tr>'
        )
    out = [
        "<h2>Metrics</h2>",
        f'<p class="note">Scored on the test split with the {_esc(metrics.get("checkpoint") or "last")} '
        f'checkpoint (epoch {_esc(metrics.get("epoch", "?"))}); '
        "D(x|y) is the accuracy of a logistic regression predicting factor x from code y, fit on train "
        "codes (<code>*_raw</code>: on raw codes, as the reference evaluator). Chance: the accuracy of "
        "always guessing the most common class.</p>",
        "<table><tr><th>score</th><th>value</th><th>chance</th><th>meaning</th></tr>",
        *rows,
        "</table>",
    ]
    within = scores.get("within_content")
    if isinstance(within, dict) and within:
        names = sorted({n for inner in within.values() for n in inner})
        out.append(
            "<p>Inside each true content class (does z still carry the transformation, and c not?):</p>"
            "<table><tr><th>content class</th>" + "".join(f"<th>{_esc(n)}</th>" for n in names) + "</tr>"
        )
        for cls, inner in within.items():
            cells = "".join(
                f'<td class="num" data-metric="{_esc(n)}@content={_esc(cls)}">{_fmt(float(inner[n]))}</td>'
                if n in inner
                else "<td></td>"
                for n in names
            )
            out.append(f"<tr><th>{_esc(cls)}</th>{cells}</tr>")
        out.append("</table>")
    protocol = metrics.get("protocol")
    if protocol:
        items = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in protocol.items())
        out.append(f"<details><summary>protocol</summary><ul>{items}</ul></details>")
    return "\n".join(out)


def _restarts_section(run: Path) -> str:
    """The table of ``restarts.csv`` (train.restarts): which seed the run is, and why."""
    rows = _read_csv(run / "restarts.csv")
    if not rows:
        return ""
    early = len({r.get("epochs") for r in rows}) > 1
    cells = "".join(
        f"<tr><td>{_esc(r['seed'])}</td><td>{_esc(r.get('epochs', ''))}</td>"
        + (f"<td>{_esc(r['metric'])} {_fmt(float(r['compared']))}</td>" if early else "")
        + f"<td>{_esc(r['best_epoch'])}</td><td>{_esc(r['metric'])} {_fmt(float(r['value']))}</td>"
        f"<td>{'kept' if r['chosen'] == 'True' else ''}</td></tr>"
        for r in rows
    )
    return (
        "<h2>Restarts</h2><p>train.restarts trained one run per seed (in restarts/seed&lt;S&gt;/); this run "
        + ("is the one with the best validation score after the epochs all of them trained (train.restart_epochs), "
           "trained on to the end alone" if early else "is the one with the best validation score")
        + ", and the curves below are its own.</p><table><tr><th>seed</th><th>epochs trained</th>"
        + ("<th>validation score compared</th>" if early else "")
        + f"<th>best epoch</th><th>best validation score</th><th></th></tr>{cells}</table>"
    )


def _curves(rows: list[dict[str, str]], skip: tuple[str, ...], title: str, log_y: bool):
    import plotly.graph_objects as go

    fig = go.Figure()
    epochs = [int(float(r["epoch"])) for r in rows]
    for key in rows[0]:
        if key in skip or "@" in key:
            continue
        values = [float(r[key]) if r.get(key) not in (None, "") else None for r in rows]
        fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=key))
    positive = all(v is None or v > 0 for t in fig.data for v in t.y)
    fig.update_layout(
        title=title, xaxis_title="epoch", height=420, margin={"t": 50, "b": 40},
        yaxis_type="log" if log_y and positive else "linear",
    )
    return fig


def _samples(run: Path) -> dict[str, np.ndarray] | None:
    """Codes and labels of every sample, train, validation, test (the row order of ``analyze``),
    with the clusters of ``analyze`` when they exist."""
    analysis = run / "analysis"
    if (analysis / "codes.npz").exists() and (analysis / "clusters.npz").exists():
        codes = dict(np.load(analysis / "codes.npz"))
        clusters = np.load(analysis / "clusters.npz")
        n = len(codes["ids"])
        codes.update({k: clusters[k] for k in clusters.files if k != "ids" and len(clusters[k]) == n})
        return codes
    if not (run / "embeddings.npz").exists():
        return None
    emb = np.load(run / "embeddings.npz")
    splits = [s for s in ("train", "val", "test") if f"{s}_ids" in emb.files]
    out: dict[str, list[np.ndarray]] = {}
    for split in splits:
        for k in emb.files:
            if k.startswith(f"{split}_"):
                out.setdefault(k[len(split) + 1 :], []).append(emb[k])
        out.setdefault("split", []).append(np.full(len(emb[f"{split}_ids"]), split))
    return {k: np.concatenate(v) for k, v in out.items() if len(v) == len(splits)}


def _projection(samples: dict[str, np.ndarray], code: str, method: str, seed: int, plots: _Plots) -> str:
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    from ..evaluation.figures import colour_values, project_2d

    x = samples[f"{code}_mu"]
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:MAX_POINTS])
    points, used = project_2d(x[keep], method, seed)
    factors = {k: v[keep] for k, v in samples.items() if k not in CODE_KEYS and len(v) == len(x)}
    ids = samples["ids"][keep] if "ids" in samples else keep
    # Clusters and truth first (menu, hover, CSV): that is what a user looks for.
    first = ("content_cluster", "conformation_cluster", "content", "transform")
    order = sorted(factors, key=lambda k: (first.index(k) if k in first else len(first), k))
    columns = ["id", *order]
    custom = [[str(i), *(str(factors[k][j]) for k in order)] for j, i in enumerate(ids)]
    palette = qualitative.Plotly + qualitative.Light24
    markers, menu = [], []
    for name in order:
        values, names = colour_values(factors[name])
        marker: dict[str, Any] = {"size": 5, "opacity": 0.8}
        keys = []
        if names is None:
            marker.update(color=values.tolist(), colorscale="Viridis", showscale=True,
                          colorbar={"title": {"text": name}})
        else:
            colours = ["lightgrey" if n.startswith("other (") else palette[k % len(palette)]
                       for k, n in enumerate(names)]
            marker["color"] = [colours[v] for v in values]
            # The key of a categorical colouring (one trace keeps the lasso's ids simple, so no legend).
            text = f"{_esc(name)}: " + "  ".join(
                f"<span style='color:{c}'>\u25cf</span> {_esc(n)}" for c, n in zip(colours, names, strict=True)
            )
            keys = [{"text": text, "xref": "paper", "yref": "paper", "x": 0, "y": 1.0, "xanchor": "left",
                     "yanchor": "bottom", "showarrow": False, "align": "left"}]
        markers.append((marker, keys))
        menu.append({"label": f"colour by {name}", "method": "update",
                     "args": [{"marker": [marker]}, {"annotations": keys}]})
    hover = "<br>".join(f"{c}: %{{customdata[{k}]}}" for k, c in enumerate(columns)) + "<extra></extra>"
    fig = go.Figure(go.Scatter(
        x=points[:, 0], y=points[:, 1], mode="markers", customdata=custom, hovertemplate=hover,
        marker=markers[0][0] if markers else {"size": 5, "opacity": 0.8},
    ))
    if markers:
        fig.update_layout(annotations=markers[0][1])
    fig.update_layout(
        title=f"{code} codes: 2D {used} projection of {len(points)} samples",
        dragmode="lasso", height=580, margin={"t": 110},
        xaxis_title=f"{used} 1", yaxis_title=f"{used} 2",
        updatemenus=[{"buttons": menu, "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"}] if menu else [],
    )
    div = f"projection-{code}"
    return (
        plots.html(fig, div)
        + f'<p><button id="{div}-download" disabled>download selected samples (CSV)</button> '
        f'<span id="{div}-count">no selection</span> '
        '<span class="note">(draw a lasso round points; double-click clears)</span></p>'
        f"<script>window.addEventListener('load', () => dcSelection({json.dumps(div)}, "
        f"{json.dumps(columns)}));</script>"
    )


def _voxel_size_A(analysis: Path) -> float | None:
    import mrcfile

    for path in sorted((analysis / "averages").glob("*.mrc")):
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            size = float(mrc.voxel_size.x)
        if size > 0:
            return size
    return None


def _fsc_plot(structures: dict[str, Any], voxel_a: float, plots: _Plots) -> str:
    import plotly.graph_objects as go

    nyquist = 1.0 / (2.0 * voxel_a)
    fig = go.Figure()
    for name, s in structures.items():
        t = s.get("truth")
        if t:
            freq = np.asarray(t["freq"]) * nyquist
            res = [f"{1 / f:.1f} \u00c5" if f > 0 else "\u221e" for f in freq]
            fig.add_trace(go.Scatter(
                x=freq, y=t["fsc"], mode="lines+markers", name=f"{name} vs {t['best_match']}",
                customdata=res, hovertemplate="%{x:.4f} 1/\u00c5 (%{customdata})<br>FSC %{y:.3f}",
            ))
    if not fig.data:
        return ""
    ticks = nyquist / np.array([8.0, 4.0, 2.0, 4 / 3, 1.0])
    fig.add_hline(y=0.5, line_dash="dash", line_color="grey")
    fig.update_layout(
        title="FSC of cluster averages against the ground truth", height=440,
        xaxis={"title": "spatial frequency (1/\u00c5), resolution (\u00c5) below", "range": [0, nyquist],
               "tickvals": ticks.tolist(), "ticktext": [f"{f:.4f}<br>{1 / f:.0f} \u00c5" for f in ticks]},
        yaxis={"title": "FSC", "range": [-0.1, 1.05]},
    )
    return plots.html(fig, "fsc")


def _analysis_section(run: Path, plots: _Plots) -> str:
    analysis = run / "analysis"
    path = analysis / "analysis.json"
    if not path.exists():
        return ""
    doc = json.loads(path.read_text())
    out = ["<h2>Clusters (dualcontrast analyze)</h2>", "<table><tr><th>level</th><th>k</th><th>sizes</th><th>ARI vs truth</th></tr>"]
    for level, title in (("content_clusters", "content (GMM on c)"), ("conformation_clusters", "conformation (GMM on z inside each content cluster)")):
        if level in doc:
            d = doc[level]
            k = d.get("k", sum(d.get("k_per_content_cluster", {}).values()))
            ari = _fmt(d["ari"]) if "ari" in d else ""
            out.append(f'<tr><th>{_esc(title)}</th><td class="num">{k}</td><td>{_esc(d.get("sizes"))}</td><td class="num">{ari}</td></tr>')
    out.append("</table>")
    structures = doc.get("structures")
    if isinstance(structures, dict) and structures:
        out.append(
            "<h3>Cluster averages</h3><table><tr><th>cluster</th><th>particles</th><th>averaged</th>"
            "<th>alignment score</th><th>best ground-truth match</th><th>AUC-FSC</th><th>FSC=0.5 (\u00c5)</th></tr>"
        )
        for name, s in structures.items():
            t = s.get("truth", {})
            res = f"{t['resolution_fsc05'] * 10:.1f}" if "resolution_fsc05" in t else ""
            out.append(
                f"<tr><th>{_esc(name)}</th><td class='num'>{s['n_particles']}</td><td class='num'>{s['n_averaged']}</td>"
                f"<td class='num'>{s['mean_alignment_score']:.3f}</td><td>{_esc(t.get('best_match', ''))}</td>"
                f"<td class='num'>{_fmt(t['auc_fsc']) if 'auc_fsc' in t else ''}</td><td class='num'>{res}</td></tr>"
            )
        out.append("</table>")
        images = [p for name in structures if (p := analysis / "averages" / f"{name}.png").exists()]
        if images:
            out.append("<p>Central slices of each average (scale bar in the first panel):</p>")
            out.extend(f"<div>{_png(p, p.stem)}</div>" for p in images)
        voxel_a = _voxel_size_A(analysis)
        if voxel_a:
            out.append(_fsc_plot(structures, voxel_a, plots))
    elif isinstance(structures, str):
        out.append(f'<p class="note">{_esc(structures)}</p>')
    cxc = analysis / "chimerax.cxc"
    if cxc.exists():
        out.append(
            '<h3>ChimeraX</h3><p>Open the averages with their contour levels: '
            '<a href="analysis/chimerax.cxc">analysis/chimerax.cxc</a> '
            "(<code>chimerax analysis/chimerax.cxc</code>):</p>"
            f"<pre id='chimerax'>{_esc(cxc.read_text())}</pre>"
        )
    return "\n".join(out)


def _chance(samples: dict[str, np.ndarray] | None) -> dict[str, float]:
    if samples is None or "split" not in samples:
        return {}
    test = samples["split"] == "test"
    out = {}
    for factor in samples:
        if factor not in CODE_KEYS and factor != "split" and samples[factor].dtype.kind in "biuUO":
            _, counts = np.unique(samples[factor][test], return_counts=True)
            if len(counts):
                out[factor] = float(counts.max() / counts.sum())
    return out


def write_report(run_dir: str | Path, *, projection: str | None = None) -> Path:
    """(Re)write ``run_dir/report.html`` from what the run directory holds; returns its path.

    ``projection`` (umap, tsne, pca; default: the run's ``eval.projection``, ``none`` for no
    interactive projections) is how the codes are brought to 2D.
    """
    run = Path(run_dir)
    config_text = (run / "config.yaml").read_text() if (run / "config.yaml").exists() else ""
    cfg = yaml.safe_load(config_text) or {}
    eval_cfg = cfg.get("eval", {}) or {}
    method = projection or eval_cfg.get("projection", "auto")
    seed = int(eval_cfg.get("seed", 0))
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else None
    plots = _Plots()
    samples = _samples(run)
    body = [f"<h1>dualcontrast run: {_esc(run.resolve().name)}</h1>"]
    if metrics:
        data = metrics.get("data", {})
        body.append(
            f"<p>Model <b>{_esc(metrics.get('model'))}</b> on <b>{_esc(data.get('source'))}</b> "
            f"({_esc(data.get('n_train'))} train / {_esc(data.get('n_test'))} test samples), "
            f"epoch {_esc(metrics.get('epoch'))}, evaluated {_esc(metrics.get('created'))}.</p>"
        )
        body.append(_metrics_section(metrics, _chance(samples)))
    else:
        body.append('<p class="note">No metrics.json yet: run <code>dualcontrast evaluate</code>.</p>')
    body.append(_restarts_section(run))
    rows = _read_csv(run / "log.csv")
    evals = _read_csv(run / "eval_log.csv")
    if rows or evals:
        body.append("<h2>Training curves</h2>")
    if rows:
        body.append(plots.html(_curves(rows, ("epoch", "seconds", "lr"), "loss terms per epoch (log.csv)", True), "loss"))
    if evals:
        body.append(plots.html(_curves(evals, ("epoch",), "validation scores during training (eval_log.csv)", False), "scores"))
    grid = run / "figures" / "transfer_grid.png"
    if grid.exists():
        body.append(
            "<h2>Transfer grid</h2><p>Each decoded image takes its content c from the image at the top of "
            "its column and its transformation z (pose / conformation) from the image at the left of its "
            "row: content should follow the columns, pose the rows.</p>" + _png(grid, "transfer grid")
        )
    if samples is not None and method != "none":
        body.append(
            "<h2>Projections of the codes</h2><p class='note'>Hover for a sample's id, cluster and ground truth; "
            "choose the colouring in the menu; zoom with the mouse wheel or a box.</p>"
        )
        for code in ("c", "z"):
            if f"{code}_mu" in samples:
                body.append(_projection(samples, code, method, seed, plots))
    body.append(_analysis_section(run, plots))
    body.append(f"<h2>Configuration</h2><pre id='config'>{_esc(config_text)}</pre>")
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>dualcontrast report: {_esc(run.resolve().name)}</title><style>{_CSS}</style>"
        f"<script>{_JS}</script></head>\n<body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n"
    )
    out = run / REPORT_NAME
    atomic_write_text(out, page)
    log.info("report: %s (%d interactive plots)", out, plots.count)
    return out
