"""Pieces shared by the command modules: config flags and logging."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..config import Config
from ..workflow import resolve_config as resolve


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", action="append", default=[],
                   help="config file (see configs/ and `dualcontrast config`); repeat to layer files; flags override them (default: none)")
    add_set_arg(p, "override any config key, e.g. --set loss.gamma_c=0.02")


def add_set_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``; ``what`` starts its help text."""
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help=f"{what} (repeatable; keys: `dualcontrast config`; default: none)")  # fmt: skip


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")


def add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", choices=["best", "last"],
        help="checkpoints/best.pt (the best validation epoch) or last.pt (default: best.pt where the run has one)",
    )  # fmt: skip


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
    """defaults < ``base`` < --data < each --config in order < flags < --set."""
    return resolve(
        data=getattr(args, "data", None),
        config_files=getattr(args, "config", []),
        settings=flag_layer(args, flags),
        overrides=getattr(args, "overrides", []),
        base=base,
    )


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
