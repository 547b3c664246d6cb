"""Pieces shared by the command modules: config resolution, data, runs, logging."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from ..config import Config, build_config, load_config, load_yaml, parse_override
from ..errors import ConfigError
from ..training.rundir import RunDir


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", action="append", default=[],
                   help="config file (see configs/ and `dualcontrast config`); repeat to layer files; flags override them (default: none)")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override any config key, e.g. --set loss.gamma_c=0.02 (repeatable; keys: `dualcontrast config`; default: none)",
    )


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")


def flag_layer(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    """Config layer from command-line flags: ``{"epochs": "train.epochs", ...}``."""
    layer: dict[str, Any] = {}
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        node = layer
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return layer


def resolve_config(
    args: argparse.Namespace, flags: dict[str, str], base: dict[str, Any] | None = None
) -> Config:
    """defaults < ``base`` < each --config in order < flags < --set."""
    layers: list[dict[str, Any]] = [base or {}]
    layers += [load_yaml(path) for path in getattr(args, "config", [])]
    layers.append(flag_layer(args, flags))
    layers += [parse_override(o) for o in getattr(args, "overrides", [])]
    return build_config(*layers)


def data_layer(spec: str | None) -> dict[str, Any]:
    """``--data`` accepts a path or a built-in data set name."""
    if spec is None:
        return {}
    from ..data import BUILTIN_DATASETS

    if not Path(spec).exists() and spec in BUILTIN_DATASETS:
        return {"data": {"name": spec, "path": None}}
    if not Path(spec).exists():
        raise ConfigError(
            f"--data {spec!r}: no such file or folder, and not a built-in data set "
            f"({', '.join(BUILTIN_DATASETS.names())})"
        )
    return {"data": {"path": spec}}


def load_splits(cfg: Config):
    from ..data import load_data

    d = cfg.data
    return load_data(
        d.path,
        name=d.name,
        labels=d.labels,
        test_fraction=d.test_fraction,
        split_seed=d.split_seed,
        normalize=d.normalize,
        max_samples=d.max_samples,
        params=d.params,
    )


def open_run(path: str) -> tuple[RunDir, Config]:
    run = RunDir.open(path)
    return run, load_config(run.config)


def default_run_name(cfg: Config) -> Path:
    data = Path(cfg.data.path).stem if cfg.data.path else cfg.data.name
    return Path("runs") / f"{data}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
