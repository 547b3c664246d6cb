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
from .rundir import atomic_write_text

#: the ready-made config files, shipped as package data (``configs/`` at the repository root links here)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def key(default: Any = None, help: str = "", *, factory: Any = None, low: float | None = None,
        high: float | None = None, low_open: bool = False, high_open: bool = False) -> Any:
    """A config field with its one-line help and allowed range (``[low, high]``; ``*_open`` excludes the end).

    The metadata drives both ``build_config``'s checks and ``dualcontrast config``'s listing.
    """
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = key("shapes2d", "built-in data set used when no path is given")
    path: str | None = key(None, "data file or folder (see dualcontrast.data.loading)")
    labels: str | None = key(None, "optional content labels file (.npy/.txt/.csv) for unlabeled stacks")
    test_fraction: float = key(0.1, "test share for data without its own split", low=0, high=1,
                               low_open=True, high_open=True)
    val_fraction: float = key(0.1, "share of the training set held out as validation (best.pt, eval_log.csv); "
                              "0: none", low=0, high=1, high_open=True)
    split_seed: int = key(0, "seed of the random train/val/test splits and of max_samples", low=0)
    normalize: str = key("none", "none | per_sample")
    max_samples: int | None = key(None, "random training subset (quick runs); null: all", low=1)
    params: dict[str, Any] = key(help="built-in data set parameters", factory=dict)  # noqa: RUF009 (key() returns a field)
    project: bool = key(False, "sum volumes along z into 2D projections with the simulation's CTF (Hydra's input)")


@dataclass
class ModelConfig:
    name: str = key("dualcontrast", "method (dualcontrast or a baseline, see dualcontrast train --help)")
    content_dim: int = key(10, "size of the content code c", low=1)
    transform_dim: int = key(10, "size of the transformation code z", low=1)
    arch: str = key("auto", "auto | mnist | linemod | subtomo (see dualcontrast.nn.presets)")
    decoder: str = key("mlp", "mlp (reference) | conv (conv-transpose)")
    output: str = key("auto", "auto (sigmoid for data in [0, 1], else linear) | sigmoid | linear")
    encoder_options: dict[str, Any] = key(help="extra encoder settings", factory=dict)  # noqa: RUF009 (key() returns a field)
    decoder_options: dict[str, Any] = key(help="extra decoder settings", factory=dict)  # noqa: RUF009 (key() returns a field)
    params: dict[str, Any] = key(help="method-specific settings (baselines)", factory=dict)  # noqa: RUF009 (key() returns a field)


@dataclass
class LossConfig:
    # "standard": correct Gaussian KL; "reference": the scripts' log-sigma KL (see METHOD.md).
    kl: str = key("standard", "standard (Gaussian KL) | reference (the scripts' log-sigma KL)")
    gamma_c: float = key(0.01, "KL weight of the content code", low=0)
    gamma_z: float = key(0.01, "KL weight of the transformation code", low=0)
    kl_normalization: str = key("pixels", "pixels (reference scale) | sample")
    w_rec: float = key(1.0, "reconstruction weight (the 3D reference script uses 3)", low=0)
    # Weights of the four contrastive terms; each term is a mean over the batch.
    w_c_pos: float = key(1.0, "weight of the content positive-pair term", low=0)
    w_c_neg: float = key(1.0, "weight of the content negative-pair term", low=0)
    w_z_pos: float = key(1.0, "weight of the transformation positive-pair term", low=0)
    w_z_neg: float = key(1.0, "weight of the transformation negative-pair term", low=0)
    # "per_dim" multiplies every cosine term by 1/d as the reference scripts do (sum / (B*d)).
    cosine_scale: str = key("mean", "mean | per_dim (every cosine term times 1/d, as the reference)")
    # Lets the encoder find content features by reconstruction before the pair terms act
    # (see benchmarks/results/subtomo_quality.md).
    contrastive_warmup: int = key(0, "epochs over which the cosine weights ramp from 0 (0: none)", low=0)
    vae_on_transformed: bool = key(True, "also apply the VAE loss to the transformed copies")
    # Meant to spare nearly equal transformations, whose z codes no smooth pose code can make
    # orthogonal. Measured: 0.5 keeps identity out of z but the decoder then stops reading z
    # (benchmarks/results/z_checks.md).
    z_neg_margin: float = key(0.0, "z-negative pairs with |cos| at or below this are not pushed "
                              "(0: every pair, as published)", low=0, high=1, high_open=True)
    # The prior draw is the paper's; it yields images like the data only when the codes follow
    # the prior, which a small gamma_z does not ask of them. Measured, "codes" does not take
    # identity out of z: the pair shares the identity z* came with (benchmarks/results/z_checks.md).
    z_pos_source: str = key("prior", "z* of the z-positive pairs: prior (a N(0, I) draw, as published) | "
                            "codes (the z mean of another sample in the batch, detached)")
    # Not in the paper: its objective lets c carry the pose (the cosine terms see directions
    # only), and then the decoder ignores z (benchmarks/results/z_use.md).
    w_swap: float = key(0.0, "weight of the swapped reconstruction: each view decoded from the other "
                        "view's c and its own z (0: off, as published)", low=0)
    # Not in the paper: two views of one particle share its conformation, so the swap above never
    # asks z for it; the nearest other particle by c is often the same identity in another state.
    # Measured on the built-in 2D data it does not move the state into z, and a third of the
    # neighbours are another identity (benchmarks/results/shapes2d_state_nnswap.md).
    swap_content: str = key("view", "whose c the swapped reconstruction decodes each view with: view (the "
                            "other view of the same sample) | neighbour (the other view of the batch's sample "
                            "nearest to it by |cos| of c)")
    # Not in the paper: none of its terms stops identity from filling z once the decoder reads z.
    # This one asks for no linear relation between the codes; measured on MNIST it lowered D(c|c)
    # more than D(c|z) (benchmarks/results/z_checks.md).
    w_decorr: float = key(0.0, "weight of the c-z decorrelation: mean squared correlation between every "
                          "content and transformation dimension over the batch, both views (0: off, as published)",
                          low=0)
    # Not in the paper: c_neg pushes every random pair apart, same-class pairs too (one in ten on
    # MNIST), and c_pos only ties views of one image. This pulls c towards the nearest other
    # sample's code (NNCLR-style), a term that gathers a class rather than separating images.
    # Measured on MNIST it lowers D(c|c) at every weight tried: a third of a batch's nearest
    # neighbours are another digit, and c loses directions (benchmarks/results/z_checks_neighbour.md).
    w_c_nn: float = key(0.0, "weight of the content neighbour term: c(view a) pulled towards the detached c "
                        "of the view b, among the batch's other samples, nearest to it by |cos| (0: off, "
                        "as published)", low=0)


@dataclass
class ViewsConfig:
    """How the two views of a contrastive pair are drawn (see dualcontrast.transforms.views)."""

    pairing: str = key("symmetric", "symmetric (T_a(x) vs T_b(x), finished alike) | paper (x vs T(x), as "
                       "published) | anchored (x prepared as for embedding vs T(x) finished)")
    mask_radius: float | None = key(0.95, "soft mask radius, fraction of half the box (null: no mask)",
                                    low=0, high=2, low_open=True)
    mask_edge: float = key(0.15, "width of the mask's raised-cosine edge, fraction of half the box", low=0, high=1)
    lowpass: float | None = key(0.5, "Gaussian low-pass, gain 1/2 at this fraction of Nyquist (null: none)",
                                low=0, low_open=True)
    renormalize: str = key("auto", "auto (unless intensities in [0, 1]) | on | off: zero mean, unit std in the mask")


@dataclass
class TrainConfig:
    epochs: int = key(20, "training epochs", low=1)
    batch_size: int = key(100, "samples per batch (>= 2: contrastive pairs need other samples)", low=2)
    lr: float = key(1e-4, "Adam learning rate", low=0, high=1, low_open=True)
    lr_step: int = key(50, "StepLR step size (epochs)", low=1)
    lr_gamma: float = key(0.1, "StepLR factor", low=0, high=1, low_open=True)
    # The paper's StepLR is tuned for 150-200 GPU epochs; the per-batch ones suit a CPU budget.
    schedule: str = key(
        "step",
        "step (StepLR by lr_step / lr_gamma, per epoch: the paper's) | cosine (linear warm-up, then "
        "cosine to ~0, per batch) | onecycle (one-cycle lr curve, per batch); see dualcontrast.training.schedule",
    )
    warmup_epochs: float | None = key(
        None, "rising phase of cosine / onecycle in epochs (fractions allowed); null: cosine none, "
        "onecycle 30% of train.epochs", low=0,
    )
    restarts: int = key(1, "independent trainings from seeds train.seed, train.seed + 1, ...; the run keeps the "
                        "one with the best validation score (train.select), like scikit-learn's n_init; each "
                        "costs a full training (see restart_epochs)", low=1)
    # Successive halving: on the built-in 2D data the best of six restarts after 16 of 60 epochs kept
    # D(c|c) >= 0.95 more often than four full restarts, at 58% of the training (shapes2d_restarts.md).
    restart_epochs: int | None = key(None, "with restarts > 1: train every restart this many epochs only, then "
                                     "continue the best on validation to train.epochs (null: every restart to the end)", low=1)
    step: str = key("fused", "fused | reference (the published per-step procedure)")
    seed: int = key(0, "seed of initialisation and batches", low=0)
    device: str = key("auto", "auto | cpu | cuda | cuda:N")
    amp: bool = key(False, "bf16 autocast on CUDA")
    compile: bool = key(False, "torch.compile the networks")
    resident: str = key("auto", "keep the training set on the device: auto | always | never")
    progress: bool = key(True, "show progress bars")
    eval_every: int = key(0, "all validation scores every N epochs into eval_log.csv (0: only the one "
                          "that picks best.pt, every epoch)", low=0)
    select: str = key("d_c_c", "validation score that picks best.pt (and the restart kept) where the data have "
                      "content labels: d_c_c (content kept in c) | d_c_c+sap_c (D(c|c) + SAP(c): content kept in "
                      "c and kept out of z) | d_c_c+sap_c+z_use (and the decoder reads z: a high SAP(c) from an "
                      "empty z does not count). Without labels, or with c_neg: the content-negative term on "
                      "validation (lower better; the whole validation loss for models without it). val_loss: the "
                      "whole validation loss, labels or not (benchmarks/results/restart_scores.md)")


@dataclass
class EvalConfig:
    batch_size: int = key(500, "samples per batch when embedding", low=1)
    max_fit_samples: int | None = key(20000, "cap on samples for the logistic regressions", low=2)
    projection: str = key("auto", "auto (umap if installed, else tsne) | umap | tsne | pca | none")
    plot_samples: int = key(2000, "points drawn in projection figures", low=1)
    standardize: bool = key(True, "D-scores on standardised codes (the *_raw scores are always on raw codes, "
                            "as the reference evaluator)")
    rotation_samples: int = key(1000, "test samples rotated by known angles for S(z) (0: no S(z))", low=0)
    figures: bool = key(True, "draw figures")
    seed: int = key(0, "seed of subsampling and projections", low=0)
    cluster_method: str = key("spectral", "clustering of the content codes (ari_c, analyze): spectral "
                              "(k-nearest-neighbour graph, k by eigengap; benchmarks/results/cluster_space.md) "
                              "| gmm (k by BIC, the paper's)")
    cluster_space: str = key("auto", "space the content codes are clustered in: auto (l2 for spectral, pca "
                             "for gmm) | pca (first cluster_dims principal components) | raw (the paper's) | "
                             "l2 (unit-norm codes) | l2-pca")
    cluster_dims: int = key(10, "principal components kept by the pca clustering spaces", low=1)
    cluster_neighbors: int = key(15, "neighbours per code in the spectral clustering's graph", low=1)


# The clustering methods and spaces of evaluation.clustering (config stays free of numpy and torch).
CLUSTER_METHODS = ("spectral", "gmm")
CLUSTER_SPACES = ("auto", "raw", "l2", "pca", "l2-pca")
# train.select: the validation scores that may pick best.pt (names as in eval_log.csv).
SELECTION_SCORES = ("d_c_c", "d_c_c+sap_c", "d_c_c+sap_c+z_use", "c_neg", "val_loss")


@dataclass
class Config:
    name: str | None = key(None, "run name recorded in the config")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    transform: dict[str, Any] = key(  # noqa: RUF009 (key() returns a field)
        help="pair transformation: name (see dualcontrast.transforms) and its parameters",
        factory=lambda: {"name": "rotation", "max_angle": 90.0},
    )
    views: ViewsConfig = field(default_factory=ViewsConfig)
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
    if data.pop("meta", None) is not None:  # run-directory configs carry provenance; it is not a setting
        if "views" not in data:
            # A run directory written before the views section existed trained on the paper's pairing.
            data["views"] = {"pairing": "paper"}
        section = data.get("data")
        if isinstance(section, dict) and "val_fraction" not in section:
            # A run saved before validation splits existed trained on the whole training set.
            section["val_fraction"] = 0.0
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
    """Defaults updated by each layer in turn (later wins). Unknown keys and values out of range
    raise ConfigError."""
    cfg = Config()
    for layer in layers:
        if layer:
            _merge(cfg, layer, "")
    for path, f, value in iter_keys(cfg):
        _check_range(path, f, value)
    _check_transform(cfg.transform)
    _check_views(cfg.views)
    check_loss(cfg.loss)
    if cfg.train.select not in SELECTION_SCORES:
        raise ConfigError(f"train.select {cfg.train.select!r}: use one of {', '.join(SELECTION_SCORES)}")
    if cfg.eval.cluster_method not in CLUSTER_METHODS:
        raise ConfigError(f"eval.cluster_method {cfg.eval.cluster_method!r}: use one of {', '.join(CLUSTER_METHODS)}")
    if cfg.eval.cluster_space not in CLUSTER_SPACES:
        raise ConfigError(f"eval.cluster_space {cfg.eval.cluster_space!r}: use one of {', '.join(CLUSTER_SPACES)}")
    return cfg


def iter_keys(obj: Any = None, where: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """Every leaf key of a config as ``(dotted path, field, value)``, in declaration order."""
    obj = Config() if obj is None else obj
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            out += iter_keys(value, path)
        else:
            out.append((path, f, value))
    return out


def describe_range(f: dataclasses.Field) -> str:
    """``"> 0"``, ``">= 1"``, ``"in (0, 1)"`` ... or ``""`` for a field without a range."""
    low, high = f.metadata.get("low"), f.metadata.get("high")
    lo = "(" if f.metadata.get("low_open") else "["
    hi = ")" if f.metadata.get("high_open") else "]"
    if low is not None and high is not None:
        return f"in {lo}{low:g}, {high:g}{hi}"
    if low is not None:
        return f"{'>' if lo == '(' else '>='} {low:g}"
    if high is not None:
        return f"{'<' if hi == ')' else '<='} {high:g}"
    return ""


def _check_range(path: str, f: dataclasses.Field, value: Any) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = f.metadata.get("low"), f.metadata.get("high")
    too_low = low is not None and (value <= low if f.metadata.get("low_open") else value < low)
    too_high = high is not None and (value >= high if f.metadata.get("high_open") else value > high)
    if too_low or too_high:
        raise ConfigError(f"{path} must be {describe_range(f)}, got {value!r}")


Z_POS_SOURCES = ("prior", "codes")
SWAP_CONTENTS = ("view", "neighbour")


def check_loss(lc: LossConfig) -> None:
    """ConfigError for a loss setting no model knows. Checked when the config is built, so a bad
    value is reported before any data are read, and by DualContrast for a config built otherwise."""
    if lc.kl not in ("standard", "reference"):
        raise ConfigError(f"loss.kl must be 'standard' or 'reference', got {lc.kl!r}")
    if lc.kl_normalization not in ("pixels", "sample"):
        raise ConfigError(f"loss.kl_normalization must be 'pixels' or 'sample', got {lc.kl_normalization!r}")
    if lc.cosine_scale not in ("mean", "per_dim"):
        raise ConfigError(f"loss.cosine_scale must be 'mean' or 'per_dim', got {lc.cosine_scale!r}")
    if lc.z_pos_source not in Z_POS_SOURCES:
        raise ConfigError(f"loss.z_pos_source must be one of {', '.join(Z_POS_SOURCES)}, got {lc.z_pos_source!r}")
    if lc.swap_content not in SWAP_CONTENTS:
        raise ConfigError(f"loss.swap_content must be one of {', '.join(SWAP_CONTENTS)}, got {lc.swap_content!r}")
    if lc.contrastive_warmup < 0:
        raise ConfigError(f"loss.contrastive_warmup must be >= 0 epochs, got {lc.contrastive_warmup}")


def _check_views(views: ViewsConfig) -> None:
    from .transforms.views import ViewSettings

    ViewSettings(**vars(views))  # raises a ConfigError naming the bad choice


def _check_transform(spec: dict[str, Any]) -> None:
    """Type-check ``transform.*`` against the transform's constructor: a parameter whose default is
    a number takes a number, a flag takes true/false, a text takes a string."""
    import inspect

    from .transforms import TRANSFORMS

    name = spec.get("name")
    if name is None:
        raise ConfigError("transform.name is missing")
    params = inspect.signature(TRANSFORMS.get(name)).parameters  # an unknown name is a ConfigError
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in params:
            if takes_any:
                continue
            known = ", ".join(k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
            raise ConfigError(f"bad parameters for transform {name!r}: transform.{key} is not one of {known}")
        default = params[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            want = "true or false"
        elif isinstance(default, (int, float)):
            if isinstance(value, str):
                with contextlib.suppress(ValueError):  # YAML 1.1 reads "5e-4" as a string
                    value = spec[key] = float(value)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            want = "a number"
        elif isinstance(default, str):
            ok = isinstance(value, str)
            want = "a string"
        else:
            continue
        if not ok:
            raise ConfigError(f"transform.{key} must be {want}, got {value!r}")


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
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def read_meta(path: str | Path) -> dict[str, Any]:
    """The provenance block of a saved run config ({} if it has none)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    meta = data.get("meta") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else {}


def load_config(path: str | Path) -> Config:
    return build_config(load_yaml(path))
