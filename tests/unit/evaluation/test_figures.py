"""Figures a reader can use: titles and labels drawn clear of the images, c and z axes named on the
transfer grid, central slices said and scaled, projections in a readable grid with many-valued
factors drawn as a colour scale or top-k, and FSC against a resolution axis."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dualcontrast.analysis.averaging import save_central_slices
from dualcontrast.analysis.structures import fsc_figure
from dualcontrast.evaluation import figures


@pytest.fixture
def drawn(monkeypatch):
    """The figures the package would save, kept open (and drawn) for inspection."""
    kept = []

    def keep(fig, path, dpi=110):
        fig.canvas.draw()
        kept.append(fig)

    monkeypatch.setattr(figures, "save_figure", keep)
    yield kept
    for fig in kept:
        figures.plt.close(fig)


class StubModel(torch.nn.Module):
    """Encodes an image by its first pixels, decodes to a constant image of the given shape."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def prepare(self, x):
        return x

    def encode(self, x):
        flat = x.flatten(1)
        return SimpleNamespace(c_mu=flat[:, :3], z_mu=flat[:, 3:6])

    def decode(self, c, z):
        return torch.ones(len(c), *self.shape) * (c.sum(1) + z.sum(1)).view(-1, *[1] * len(self.shape))


def _boxes(fig):
    renderer = fig.canvas.get_renderer()
    images = [ax.get_window_extent(renderer) for ax in fig.axes if ax.images]
    texts = [t for t in [fig._suptitle, *fig.texts] if t is not None and t.get_text()]
    for ax in fig.axes:
        texts += [t for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    return renderer, images, texts


def assert_text_clear_of_images(fig):
    renderer, images, texts = _boxes(fig)
    assert images, "figure has no image axes"
    for text in texts:
        box = text.get_window_extent(renderer)
        for image in images:
            overlap = min(box.x1, image.x1) - max(box.x0, image.x0), min(box.y1, image.y1) - max(box.y0, image.y0)
            assert min(overlap) <= 0.5, f"{text.get_text()!r} overlaps an image"
    title = fig._suptitle.get_window_extent(renderer)
    assert title.y0 >= max(image.y1 for image in images), "title not above the images"


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 8, 8, 8)])
def test_transfer_grid_names_c_and_z_above_and_beside_the_images(shape, drawn, tmp_path):
    images = np.random.default_rng(0).random((4, *shape)).astype(np.float32)
    out = figures.transfer_grid(StubModel(shape), images[:3], images[3:], tmp_path / "g.png")
    assert out.shape == (1, 3, *shape)
    (fig,) = drawn
    assert_text_clear_of_images(fig)
    texts = " ".join(t.get_text() for t in [fig._suptitle, *fig.texts])
    assert "content c from the columns" in texts and "transformation z (pose / conformation) from the rows" in texts
    assert ("central XY slices of 3D volumes" in texts) == (len(shape) == 4)


def test_real_transfer_grid_file_is_written(tmp_path):
    images = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    figures.transfer_grid(StubModel((1, 8, 8)), images, images, tmp_path / "g.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "g.png").size
    assert width > 500 and height > 500


def test_central_slices_say_so_and_carry_a_scale_bar(drawn, tmp_path):
    volume = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    save_central_slices(volume, tmp_path / "s.png", title="cluster 0", voxel_size=2.0)
    (fig,) = drawn
    assert_text_clear_of_images(fig)
    assert "central slices" in fig._suptitle.get_text()
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["5 nm"]  # a quarter of 32 nm, rounded down to 1-2-5
    (bar,) = fig.axes[0].patches
    assert bar.get_width() == pytest.approx(2.5)  # 5 nm in 2 nm pixels


def test_nice_length_rounds_down_to_1_2_5():
    assert [figures.nice_length(v) for v in (0.3, 1.0, 4.9, 7.0, 12.0)] == [0.2, 1.0, 2.0, 5.0, 10.0]


def test_projection_panels_form_a_grid_and_many_values_are_not_a_repeating_palette(drawn, tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    factors = {
        "content": rng.integers(0, 5, n),
        "angle": rng.uniform(-180, 180, n),
        "particle": rng.integers(0, 78, n),  # numeric with many values: a colour scale
        "micrograph": np.array([f"mic{i}" for i in rng.integers(0, 40, n)]),  # names: top-k
    }
    figures.projection_figure(rng.normal(size=(n, 5)), factors, tmp_path / "p.png", title="c", method="pca")
    (fig,) = drawn
    width, height = fig.get_size_inches()
    assert width / height < 2.5  # a grid (2 x 2 here), not a 4-panel strip
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == {f"coloured by {k}" for k in factors}
    assert len(panels["coloured by content"].get_legend().get_texts()) == 5
    assert panels["coloured by particle"].get_legend() is None  # colorbar instead
    legend = [t.get_text() for t in panels["coloured by micrograph"].get_legend().get_texts()]
    assert len(legend) == figures.TOP_K + 1 and legend[-1] == "other (30 values)"
    assert fig._suptitle.get_text().startswith("c: 2D pca projection")


def test_colour_values():
    values, names = figures.colour_values(np.array([3, 1, 3]))
    assert names == ["1", "3"] and values.tolist() == [1, 0, 1]
    values, names = figures.colour_values(np.arange(50))
    assert names is None and values.tolist() == list(range(50))
    many = np.array(["a"] * 5 + [f"x{i}" for i in range(30)])
    values, names = figures.colour_values(many)
    assert names[0] == "a" and values[0] == 0 and names[-1] == "other (21 values)"


def test_fsc_figure_has_a_resolution_axis(drawn, tmp_path):
    freq = np.linspace(0, 1, 9)
    results = {"content_cluster_0": {"truth": {"freq": freq.tolist(), "fsc": (1 - freq).tolist(), "auc_fsc": 0.5,
                                               "best_match": "a/0", "resolution_fsc05": 8.0}}}
    fsc_figure(results, tmp_path / "f.png", voxel_size=2.0)  # 20 A voxels: Nyquist 1/40 A
    (fig,) = drawn
    ax = fig.axes[0]
    assert ax.get_xlabel() == "spatial frequency (1/\u00c5)"
    assert ax.get_xlim()[1] == pytest.approx(1 / 40)
    (top,) = ax.child_axes  # the secondary x axis
    assert top.get_xlabel() == "resolution (\u00c5)"
    assert [t.get_text() for t in top.get_xticklabels()][-1] == "40"
    assert "80 \u00c5" in ax.get_legend().get_texts()[0].get_text()
