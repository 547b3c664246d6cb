"""Typed run configuration <-> YAML, with strict keys and ``section.key=value`` overrides.

Resolution order: defaults < config file (``--config``) < command-line flags < ``--set``
overrides. The resolved config is saved in the run directory together with the package
version, the command line and the time, so a run can always be re-made and read back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .errors import ConfigError


@dataclass
class DataConfig:
    name: str = "shapes2d"  # built-in data set used when no path is given
    path: str | None = None  # file or folder; see dualcontrast.data.loading
    labels: str | None = None  # optional content labels file for unlabeled stacks
    test_fraction: float = 0.1  # for data without its own split
    split_seed: int = 0
    normalize: str = "none"  # none | per_sample
    max_samples: int | None = None  # random training subset (quick runs)
    params: dict[str, Any] = field(default_factory=dict)  # built-in data set parameters


@dataclass
class ModelConfig:
    name: str = "dualcontrast"
    content_dim: int = 10
    transform_dim: int = 10
    arch: str = "auto"  # auto | mnist | linemod | subtomo (see dualcontrast.nn.presets)
    decoder: str = "mlp"  # mlp (reference) | conv (conv-transpose)
    output: str = "auto"  # auto (sigmoid for data in [0, 1], else linear) | sigmoid | linear
    encoder_options: dict[str, Any] = field(default_factory=dict)
    decoder_options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # method-specific settings (baselines)


@dataclass
class LossConfig:
    # "standard": correct Gaussian KL; "reference": the scripts' log-sigma KL (see METHOD.md).
    kl: str = "standard"
    gamma_c: float = 0.01
    gamma_z: float = 0.01
    kl_normalization: str = "pixels"  # pixels (reference scale) | sample
    w_rec: float = 1.0  # the 3D reference script uses 3
    # Weights of the four contrastive terms; each term is a mean over the batch.
    w_c_pos: float = 1.0
    w_c_neg: float = 1.0
    w_z_pos: float = 1.0
    w_z_neg: float = 1.0
    # "per_dim" multiplies every cosine term by 1/d as the reference scripts do (sum / (B*d)).
    cosine_scale: str = "mean"
    # Epochs over which the four cosine weights ramp linearly from 0 to their full value
    # (0: full from the first step). Lets the encoder find content features by reconstruction
    # before the pair terms act (see benchmarks/results/subtomo_quality.md).
    contrastive_warmup: int = 0
    vae_on_transformed: bool = True


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-4
    lr_step: int = 50  # StepLR step size (epochs)
    lr_gamma: float = 0.1
    step: str = "fused"  # fused | reference (the published per-step procedure)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bf16 autocast on CUDA
    compile: bool = False  # torch.compile the networks
    resident: str = "auto"  # keep the training set on the device: auto | always | never
    progress: bool = True
    eval_every: int = 0  # compute metrics every N epochs into eval_log.csv (0 = only at the end)


@dataclass
class EvalConfig:
    batch_size: int = 500
    max_fit_samples: int | None = 20000  # cap on samples for the logistic regressions
    projection: str = "auto"  # auto (umap if installed, else tsne) | umap | tsne | pca | none
    plot_samples: int = 2000
    figures: bool = True
    seed: int = 0


@dataclass
class Config:
    name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    transform: dict[str, Any] = field(default_factory=lambda: {"name": "rotation", "max_angle": 90.0})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FREEFORM = {"params", "encoder_options", "decoder_options", "transform"}


def _merge(obj: Any, values: dict[str, Any], where: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"unknown config key {path!r}{extra}; known keys: {', '.join(known)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, path)
        elif key in _FREEFORM:
            if not isinstance(value, dict):
                raise ConfigError(f"{path} must be a mapping, got {value!r}")
            # Update in place so "transform.max_angle=45" keeps the name; a new name starts afresh.
            merged = {} if value.get("name", current.get("name")) != current.get("name") else dict(current)
            merged.update(value)
            setattr(obj, key, merged)
        else:
            setattr(obj, key, _coerce(value, current, known[key], path))


def _coerce(value: Any, current: Any, f: dataclasses.Field, path: str) -> Any:
    """Check a scalar against the field's declared type (from the annotation string)."""
    ann = str(f.type)
    if value is None:
        if "None" not in ann:
            raise ConfigError(f"{path} cannot be null")
        return None
    if ann.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if ann.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if ann.startswith("float"):
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept what any user means by it.
            with contextlib.suppress(ValueError):  # not a number: the check below says so
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if ann.startswith("str"):
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return str(value)
    return value


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must hold a mapping at the top level")
    data.pop("meta", None)  # run-directory configs carry provenance; it is not a setting
    return data


def parse_override(text: str) -> dict[str, Any]:
    """``"train.epochs=5"`` -> ``{"train": {"epochs": 5}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot parse value: {e}") from None
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def build_config(*layers: dict[str, Any]) -> Config:
    """Defaults updated by each layer in turn (later wins). Unknown keys raise ConfigError."""
    cfg = Config()
    for layer in layers:
        if layer:
            _merge(cfg, layer, "")
    return cfg


def config_from_dict(values: dict[str, Any]) -> Config:
    return build_config(values)


def save_config(
    cfg: Config, path: str | Path, command: list[str] | None = None, meta: dict[str, Any] | None = None
) -> None:
    """Write the resolved config plus provenance (version, command line, time).

    ``meta`` entries replace the fresh provenance: a resumed run keeps its original command
    and creation time this way. The file is replaced atomically (it is what makes a run).
    """
    data = cfg.to_dict()
    data["meta"] = {
        "dualcontrast_version": __version__,
        "command": " ".join(command if command is not None else sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        **(meta or {}),
    }
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(p)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The provenance block of a saved run config ({} if it has none)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    meta = data.get("meta") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else {}


def load_config(path: str | Path) -> Config:
    return build_config(load_yaml(path))
