"""Benchmark suites: every method on every data set with the same budget, through ``dualcontrast train``.

A *suite* (:data:`SUITES`) says which methods, data sets and seeds; a *budget* (:data:`BUDGETS`)
says how long each run trains and on how much data. :func:`plan_suite` expands the two into
:class:`PlannedRun` s, each with the exact ``dualcontrast train`` command line it runs, and
:func:`run_suite` trains them one by one into ordinary run directories::

    WORKDIR/<dataset>/<method>/seed<k>/     config.yaml, checkpoints/, metrics.json, figures/ ...
    WORKDIR/<dataset>/<method>/seed<k>/benchmark.json   wall time, device, status of the run

The suite is resumable: a run whose ``metrics.json`` exists is not trained again (unless
``force``), an interrupted run with a checkpoint continues from it (``train --resume``), so an
hour-long suite can be stopped and continued. A run whose saved config differs from the one the
plan would make (another budget in the same work directory, edited presets) is refused rather
than silently mixed into the table.

The report (table and figure) is written by :mod:`dualcontrast.evaluation.benchmark_report`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import shlex
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import ConfigError, RunDirError
from ..training.runtime import cpu_model
from ..workflow import ConfigSources

log = logging.getLogger(__name__)

SIDECAR = "benchmark.json"  # written into each run directory next to metrics.json


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


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlannedRun:
    """One cell of the suite. ``argv`` is the ``dualcontrast`` command line (None if unsupported),
    ``sources`` the same settings as :func:`dualcontrast.workflow.train_run` takes them."""

    dataset: str
    method: str
    seed: int
    path: Path
    argv: tuple[str, ...] | None
    unsupported: str | None = None
    sources: ConfigSources | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.method}/seed{self.seed}"

    @property
    def done(self) -> bool:
        return (self.path / "metrics.json").exists()


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


def _yaml_value(value: Any) -> str:
    """``value`` as text that ``--set`` parses back to it (plain where YAML reads it unchanged)."""
    if isinstance(value, str) and value and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, separators=(",", ":"))  # JSON is YAML


def set_overrides(layer: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"train": {"epochs": 3}}`` -> ``["train.epochs=3"]``: the layer as ``--set`` arguments."""
    out = []
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += set_overrides(value, f"{path}.")
        else:
            out.append(f"{path}={_yaml_value(value)}")
    return out


def find_config_file(name: str) -> Path:
    """A config file of the repository (``configs/...``): from the current folder, else the checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / name).is_file():
            return (base / name).resolve()
    raise ConfigError(f"{name}: config file not found (run the benchmark from the repository root)")


def _parse_list(text: str | Sequence[str] | None, allowed: Iterable[str], what: str) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    items = [s for s in items if s]
    unknown = [s for s in items if s not in allowed]
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return items


def plan_suite(
    suite: Suite,
    budget: Budget,
    workdir: str | Path,
    *,
    methods: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: str | None = None,
    mnist: str | None = None,
    overrides: Sequence[str] = (),
) -> list[PlannedRun]:
    """Every (dataset, seed, method) cell of ``suite`` selected by the filters, seed-major.

    Seed-major order means an interrupted suite already has a complete one-seed table.
    ``mnist`` replaces the MNIST file of ``configs/mnist.yaml``; ``overrides`` are extra
    ``--set`` settings of every run (recorded in each run's config).
    """
    picked_methods = _parse_list(methods, suite.methods, "method")
    picked_data = _parse_list(datasets, suite.datasets, "data set")
    chosen_methods = [m for m in suite.methods if picked_methods is None or m in picked_methods]
    chosen_data = [d for d in suite.datasets if picked_data is None or d in picked_data]
    chosen_seeds = list(seeds) if seeds is not None else list(suite.seeds)
    if extra := [s for s in chosen_seeds if s not in suite.seeds]:
        # The table reports the suite's seeds only: other seeds would train for nothing.
        raise ConfigError(f"seeds {extra} are not in suite {suite.name} (seeds {list(suite.seeds)})")
    root = Path(workdir)
    runs = []
    for seed in chosen_seeds:
        for name in chosen_data:
            spec = DATASETS[name]
            for method in chosen_methods:
                path = root / name / method / f"seed{seed}"
                reason = suite.unsupported.get((method, name))
                argv = sources = None
                if reason is None:
                    argv, sources = _train_plan(spec, budget, method, seed, path, device, mnist, overrides)
                runs.append(PlannedRun(name, method, seed, path, argv, reason, sources))
    return runs


def _train_plan(
    spec: DatasetSpec,
    budget: Budget,
    method: str,
    seed: int,
    path: Path,
    device: str | None,
    mnist: str | None,
    overrides: Sequence[str],
) -> tuple[tuple[str, ...], ConfigSources]:
    """The run's ``dualcontrast train`` command line and the same settings as config sources."""
    layer = merge_layers(
        spec.layer,
        budget.common,
        budget.datasets.get(spec.name, {}),
        budget.methods.get(spec.name, {}).get(method, {}),
    )
    epochs = layer.get("train", {}).get("epochs")
    if epochs is not None and epochs < MIN_EPOCHS.get(method, 1):
        layer = merge_layers(layer, {"train": {"epochs": MIN_EPOCHS[method]}})
    if mnist is not None and spec.name == "mnist":
        layer = merge_layers(layer, {"data": {"path": str(mnist)}})
    config_files = tuple(str(find_config_file(name)) for name in spec.config_files)
    sets = (*set_overrides(layer), *overrides)
    settings: dict[str, Any] = {"model": {"name": method}, "train": {"seed": seed}}
    argv = ["train", "--model", method, "--seed", str(seed), "-o", str(path)]
    for name in config_files:
        argv += ["--config", name]
    if device:
        argv += ["--device", device]
        settings["train"]["device"] = device
    for item in sets:
        argv += ["--set", item]
    return tuple(argv), ConfigSources(None, config_files, settings, sets)


# --------------------------------------------------------------------------- configs of runs

# Settings that may differ between a saved run and the plan without changing its results.
_IGNORED = ("train.device", "train.progress", "name")


def planned_config(run: PlannedRun) -> dict[str, Any]:
    """The resolved config ``dualcontrast train`` would save for ``run`` (as a dict)."""
    from ..workflow import absolute_data_paths

    if run.sources is None:
        raise ValueError(f"{run.key}: unsupported ({run.unsupported}); no config")
    cfg = run.sources.resolve()
    absolute_data_paths(cfg)  # as train_run stores them
    return cfg.to_dict()


def config_differences(saved: dict[str, Any], planned: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (``_IGNORED`` keys excepted)."""
    diffs = []
    for key in sorted(set(saved) | set(planned)):
        path = f"{prefix}{key}"
        if path in _IGNORED:
            continue
        a, b = saved.get(key), planned.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, f"{path}.")
        elif a != b:
            diffs.append(f"{path}: run has {a!r}, plan has {b!r}")
    return diffs


def preflight(runs: Sequence[PlannedRun]) -> None:
    """Resolve the config of one run per (data set, method) and check its data file exists.

    Bad settings or a missing data file (e.g. MNIST outside the development workspace) fail
    here, before an hour of training, rather than once per run.
    """
    seen = set()
    for run in runs:
        if run.argv is None or (run.dataset, run.method) in seen:
            continue
        seen.add((run.dataset, run.method))
        cfg = planned_config(run)
        path = cfg["data"]["path"]
        if path is not None and not Path(path).exists():
            hint = (
                " (pass --mnist PATH, or leave MNIST out with --datasets)" if run.dataset == "mnist" else ""
            )
            raise ConfigError(f"{run.dataset}: data file {path} not found{hint}")


def check_existing(run: PlannedRun) -> list[str]:
    """Differences between an existing run's config and the plan ([] if none or no run yet)."""
    from ..config import build_config, load_yaml

    config = run.path / "config.yaml"
    if run.argv is None or not config.exists():
        return []
    from ..workflow import absolute_data_paths

    saved = build_config(load_yaml(config))
    absolute_data_paths(saved)  # runs saved before data paths were stored absolute
    return config_differences(saved.to_dict(), planned_config(run))


# --------------------------------------------------------------------------- running


def device_description(device: torch.device) -> str:
    """A readable name of the device runs train on (GPU model, or CPU model and threads)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores; torch threads: {torch.get_num_threads()})"


def read_sidecar(path: Path) -> dict[str, Any]:
    """The ``benchmark.json`` of a run directory ({} if absent or unreadable)."""
    try:
        return json.loads((path / SIDECAR).read_text())
    except (OSError, ValueError):
        return {}


def _write_sidecar(path: Path, doc: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (SIDECAR + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path / SIDECAR)


def _resolved_device(argv: Sequence[str]) -> torch.device:
    from ..training import resolve_device

    name = argv[argv.index("--device") + 1] if "--device" in argv else "auto"
    return resolve_device(name)


def existing_dir_flags(path: Path, *, force: bool = False) -> list[str]:
    """``train`` flags for what is already in a run directory.

    Nothing there: none. A config and a checkpoint (an interrupted run): ``--resume``, unless
    ``force``. Anything else (a failed attempt's leftovers, or ``force``): ``--overwrite``.
    """
    if not path.is_dir() or not any(path.iterdir()):
        return []
    resumable = (path / "config.yaml").exists() and (path / "checkpoints" / "last.pt").exists()
    return ["--resume" if resumable and not force else "--overwrite"]


def train_planned(run: PlannedRun, *, force: bool = False, budget: str = "") -> dict[str, Any]:
    """Train and evaluate one run as ``dualcontrast train`` does (:func:`~dualcontrast.workflow.train_run`);
    returns its sidecar.

    An existing run directory is continued from its checkpoint (``--resume``) or, without one
    or with ``force``, replaced (``--overwrite``, which removes only the files a run writes).
    A failure is recorded in the sidecar (status ``failed``, the error) and not raised, so the
    rest of the suite goes on; KeyboardInterrupt stops everything.
    """
    from ..config import load_yaml
    from ..workflow import train_run

    if run.argv is None or run.sources is None:
        raise ValueError(f"{run.key}: unsupported ({run.unsupported}); nothing to train")
    flags = existing_dir_flags(run.path, force=force)
    mode = flags[0].removeprefix("--") if flags else None
    argv = [*run.argv, *flags]
    device = _resolved_device(argv)
    doc: dict[str, Any] = {
        "run": run.key,
        "budget": budget,
        "device": str(device),
        "device_name": device_description(device),
        "command": shlex.join(["dualcontrast", *argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        base = load_yaml(run.path / "config.yaml") if mode == "resume" else None
        cfg = run.sources.resolve(base)
        train_run(cfg, run.path, resume=mode == "resume", overwrite=mode == "overwrite",
                  command=["dualcontrast", *argv])  # fmt: skip
        doc["status"] = "done" if run.done else "failed"
        if not run.done:
            doc["error"] = "training finished without metrics.json"
    except Exception as e:  # one failed method must not stop an hour-long suite
        doc["status"] = "failed"
        doc["error"] = f"{type(e).__name__}: {e}"
        log.error("%s failed: %s", run.key, doc["error"])
        log.debug("%s", traceback.format_exc())
    doc["wall_s"] = round(time.perf_counter() - t0, 2)
    doc["cpu_s"] = round(time.process_time() - cpu0, 2)  # all threads; vs wall_s shows contention
    _write_sidecar(run.path, doc)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return doc


def _eta(todo: list[PlannedRun], seconds: dict[str, list[float]]) -> float:
    """Seconds left: each remaining run at the mean time of finished runs of its data set."""
    every = [s for values in seconds.values() for s in values]
    if not every:
        return float("nan")
    fallback = sum(every) / len(every)
    return sum(
        (sum(seconds[r.dataset]) / len(seconds[r.dataset])) if seconds.get(r.dataset) else fallback
        for r in todo
    )


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing measured yet
        return "?"
    seconds = round(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_suite(
    runs: Sequence[PlannedRun], *, force: bool = False, budget: str = "", progress: bool = True
) -> dict[str, int]:
    """Train every planned run that has no ``metrics.json`` yet (all of them with ``force``).

    Before training anything, checks that no existing run was made with other settings
    (RunDirError naming them). Returns counts: ``trained``, ``failed``, ``skipped`` (already
    done), ``unsupported``.
    """
    todo = [r for r in runs if r.argv is not None and (force or not r.done)]
    if not force:
        stale = {r.key: d for r in runs if (d := check_existing(r))}
        if stale:
            lines = "\n".join(f"  {k}: {'; '.join(d)}" for k, d in stale.items())
            raise RunDirError(
                f"{len(stale)} existing run(s) were made with other settings than this plan:\n{lines}\n"
                "pass --force to retrain them, or choose another --workdir"
            )
    counts = {
        "trained": 0,
        "failed": 0,
        "skipped": sum(r.argv is not None and r.done for r in runs) if not force else 0,
        "unsupported": sum(r.argv is None for r in runs),
    }
    if counts["skipped"]:
        log.warning("%d run(s) already have metrics.json and are kept (--force retrains)", counts["skipped"])
    with logging_redirect_tqdm():  # log lines print above the bar instead of through it
        _train_all(todo, counts, force=force, budget=budget, progress=progress)
    return counts


def _train_all(
    todo: list[PlannedRun], counts: dict[str, int], *, force: bool, budget: str, progress: bool
) -> None:
    """Train ``todo`` in order, counting outcomes into ``counts``; one log line per run with the ETA."""
    seconds: dict[str, list[float]] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="benchmark", unit="run", disable=not progress)
    for i, run in enumerate(todo):
        bar.set_postfix_str(run.key)
        doc = train_planned(run, force=force, budget=budget)
        counts["trained" if doc["status"] == "done" else "failed"] += 1
        seconds.setdefault(run.dataset, []).append(doc["wall_s"])
        bar.update(1)
        log.warning(
            "[%d/%d] %s %s in %.0f s; elapsed %s, ETA %s",
            i + 1,
            len(todo),
            run.key,
            doc["status"],
            doc["wall_s"],
            _clock(time.perf_counter() - start),
            _clock(_eta(todo[i + 1 :], seconds)),
        )
    bar.close()
