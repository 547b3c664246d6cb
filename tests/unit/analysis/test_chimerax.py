"""The ChimeraX command file of ``analyze``: it opens every cluster average that was written, the
conformation averages of each content cluster as one volume series, with contour levels and voxel
sizes that match the maps on disk."""

from __future__ import annotations

import re
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from dualcontrast.analysis.averaging import write_mrc
from dualcontrast.analysis.chimerax import ENCLOSED_FRACTION, contour_level, write_chimerax_script


@pytest.fixture
def analysis(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    labels = {"content_cluster": np.array([0, 0, 0, 1, 1, 1]), "conformation_cluster": np.array([0, 1, 1, 2, 3, 3])}
    (tmp_path / "averages").mkdir()
    for name in ("content_cluster_0", "content_cluster_1", *(f"conformation_cluster_{k}" for k in range(4))):
        write_mrc(tmp_path / "averages" / f"{name}.mrc", rng.normal(size=(8, 8, 8)) * 3 + 1, voxel_size=1.5)
    return tmp_path, labels


def _commands(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_script_opens_averages_and_series_with_levels_from_the_maps(analysis):
    folder, labels = analysis
    path = write_chimerax_script(folder, labels)
    assert path == folder / "chimerax.cxc"
    commands = _commands(path)
    opens = [c for c in commands if c.startswith("open ")]
    assert opens == [
        "open averages/content_cluster_0.mrc",
        "open averages/content_cluster_1.mrc",
        "open averages/conformation_cluster_0.mrc averages/conformation_cluster_1.mrc vseries true",
        "open averages/conformation_cluster_2.mrc averages/conformation_cluster_3.mrc vseries true",
    ]
    volumes = [c for c in commands if c.startswith("volume ")]
    assert len(volumes) == len(opens)
    for model, (opened, volume) in enumerate(zip(opens, volumes, strict=True), start=1):
        m = re.fullmatch(r"volume #(\d+) level (\S+) voxelSize (\S+) style surface", volume)
        assert m and int(m[1]) == model
        maps = []
        for name in opened.split()[1:]:
            if name.endswith(".mrc"):
                with mrcfile.open(folder / name) as mrc:
                    maps.append(mrc.data.copy())
                    assert float(m[3]) == pytest.approx(float(mrc.voxel_size.x))  # 15 A
        level = float(m[2])
        assert level == pytest.approx(contour_level(np.stack(maps)), rel=1e-5)
        assert np.mean(np.stack(maps) > level) == pytest.approx(ENCLOSED_FRACTION, abs=0.01)


def test_clusters_without_a_map_are_left_out(analysis):
    folder, labels = analysis
    (folder / "averages" / "content_cluster_1.mrc").unlink()
    (folder / "averages" / "conformation_cluster_3.mrc").unlink()
    commands = _commands(write_chimerax_script(folder, labels))
    assert "open averages/content_cluster_1.mrc" not in commands
    assert "open averages/conformation_cluster_2.mrc" in commands  # a series of one is a plain map


def test_no_maps_no_script(tmp_path):
    (tmp_path / "averages").mkdir()
    assert write_chimerax_script(tmp_path, {"content_cluster": np.zeros(3, int)}) is None
    assert not (tmp_path / "chimerax.cxc").exists()
