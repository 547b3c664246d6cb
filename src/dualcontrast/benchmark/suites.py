"""The benchmark's suites (methods x data sets x seeds), budgets and the paper's Table 1 numbers.

The data sets' config layers are files of the configs shipped in the package
(``dualcontrast/configs/``, also reachable as ``configs/`` at the repository root), so an
installed package benchmarks from any folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import CONFIGS_DIR
from ..errors import ConfigError

# --------------------------------------------------------------------------- methods and data sets


@dataclass(frozen=True)
class MethodSpec:
    """A method of the suite: registry name, row label, and whether it decodes (transfer grid)."""

    name: str
    label: str
    decoder: bool = True


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec("dualcontrast", "DualContrast"),
        MethodSpec("vae2", "VAE with 2 latent spaces"),
        MethodSpec("dualcontrast-no-con-c", "DualContrast w/o L_con(c)"),
        MethodSpec("dualcontrast-no-con-z", "DualContrast w/o L_con(z)"),
        MethodSpec("dualcontrast-pos-only", "DualContrast, positive pairs only"),
        MethodSpec("dualcontrast-neg-only", "DualContrast, negative pairs only"),
        MethodSpec("simclr", "SimCLR (discriminative)", decoder=False),
        MethodSpec("simclr-gen", "SimCLR (generative)"),
        MethodSpec("harmony", "Harmony"),
        MethodSpec("spatial-vae", "SpatialVAE"),
        MethodSpec("vitae", "VITAE"),
        MethodSpec("disco", "DisCo", decoder=False),
        MethodSpec("hydra", "Hydra (2D projections)"),
    )
}


@dataclass(frozen=True)
class DatasetSpec:
    """A data set of the suite and how its runs are configured and scored.

    ``config_files``: config layers passed to ``train --config`` (paths relative to the
    repository root). ``layer``: config settings on top of them. ``transform_scores``: where
    D(z|z), D(z|c), SAP(z) come from — ``none`` (no transformation labels), ``global`` (the
    scores over the whole test set) or ``within_content`` (the per-identity scores of
    ``metrics.json``: a state index means a different conformation for each identity).
    ``paper``: key of :data:`PAPER_TABLE1` with the paper's numbers for this data set.
    """

    name: str
    title: str
    ndim: int
    config_files: tuple[str, ...] = ()
    layer: dict[str, Any] = field(default_factory=dict)
    transform_scores: str = "global"
    paper: str | None = None
    content_names: tuple[str, ...] = ()


DATASETS: dict[str, DatasetSpec] = {
    d.name: d
    for d in (
        DatasetSpec(
            "mnist",
            "MNIST (rotation T in [-90, 90] deg)",
            ndim=2,
            config_files=("configs/mnist.yaml",),
            transform_scores="none",
            paper="mnist",
        ),
        DatasetSpec(
            "shapes2d",
            "shapes2d (built-in: 5 shapes x 4 transformation states)",
            ndim=2,
            layer={"data": {"name": "shapes2d", "path": None}},
        ),
        DatasetSpec(
            "phantoms3d",
            "phantoms3d (built-in subtomograms: 3 identities x 4 conformational states, SNR 0.1)",
            ndim=3,
            config_files=("configs/subtomo.yaml",),
            transform_scores="within_content",
            paper="subtomo",
            content_names=("nucleosome", "spike", "fas"),
        ),
    )
}

# Table 1 of the paper (METHOD.md): MNIST and Subtomogram columns; "-" entries are absent.
_C = ("d_c_c", "d_c_z", "sap_c")
_CZ = (*_C, "d_z_z", "d_z_c", "sap_z")
PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    "mnist": {
        method: dict(zip(_C, values, strict=True))
        for method, values in {
            "spatial-vae": (0.81, 0.28, 0.53),
            "harmony": (0.82, 0.31, 0.51),
            "simclr": (0.58, 0.60, 0.02),
            "simclr-gen": (0.53, 0.67, 0.14),
            "vae2": (0.63, 0.63, 0.00),
            "vitae": (0.77, 0.32, 0.45),
            "dualcontrast-no-con-c": (0.87, 0.21, 0.66),
            "dualcontrast-no-con-z": (0.79, 0.85, 0.06),
            "dualcontrast": (0.89, 0.31, 0.58),
        }.items()
    },
    "subtomo": {
        method: dict(zip(_CZ, values, strict=True))
        for method, values in {
            "spatial-vae": (0.69, 0.93, 0.24, 0.71, 0.57, 0.14),
            "harmony": (0.95, 0.01, 0.94, 0.52, 0.90, 0.38),
            "simclr": (0.39, 0.69, 0.30, 0.51, 0.52, 0.01),
            "simclr-gen": (0.53, 0.59, 0.06, 0.55, 0.54, 0.01),
            "vae2": (0.79, 0.82, 0.03, 0.85, 0.85, 0.00),
            "dualcontrast-no-con-c": (0.93, 0.81, 0.13, 0.78, 0.81, 0.03),
            "dualcontrast-no-con-z": (0.99, 0.86, 0.13, 0.86, 0.63, 0.23),
            "dualcontrast": (1.00, 0.56, 0.44, 0.86, 0.64, 0.22),
        }.items()
    },
}


@dataclass(frozen=True)
class Suite:
    """Methods x data sets x seeds; ``unsupported[(method, dataset)]`` = why that cell is "-"."""

    name: str
    title: str
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    unsupported: dict[tuple[str, str], str] = field(default_factory=dict)


SUITES: dict[str, Suite] = {
    "table1": Suite(
        "table1",
        "Table 1: DualContrast, its ablations and the baselines",
        methods=tuple(METHODS),
        datasets=("mnist", "shapes2d", "phantoms3d"),
        seeds=(0, 1, 2),
        unsupported={
            ("vitae", "phantoms3d"): "the paper reports VITAE on 2D data only ('-' in its Table 1), "
            "so the suite leaves it out as the paper does; this project's VITAE also runs on "
            "volumes (dualcontrast train --model vitae --config configs/subtomo.yaml)",
            **{
                ("hydra", d): "Hydra reconstructs 3D maps from 2D projections; the paper runs it on the "
                "subtomograms' projections only"
                for d in ("mnist", "shapes2d")
            },
        },
    ),
}


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """How much every run of a suite trains.

    ``common``: config layer of every run. ``datasets[d]``: layer of every run on data set
    ``d`` — the same for every method, so methods are compared at equal epochs and data.
    ``methods[d][m]``: settings of one method on one data set that are not budget (network
    sizes of methods too costly at the budget, minimum epochs); each is listed in the
    table header. ``reduced``: the table is a reduced one (stated in its header).
    """

    name: str
    description: str
    common: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    reduced: bool = True


# Lighter 3D networks: encoder conv channels halved, its head and the decoder at a quarter.
# Measured on one busy core, DualContrast on 32^3: 4.9 s per batch of 50 with the reference
# networks, 0.65 s with these.
_LIGHT_3D = {
    "encoder_options": {"channels": [16, 32, 64], "head_channels": [128, 256]},
    "decoder_options": {"channels": [32, 16, 8]},
}

BUDGETS: dict[str, Budget] = {
    "tiny": Budget(
        "tiny",
        "smoke test of the harness (tests): a few samples, 1 epoch; the numbers mean nothing",
        common={"eval": {"projection": "none"}, "train": {"progress": False}},
        datasets={
            "mnist": {"data": {"max_samples": 200}, "train": {"epochs": 1, "batch_size": 50}},
            "shapes2d": {
                "data": {"params": {"n_train_per_cell": 5, "n_test_per_cell": 3}},
                "train": {"epochs": 1, "batch_size": 50},
            },
            "phantoms3d": {
                "data": {"params": {"n_per_state": 4, "box": 16, "voxel_size": 2.0, "progress": False}},
                "model": {"content_dim": 8, "transform_dim": 8, **_LIGHT_3D},
                "train": {"epochs": 1, "batch_size": 16},
                "eval": {"batch_size": 50},
            },
        },
        methods={d: {"spatial-vae": {"model": {"params": {"hidden": 16}}}} for d in DATASETS},
    ),
    "cpu-hour": Budget(
        "cpu-hour",
        "reduced CPU table: about one hour for the whole table1 suite on an idle 2-core CPU",
        # Runs of seconds to minutes: the suite's own bar says enough.
        common={"eval": {"projection": "pca"}, "train": {"progress": False}},
        datasets={
            "mnist": {"data": {"max_samples": 10000}, "train": {"epochs": 4}},
            "shapes2d": {
                "data": {"params": {"n_train_per_cell": 250, "n_test_per_cell": 50}},
                "train": {"epochs": 5},
            },
            "phantoms3d": {
                "data": {"params": {"n_per_state": 80, "progress": False}},
                "model": _LIGHT_3D,
                "train": {"epochs": 6},
            },
        },
        methods={
            "mnist": {"spatial-vae": {"model": {"params": {"hidden": 64}}}},
            "shapes2d": {"spatial-vae": {"model": {"params": {"hidden": 64}}}},
            "phantoms3d": {"spatial-vae": {"model": {"params": {"hidden": 32}}}},
        },
    ),
    "full": Budget(
        "full",
        "the paper's schedule (GPU): MNIST and shapes2d 200 epochs of batch 100, "
        "subtomograms 150 epochs of batch 50, Adam 1e-4 with StepLR(50, 0.1)",
        datasets={
            "mnist": {"train": {"epochs": 200, "batch_size": 100}},
            "shapes2d": {"train": {"epochs": 200, "batch_size": 100}},
            "phantoms3d": {
                "data": {"params": {"n_per_state": 1000, "progress": False}},
                "train": {"epochs": 150, "batch_size": 50},
            },
        },
        reduced=False,
        methods={
            # The paper's 500 hidden units at every voxel of 32^3: ~3 GB of activations per layer
            # and ~2.5 TFLOP per batch of 50, about an hour per run on an H100 by that count (not
            # measured); 128 units cost ~15x less in the hidden layer.
            "phantoms3d": {"spatial-vae": {"model": {"params": {"hidden": 128}}}},
        },
    ),
}


def _hydra(**params: Any) -> dict[str, Any]:
    """Hydra's layer on the subtomograms: their projections along z with the simulation's CTF (as the
    paper did), un-normalised images (the likelihood models the CTF), a field learning rate for its
    MLPs, and its pose-search schedule."""
    return {"data": {"project": True, "normalize": "none"}, "train": {"lr": 3e-3}, "model": {"params": params}}


for _budget, _params in (
    ("tiny", {"pose_search_epochs": 1, "directions": 12, "refine_levels": 1, "infer_steps": 1}),
    ("cpu-hour", {"pose_search_epochs": 2}),
    ("full", {"pose_search_epochs": 30}),  # the paper: 30 of 130 epochs
):
    BUDGETS[_budget].methods.setdefault("phantoms3d", {})["hydra"] = _hydra(**_params)


# Methods that cannot train in fewer epochs: DisCo trains its generator for the first half.
MIN_EPOCHS = {"disco": 2}


def scale_epochs(budget: Budget, factor: float) -> Budget:
    """``budget`` with every epoch count multiplied by ``factor`` (rounded, at least 1)."""
    if not factor > 0:
        raise ConfigError(f"--epochs-scale must be > 0, got {factor}")
    if factor == 1:
        return budget

    def scaled(layer: dict[str, Any]) -> dict[str, Any]:
        epochs = layer.get("train", {}).get("epochs")
        if epochs is None:
            return layer
        return merge_layers(layer, {"train": {"epochs": max(1, round(epochs * factor))}})

    return dataclasses.replace(
        budget,
        name=f"{budget.name} x{factor:g} epochs",
        description=f"{budget.description}; every epoch count x{factor:g}",
        datasets={d: scaled(layer) for d, layer in budget.datasets.items()},
        methods={d: {m: scaled(layer) for m, layer in per.items()} for d, per in budget.methods.items()},
    )


def merge_layers(*layers: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts merged left to right (later wins); inputs are not modified."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge_layers(out[key], value)
            else:
                out[key] = value
    return out


def find_config_file(name: str) -> Path:
    """A ready-made config file, ``configs/...``: from the current folder (a user's edited copy),
    else the package's own (:data:`CONFIGS_DIR`)."""
    shipped = CONFIGS_DIR / Path(name).relative_to("configs") if Path(name).parts[:1] == ("configs",) else None
    for candidate in (Path.cwd() / name, shipped):
        if candidate is not None and candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"{name}: config file not found (looked in {Path.cwd()} and {CONFIGS_DIR})")
