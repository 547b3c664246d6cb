"""``report.html`` of a tiny trained run: written by train / evaluate, the metrics in the page are
those of metrics.json, nothing is fetched from the network, and (where Debian's chromium is
installed) the page loads in a real headless browser with no console message, every plotly plot
renders, and a screenshot is not blank."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from dualcontrast.analysis.averaging import save_central_slices, write_mrc
from dualcontrast.analysis.chimerax import write_chimerax_script
from dualcontrast.cli.main import main
from dualcontrast.evaluation.metrics import flat_scores
from dualcontrast.report import write_report

TINY = ["--set", "data.params.n_train_per_cell=20", "--set", "data.params.n_test_per_cell=10",
        "--set", "eval.projection=pca", "--set", "train.progress=false", "--batch-size", "50"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)"
)
METRIC = re.compile(r'data-metric="([^"]+)">([-0-9.]+)<')


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--epochs", "2", "-o", str(path), *TINY]) == 0
    return path


@pytest.fixture(scope="module")
def analysed(run, tmp_path_factory):
    """The run plus an ``analysis/`` folder as ``analyze`` lays it out (3D averages, FSC, ChimeraX),
    made up here so the test needs no 3D training."""
    path = tmp_path_factory.mktemp("analysed") / "tiny"
    shutil.copytree(run, path)
    out = path / "analysis"
    (out / "averages").mkdir(parents=True)
    emb = np.load(run / "embeddings.npz")
    codes = {k: np.concatenate([emb[f"train_{k}"], emb[f"test_{k}"]]) for k in ("c_mu", "z_mu", "ids", "content")}
    content = codes["content"] % 2
    np.savez(out / "codes.npz", **codes)
    np.savez(out / "clusters.npz", ids=codes["ids"], content_cluster=content, conformation_cluster=content)
    rng = np.random.default_rng(0)
    freq = np.linspace(0, 1, 9)
    structures = {}
    for name in ("content_cluster_0", "content_cluster_1"):
        volume = rng.normal(size=(16, 16, 16)).astype(np.float32)
        write_mrc(out / "averages" / f"{name}.mrc", volume, voxel_size=2.0)
        save_central_slices(volume, out / "averages" / f"{name}.png", title=name, voxel_size=2.0)
        structures[name] = {"n_particles": 300, "n_averaged": 300, "mean_alignment_score": 0.5,
                            "truth": {"best_match": "a/0", "auc_fsc": 0.5, "resolution_fsc05": 8.0,
                                      "fsc": (1 - freq).tolist(), "freq": freq.tolist()}}
    doc = {"content_clusters": {"k": 2, "sizes": np.bincount(content).tolist(), "ari": 0.25},
           "structures": structures}
    (out / "analysis.json").write_text(json.dumps(doc))
    write_chimerax_script(out, {"content_cluster": content})
    write_report(path)
    return path


def _page(path) -> str:
    return (path / "report.html").read_text(encoding="utf-8")


def _scores(path) -> dict[str, float]:
    return flat_scores(json.loads((path / "metrics.json").read_text())["scores"])


def test_train_and_evaluate_write_the_report(run):
    assert (run / "report.html").exists()
    (run / "report.html").unlink()
    assert main(["evaluate", str(run), "--no-figures"]) == 0  # fresh metrics, no projections
    assert 'data-metric="d_c_c"' in _page(run) and "projection-c" not in _page(run)
    assert main(["evaluate", str(run)]) == 0
    assert 'id="projection-c"' in _page(run)


def test_metrics_in_the_page_are_those_of_metrics_json(run):
    shown = {k: float(v) for k, v in METRIC.findall(_page(run))}
    scores = _scores(run)
    assert set(shown) == set(scores)
    for key, value in scores.items():
        assert shown[key] == pytest.approx(value, abs=5e-5), key
    assert "accuracy of the content code c predicting the content class" in _page(run)


def test_the_page_is_self_contained(analysed):
    page = _page(analysed)
    assert not re.search(r"<script[^>]*\bsrc=", page), "a script loaded from elsewhere"
    # Markup only: plotly's bundle holds URLs in strings (its logo link, map tile servers) it never loads here.
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert not re.search(r"<link\b", markup), "a stylesheet or other linked resource"
    assert not re.search(r"""\b(src|href)=["']?(https?:)?//""", markup), "a network reference"
    assert "@import" not in markup and "url(http" not in markup
    assert len(re.findall(r"plotly\.js v\d", page)) == 1, "plotly's JavaScript must be embedded exactly once"
    assert page.count('class="plotly-graph-div"') == 5  # loss, validation scores, c, z, FSC
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', markup)) == 3  # transfer grid, two central-slice figures


def test_the_page_shows_the_analysis(analysed):
    page = _page(analysed)
    for text in ("Clusters (dualcontrast analyze)", "content_cluster_1", "resolution (\u00c5) below",
                 'href="analysis/chimerax.cxc"', "open averages/content_cluster_0.mrc", "download selected samples"):
        assert text in page, text
    assert "dcSelection(\"projection-c\", [\"id\", \"content_cluster\"" in page  # cluster in the hover and CSV


def _chromium(tmp_path, page, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1400,3000", *args, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )


@needs_chromium
def test_page_renders_in_headless_chromium(analysed, tmp_path):
    result = _chromium(tmp_path, analysed / "report.html", "--virtual-time-budget=5000", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = result.stdout
    plots = _page(analysed).count('class="plotly-graph-div"')
    assert dom.count('class="plot-container plotly"') == plots
    assert dom.count('class="main-svg"') >= plots
    assert {k: float(v) for k, v in METRIC.findall(dom)} == pytest.approx(
        {k: round(v, 4) for k, v in _scores(analysed).items()}, abs=5e-5
    )


@needs_chromium
def test_screenshot_is_not_blank(analysed, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, analysed / "report.html", "--virtual-time-budget=5000", f"--screenshot={shot}")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (3000, 1400)
    assert image.std() > 20 and len(np.unique(image)) > 100  # text, plots and images, not a white page


# Drives the page as a user would: a lasso selection of three points (plotly's own event), the
# download button (the CSV captured where the browser would save it), a colour-menu entry and its key.
_DRIVER = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const gd = document.getElementById('projection-c');
  const blobUrl = URL.createObjectURL;
  URL.createObjectURL = (b) => { b.text().then((t) => document.body.dataset.csv = t); return blobUrl(b); };
  gd.emit('plotly_selected', {points: [0, 5, 9].map((i) => ({customdata: gd.data[0].customdata[i]}))});
  document.body.dataset.count = document.getElementById('projection-c-count').textContent;
  document.getElementById('projection-c-download').click();
  Plotly.update(gd, ...gd.layout.updatemenus[0].buttons[1].args);
  document.body.dataset.key = (gd.layout.annotations || []).map((a) => a.text).join(' ');
  document.body.dataset.menu = gd.layout.updatemenus[0].buttons.map((b) => b.label).join('|');
  document.body.dataset.colour = String(gd.data[0].marker.color[0]);
}, 200));
</script></body>"""


@needs_chromium
def test_lasso_selection_downloads_the_selected_ids(analysed, tmp_path):
    import html

    page = tmp_path / "driven.html"
    page.write_text(_page(analysed).replace("</body>", _DRIVER), encoding="utf-8")
    result = _chromium(tmp_path, page, "--virtual-time-budget=5000", "--dump-dom")
    body = re.search(r"<body([^>]*)>", result.stdout).group(1)
    attrs = {k: html.unescape(v) for k, v in re.findall(r'data-(\w+)="([^"]*)"', body)}
    assert attrs["count"] == "3 samples selected"
    lines = attrs["csv"].strip().splitlines()
    assert lines[0] == "id,content_cluster,conformation_cluster,content"
    codes = np.load(analysed / "analysis" / "codes.npz")
    keep = np.sort(np.random.default_rng(0).permutation(len(codes["ids"]))[:2000])
    assert [line.split(",")[0] for line in lines[1:]] == [str(codes["ids"][keep][i]) for i in (0, 5, 9)]
    assert attrs["menu"].split("|")[:2] == ["colour by content_cluster", "colour by conformation_cluster"]
    assert attrs["colour"].startswith("#")
    assert attrs["key"].startswith("conformation_cluster: ")  # the colour key follows the menu
