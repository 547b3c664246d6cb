"""A ChimeraX command file (``analysis/chimerax.cxc``) that shows the cluster averages of ``analyze``.

Content-cluster averages open one model each; the conformation averages inside each content cluster
open as one volume series (``vseries true``: a slider steps through the conformations). ChimeraX
runs a ``.cxc`` from its own folder, so the paths are relative and the analysis folder may move.
Contour levels come from each map's statistics (see :func:`contour_level`), the voxel size from the
MRC header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ENCLOSED_FRACTION = 0.1  # contour encloses the densest 10% of the box: particle-sized for these boxes


def contour_level(volume: np.ndarray, enclosed: float = ENCLOSED_FRACTION) -> float:
    """The density above which ``enclosed`` of the voxels lie (a fixed enclosed-volume fraction:
    unlike mean + k sd it always draws a surface, whatever the noise level of the average)."""
    return float(np.quantile(np.asarray(volume, dtype=np.float64), 1.0 - enclosed))


def _read(path: Path) -> tuple[np.ndarray, float]:
    import mrcfile

    with mrcfile.open(path, permissive=True) as mrc:
        return np.asarray(mrc.data, dtype=np.float32), float(mrc.voxel_size.x)


def write_chimerax_script(
    analysis_dir: Path, labels: dict[str, np.ndarray], averages: str = "averages"
) -> Path | None:
    """Write ``analysis_dir/chimerax.cxc`` for the ``<level>_<k>.mrc`` maps in ``averages/``.

    ``labels`` holds ``content_cluster`` and, if any, ``conformation_cluster`` per sample (to group
    conformation clusters by their content cluster). Returns the path, or None if no map exists.
    """
    folder = analysis_dir / averages
    content = labels["content_cluster"]
    conf = labels.get("conformation_cluster")
    lines = [
        "# ChimeraX commands written by `dualcontrast analyze`: open with",
        "#   chimerax chimerax.cxc     (or `open chimerax.cxc` inside ChimeraX)",
        f"# Contour levels enclose the densest {ENCLOSED_FRACTION:.0%} of each box; voxel sizes in A.",
        "close session",
    ]
    model = 0

    def show(paths: list[Path], what: str) -> None:
        nonlocal model
        maps = [_read(p) for p in paths]
        model += 1
        level = contour_level(np.stack([m for m, _ in maps]))
        names = " ".join(f"{averages}/{p.name}" for p in paths)
        series = " vseries true" if len(paths) > 1 else ""
        lines.append(f"# #{model}: {what}")
        lines.append(f"open {names}{series}")
        lines.append(f"volume #{model} level {level:.6g} voxelSize {maps[0][1]:.6g} style surface")

    singles = [folder / f"content_cluster_{c}.mrc" for c in np.unique(content)]
    for path in (p for p in singles if p.exists()):
        show([path], f"average of {path.stem}")
    if conf is not None:
        for c in np.unique(content):
            series = [folder / f"conformation_cluster_{k}.mrc" for k in np.unique(conf[content == c])]
            series = [p for p in series if p.exists()]
            if series:
                show(series, f"conformation averages inside content_cluster_{c}: "
                     + ", ".join(p.stem for p in series))
    if model == 0:
        return None
    lines += ["tile", "view", ""]
    out = analysis_dir / "chimerax.cxc"
    out.write_text("\n".join(lines))
    return out
