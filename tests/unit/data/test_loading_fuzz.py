"""Fuzz of the data loaders (.npy, .npz, .mrc, .star, .h5): byte flips, truncation, overwritten header
fields and extreme values must end in success or a DualContrastError, never in another exception.

The default suite runs a fast sample; the slow suite runs >= 500 cases. Each run counts its cases."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualcontrast.data import load_data
from dualcontrast.errors import DualContrastError

SUFFIXES = [".npy", ".npz", ".mrc", ".star", ".h5"]


def _write_seeds(folder: Path) -> dict[str, bytes]:
    """One small valid file per format; returns their bytes (the mutation seeds)."""
    import h5py
    import mrcfile

    x = np.random.default_rng(0).random((12, 8, 8)).astype(np.float32)
    np.save(folder / "seed.npy", x)
    np.savez(folder / "seed.npz", x=x, y=np.arange(12) % 3)
    with mrcfile.new(folder / "seed.mrc", overwrite=True) as m:
        m.set_data(x)
        m.header.ispg = 0  # an image stack
    with mrcfile.new(folder / "stack.mrcs", overwrite=True) as m:  # what the STAR file points to
        m.set_data(x)
    with h5py.File(folder / "seed.h5", "w") as f:
        f["x"] = x
        f["content"] = np.arange(12) % 3
    (folder / "seed.star").write_text(
        "data_particles\n\nloop_\n_rlnImageName #1\n_rlnClassNumber #2\n"
        + "".join(f"{i + 1:06d}@stack.mrcs {i % 3 + 1}\n" for i in range(12))
    )
    return {s: (folder / f"seed{s}").read_bytes() for s in SUFFIXES}


FOLDER = Path(tempfile.mkdtemp(prefix="dc-fuzz-"))
SEEDS = _write_seeds(FOLDER)
EXTREMES = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x80\x7f",
            b"\x00\x00\xc0\x7f", b"\x01\x00\x00\x80", b"{((", b"\n\n\n", b"9999"]


@st.composite
def mutated(draw):
    suffix = draw(st.sampled_from(SUFFIXES))
    raw = bytearray(SEEDS[suffix])
    kind = draw(st.sampled_from(["flip", "truncate", "header", "extreme"]))
    if kind == "truncate":
        raw = raw[: draw(st.integers(1, len(raw) - 1))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << draw(st.integers(0, 7))
    else:
        # "header": the first 1024 bytes hold every format's header (MRC fields, npy dict, HDF5 superblock).
        end = 1024 if kind == "header" else len(raw) - 4
        i = draw(st.integers(0, min(end, len(raw) - 4)))
        raw[i : i + 4] = draw(st.sampled_from(EXTREMES))[:4].ljust(4, b"\x00")
    return suffix, bytes(raw)


def _check(case, counter: list[int]) -> None:
    suffix, raw = case
    path = FOLDER / f"case{suffix}"
    path.write_bytes(raw)
    counter[0] += 1
    try:
        splits = load_data(path, test_fraction=0.25)
        splits.train.batch(np.arange(len(splits.train)))  # memory-mapped readers fail only on access
    except DualContrastError:
        pass


def _run(n: int) -> int:
    counter = [0]

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(mutated())
    def fuzz(case):
        _check(case, counter)

    fuzz()
    print(f"loader fuzz: {counter[0]} cases, 0 tracebacks")
    return counter[0]


def test_every_seed_file_loads():
    for suffix in SUFFIXES:
        assert len(load_data(FOLDER / f"seed{suffix}", test_fraction=0.25).train) == 9


def test_loader_fuzz_fast_sample():
    assert _run(50) >= 50


@pytest.mark.slow
def test_loader_fuzz_500_cases():
    assert _run(520) >= 500
