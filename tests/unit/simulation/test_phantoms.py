"""Built-in phantom maps: identities differ clearly, states differ subtly, molecules fit the box."""

from __future__ import annotations

import numpy as np
import pytest

from dualcontrast.errors import ConfigError
from dualcontrast.simulation.phantoms import PHANTOMS, Blobs, ball, phantom_blobs, phantom_maps, render


@pytest.fixture(scope="module")
def maps():
    return phantom_maps(box=32, voxel_size=1.0, n_states=4)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def test_three_identities_four_states_each(maps):
    identities = sorted({k[0] for k in maps})
    assert len(identities) >= 3
    for name in identities:
        states = [k for k in maps if k[0] == name]
        assert len(states) >= 4
    for v in maps.values():
        assert v.shape == (32, 32, 32) and v.dtype == np.float32
        assert np.isfinite(v).all() and v.min() >= 0 and v.max() > 0.5


def test_states_differ_less_than_identities(maps):
    names = list(PHANTOMS)
    # Every state differs from state 0 of its identity...
    for name in names:
        for k in range(1, 4):
            assert _rel(maps[(name, "state0")], maps[(name, f"state{k}")]) > 0.01
    # ... far less than identities differ from each other, and consecutive states differ by
    # roughly equal steps (the state parameter scales the change linearly).
    worst_state = max(_rel(maps[(n, "state0")], maps[(n, "state3")]) for n in names)
    best_identity = min(
        _rel(maps[(a, "state0")], maps[(b, "state0")]) for a in names for b in names if a != b
    )
    assert best_identity > 2 * worst_state
    for name in ("spike", "fas"):  # subtle: a hinge of a few degrees, a shift of a voxel or two
        assert _rel(maps[(name, "state0")], maps[(name, "state3")]) < 0.15
    # The nucleosome's arms open visibly, like the paper's nucleosome states.
    assert _rel(maps[("nucleosome", "state0")], maps[("nucleosome", "state3")]) > 0.25


def test_molecules_sit_centred_with_margin(maps):
    centre = 15.5
    idx = np.arange(32)
    for (_, state), v in maps.items():
        mass = v.sum()
        if state == "state0":  # identities are centred on their state-0 mass centre
            com = [(v.sum(axis=tuple(j for j in range(3) if j != a)) * idx).sum() / mass for a in range(3)]
            np.testing.assert_allclose(com, centre, atol=0.3)
        # Room for random shifts: almost nothing within 3 voxels of a face.
        inner = v[3:-3, 3:-3, 3:-3].sum()
        assert inner > 0.995 * mass


def test_similar_sizes(maps):
    masses = [maps[(n, "state0")].sum() for n in PHANTOMS]
    assert max(masses) < 3 * min(masses)


def test_render_places_and_normalises_a_blob():
    blob = Blobs(np.zeros((1, 3)), np.array([1.5]), np.array([10.0]))
    v = render(blob, 20, 1.0)
    assert np.unravel_index(np.argmax(v), v.shape) in {(9, 9, 9), (10, 10, 10), (9, 10, 10), (10, 9, 9)}
    assert v.sum() == pytest.approx(10.0, rel=1e-3)
    # Blobs are widened for coarse grids but keep their mass (nm^3 per voxel = 8 here).
    assert render(blob, 10, 2.0).sum() * 8 == pytest.approx(10.0, rel=1e-2)


def test_solid_primitives_have_unit_density():
    v = render(ball((0, 0, 0), 5.0, 0.8), 24, 0.5)
    assert v[12, 12, 12] == pytest.approx(1.0, abs=0.05)


def test_axes_order_is_z_y_x():
    # A blob at +x must land on the last array axis.
    blob = Blobs(np.array([[4.0, 0.0, 0.0]]), np.array([1.0]), np.array([1.0]))
    v = render(blob, 16, 1.0)
    z, y, x = np.unravel_index(np.argmax(v), v.shape)
    assert x > 9 and 6 <= y <= 9 and 6 <= z <= 9


def test_deterministic_and_scalable():
    a = phantom_maps(box=16, voxel_size=2.0, n_states=4)
    b = phantom_maps(box=16, voxel_size=2.0, n_states=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(phantom_maps(box=16, voxel_size=2.0, n_states=6)) == 18


def test_box_too_small_is_refused():
    with pytest.raises(ConfigError, match="box"):
        phantom_maps(box=16, voxel_size=1.0)
    with pytest.raises(ConfigError, match="unknown phantom"):
        phantom_blobs("ribosome")
