"""Figures of a run: content-transformation transfer grid, loss curves, code projections."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a display
import matplotlib.pyplot as plt
import numpy as np
import torch

from ..models.base import DisentanglementModel

log = logging.getLogger(__name__)


def _displayable(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` or ``(N, C, D, H, W)`` -> ``(N, H, W[, 3])`` in [0, 1]; volumes show their central slice."""
    if x.ndim == 5:
        x = x[:, :, x.shape[2] // 2]
    x = np.moveaxis(x, 1, -1)
    if x.shape[-1] == 1:
        x = x[..., 0]
    lo = x.reshape(len(x), -1).min(1).reshape(-1, *[1] * (x.ndim - 1))
    hi = x.reshape(len(x), -1).max(1).reshape(-1, *[1] * (x.ndim - 1))
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-8), 0, 1)


def pick_examples(n_total: int, labels: np.ndarray | None, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` samples out of ``n_total``: one per class first (by class), then random others."""
    rng = np.random.default_rng(seed)
    n = min(n, n_total)
    if labels is None:
        return np.sort(rng.choice(n_total, n, replace=False))
    chosen = [int(rng.choice(np.flatnonzero(labels == cls))) for cls in np.unique(labels)[:n]]
    rest = np.setdiff1d(np.arange(n_total), chosen)
    extra = rng.choice(rest, n - len(chosen), replace=False)
    return np.array(chosen + [int(i) for i in extra], dtype=int)


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` and free it (every figure of the package ends here)."""
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def nice_length(target: float) -> float:
    """The 1, 2 or 5 times a power of ten closest below ``target`` (a scale bar's length)."""
    if target <= 0:
        raise ValueError(f"scale bar length must be positive, got {target}")
    power = 10.0 ** np.floor(np.log10(target))
    return float(max(m for m in (1.0, 2.0, 5.0) if m * power <= target) * power)


def add_scale_bar(ax, n_pixels: int, voxel_size_nm: float, *, fraction: float = 0.25) -> float:
    """A white bar of a round length (about ``fraction`` of the width) in the lower left of an
    image axes of ``n_pixels`` pixels of ``voxel_size_nm`` each; returns its length in nm."""
    length = nice_length(fraction * n_pixels * voxel_size_nm)
    pixels = length / voxel_size_nm
    x0, y0 = 0.06 * n_pixels - 0.5, 0.06 * n_pixels - 0.5
    ax.add_patch(
        matplotlib.patches.Rectangle((x0, y0), pixels, 0.03 * n_pixels + 0.3, color="white", lw=0)
    )
    label = f"{length:g} nm" if length >= 1 else f"{length * 10:g} \u00c5"
    ax.text(x0, y0 + 0.05 * n_pixels + 0.5, label, color="white", fontsize=7, va="bottom")
    return length


@torch.no_grad()
def transfer_grid(
    model: DisentanglementModel,
    columns: np.ndarray,
    rows: np.ndarray,
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Decode ``c`` of each column image with ``z`` of each row image; sources on the margins.

    ``columns: (n, C, ...)``, ``rows: (m, C, ...)`` -> saves a PNG, returns the decoded
    ``(m, n, C, ...)`` array. Volumes are shown by their central XY slice, and the title says so.
    """
    model.eval()
    # The margins show the inputs as the model sees them (finished like its training views).
    cols = model.prepare(torch.from_numpy(np.asarray(columns, dtype=np.float32)).to(device))
    rws = model.prepare(torch.from_numpy(np.asarray(rows, dtype=np.float32)).to(device))
    c = model.encode(cols).c_mu
    z = model.encode(rws).z_mu
    n, m = c.shape[0], z.shape[0]
    decoded = model.decode(c.repeat(m, 1), z.repeat_interleave(n, 0))
    if decoded is None:
        raise ValueError("this model has no decoder: no transfer grid")
    out = decoded.float().cpu().numpy().reshape(m, n, *decoded.shape[1:])
    show_cols = _displayable(cols.float().cpu().numpy())
    show_rows = _displayable(rws.float().cpu().numpy())
    show_out = _displayable(out.reshape(m * n, *out.shape[2:]))
    # Margins in inches, so the labels keep their room whatever the grid size.
    cell, left, top, pad = 0.9, 0.35, 0.75, 0.05
    width, height = cell * (n + 1) + left + pad, cell * (m + 1) + top + pad
    fig, axes = plt.subplots(m + 1, n + 1, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(
        left=left / width, right=1 - pad / width, top=1 - top / height, bottom=pad / height,
        wspace=0.06, hspace=0.06,
    )
    cmap = "gray" if show_out.ndim == 3 else None
    for ax in axes.ravel():
        ax.set_axis_off()
    for j in range(n):
        axes[0, j + 1].imshow(show_cols[j], cmap=cmap)
    for i in range(m):
        axes[i + 1, 0].imshow(show_rows[i], cmap=cmap)
        for j in range(n):
            axes[i + 1, j + 1].imshow(show_out[i * n + j], cmap=cmap)
    for ax in axes[0, 1:].tolist() + axes[1:, 0].tolist():
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_color("tab:red")
            s.set_linewidth(1.5)
    axes[0, 0].text(0.5, 0.5, "c \u2192\nz \u2193", ha="center", va="center", fontsize=10,
                    transform=axes[0, 0].transAxes)
    what = "central XY slices of 3D volumes" if np.asarray(columns).ndim == 5 else "decoded images"
    fig.suptitle(f"Transfer grid ({what})", y=1 - 0.08 / height, va="top", fontsize=10)
    fig.text(left / width, 1 - 0.42 / height, "content c from the columns \u2192", va="top", fontsize=9)
    fig.text(0.1 / width, (1 - top / height) / 2 + pad / height / 2,
             "\u2190 transformation z (pose / conformation) from the rows", rotation=90,
             ha="left", va="center", fontsize=9)
    save_figure(fig, path)
    return out


def loss_curves(log_csv: str | Path, path: str | Path) -> None:
    """Every logged term against epochs, one panel per term (log scale where positive)."""
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    terms = [k for k in rows[0] if k not in ("epoch", "seconds", "lr")]
    epochs = [int(r["epoch"]) for r in rows]
    ncol = min(4, len(terms))
    nrow = int(np.ceil(len(terms) / ncol))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow + 0.4), squeeze=False, layout="constrained"
    )
    for ax, term in zip(axes.ravel(), terms, strict=False):
        values = np.array([float(r[term]) if r.get(term) not in (None, "") else np.nan for r in rows])
        ax.plot(epochs, values, marker="o", ms=2)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if np.nanmin(values) > 0:
            ax.set_yscale("log")
    for ax in axes.ravel()[len(terms) :]:
        ax.set_axis_off()
    fig.suptitle("Training loss terms per epoch (log.csv)", fontsize=10)
    save_figure(fig, path)


def project_2d(codes: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2D projection of codes: UMAP (if installed), t-SNE or PCA. Returns (points, method used)."""
    if method == "auto":
        try:
            import umap

            method = "umap"
        except ImportError:
            method = "tsne"
    if codes.shape[1] <= 2:
        return np.pad(codes, ((0, 0), (0, 2 - codes.shape[1]))), "identity"
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(codes), "umap"
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(codes) - 1) // 3)))
        return TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(
            codes
        ), "tsne"
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(codes), "pca"
    raise ValueError(f"unknown projection {method!r} (use auto, umap, tsne, pca)")


MAX_CATEGORIES = 20  # more distinct values than this: numbers get a colour scale, names their top k
TOP_K = 10


def colour_values(labels: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """How to colour points by one factor: ``(values, category names)``.

    Up to ``MAX_CATEGORIES`` distinct values: category indices and their names. More, and numbers:
    the numbers themselves with no names (a continuous scale). More, and anything else: the
    ``TOP_K`` most frequent values plus one "other" category.
    """
    labels = np.asarray(labels)
    uniq, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(uniq) <= MAX_CATEGORIES:
        return inverse, [str(u) for u in uniq]
    if labels.dtype.kind in "iufb":
        return labels.astype(float), None
    top = np.argsort(-counts, kind="stable")[:TOP_K]
    rank = np.full(len(uniq), TOP_K)
    rank[top] = np.arange(len(top))
    return rank[inverse], [str(uniq[t]) for t in top] + [f"other ({len(uniq) - TOP_K} values)"]


def projection_figure(
    codes: np.ndarray,
    factors: dict[str, np.ndarray],
    path: str | Path,
    *,
    title: str,
    method: str = "auto",
    seed: int = 0,
) -> str:
    """Scatter of a 2D projection of ``codes``, one panel coloured by each factor, panels in a grid
    of at most three columns."""
    points, used = project_2d(codes, method, seed)
    panels = list(factors.items()) or [("samples", np.zeros(len(codes), dtype=int))]
    ncol = 2 if len(panels) == 4 else min(3, len(panels))  # no lone panel under three
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(5.0 * ncol, 4.2 * nrow + 0.4), squeeze=False, layout="constrained"
    )
    for ax, (name, labels) in zip(axes.ravel(), panels, strict=False):
        values, names = colour_values(labels)
        if names is None:
            sc = ax.scatter(points[:, 0], points[:, 1], c=values, s=4, cmap="viridis", alpha=0.8, linewidths=0)
            fig.colorbar(sc, ax=ax, label=name, shrink=0.85)
        else:
            cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
            for k, label in enumerate(names):
                sel = values == k
                colour = "lightgrey" if label.startswith("other (") else cmap(k % cmap.N)
                ax.scatter(points[sel, 0], points[sel, 1], s=4, color=colour, alpha=0.8, linewidths=0,
                           label=label)
            ax.legend(fontsize=7, markerscale=2.5, title=name, title_fontsize=8,
                      loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
        ax.set_title(f"coloured by {name}", fontsize=10)
        ax.set_xlabel(f"{used} 1", fontsize=8)
        ax.set_ylabel(f"{used} 2", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle(f"{title}: 2D {used} projection of {len(points)} samples", fontsize=11)
    save_figure(fig, path)
    return used
