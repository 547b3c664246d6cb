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


@torch.no_grad()
def transfer_grid(
    model: DisentanglementModel,
    columns: np.ndarray,
    rows: np.ndarray,
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    title: str = "content from columns, transformation from rows",
) -> np.ndarray:
    """Decode ``c`` of each column image with ``z`` of each row image; sources on the margins.

    ``columns: (n, C, ...)``, ``rows: (m, C, ...)`` -> saves a PNG, returns the decoded
    ``(m, n, C, ...)`` array.
    """
    model.eval()
    cols = torch.from_numpy(np.asarray(columns, dtype=np.float32)).to(device)
    rws = torch.from_numpy(np.asarray(rows, dtype=np.float32)).to(device)
    c = model.encode(cols).c_mu
    z = model.encode(rws).z_mu
    n, m = c.shape[0], z.shape[0]
    decoded = model.decode(c.repeat(m, 1), z.repeat_interleave(n, 0))
    if decoded is None:
        raise ValueError("this model has no decoder: no transfer grid")
    out = decoded.float().cpu().numpy().reshape(m, n, *decoded.shape[1:])
    show_cols = _displayable(np.asarray(columns, dtype=np.float32))
    show_rows = _displayable(np.asarray(rows, dtype=np.float32))
    show_out = _displayable(out.reshape(m * n, *out.shape[2:]))
    fig, axes = plt.subplots(m + 1, n + 1, figsize=(0.9 * (n + 1), 0.9 * (m + 1)))
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
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False)
    for ax, term in zip(axes.ravel(), terms, strict=False):
        values = np.array([float(r[term]) if r.get(term) not in (None, "") else np.nan for r in rows])
        ax.plot(epochs, values, marker="o", ms=2)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if np.nanmin(values) > 0:
            ax.set_yscale("log")
    for ax in axes.ravel()[len(terms) :]:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def projection_figure(
    codes: np.ndarray,
    factors: dict[str, np.ndarray],
    path: str | Path,
    *,
    title: str,
    method: str = "auto",
    seed: int = 0,
) -> str:
    """Scatter of a 2D projection of ``codes``, one panel coloured by each factor."""
    points, used = project_2d(codes, method, seed)
    panels = list(factors.items()) or [("samples", np.zeros(len(codes), dtype=int))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (name, labels) in zip(axes[0], panels, strict=True):
        labels = np.asarray(labels)
        discrete = labels.dtype.kind in "iub" or len(np.unique(labels)) <= 20
        sc = ax.scatter(
            points[:, 0],
            points[:, 1],
            c=labels,
            s=3,
            cmap="tab10" if discrete else "viridis",
            alpha=0.7,
            linewidths=0,
        )
        if discrete and len(np.unique(labels)) <= 20:
            ax.legend(
                *sc.legend_elements(), fontsize=6, markerscale=0.8, loc="best", title=name, title_fontsize=7
            )
        else:
            fig.colorbar(sc, ax=ax, label=name)
        ax.set_title(f"{title}: {used}, coloured by {name}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return used
