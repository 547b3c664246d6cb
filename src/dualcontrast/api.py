"""The Python API, for notebooks and scripts that never touch the command line.

- :func:`load_run` opens a run directory (finished or interrupted) as a :class:`Run`: its
  config and metrics, and its model to embed data, decode codes and make transfer grids;
- :class:`DualContrast`, a scikit-learn style estimator (``fit(X)``, ``transform(X) -> (c, z)``)
  that trains in a run directory through the library trainer, so every CLI command works on
  the run afterwards.

Data may be an array in any layout a data file may hold (``(N, H, W)``, ``(N, H, W, C)``,
``(N, C, H, W)``, cubic ``(N, D, D, D)`` volumes; uint8 or float), a
:class:`~dualcontrast.data.Dataset`, or a path ``--data`` accepts (``.npy``, ``.npz``, ``.mrc``...).
A file holding its own train / test split is read as train rows followed by test rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .config import Config, build_config, load_config, load_yaml, save_config
from .data import CONTENT, Dataset, DataSplits, carve_validation, check_finite, load_path, split_dataset
from .errors import ConfigError, DataError
from .evaluation import embed as embed_codes
from .evaluation.run import validation_scorer
from .models import DisentanglementModel, load_trained_model
from .rundir import RunDir
from .training import Trainer, resolve_device
from .workflow import evaluation_model, load_splits, record_resolved, write_evaluation

__all__ = ["DualContrast", "Run", "load_run"]

log = logging.getLogger(__name__)


def load_run(path: str | Path, *, device: str = "auto", checkpoint: str = "auto") -> Run:
    """A run directory written by ``dualcontrast train`` or :meth:`DualContrast.fit`;
    ``checkpoint``: ``auto`` (best.pt where the run has one, else last.pt), ``best`` or ``last``."""
    return Run(path, device=device, checkpoint=checkpoint)


def _array_dataset(x: Any, where: str) -> Dataset:
    """An in-memory array as a checked dataset; ``where`` names the argument in messages."""
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(where, f"cannot be read as an array: {e}") from None
    data = Dataset(x=raw, source=where)
    check_finite(np.asarray(data.x), where)  # in memory: no copy
    return data


def _datasets(data: Any, where: str) -> list[Dataset]:
    """``data`` as datasets whose rows, in order, are the rows returned."""
    if isinstance(data, (str, Path)):
        data = load_path(data)
    if isinstance(data, DataSplits):
        return [d for _, d in data.parts()]
    if isinstance(data, Dataset):
        return [data]
    return [_array_dataset(data, where)]


class Run:
    """A trained run opened from Python (see :func:`load_run`).

    Attributes:
        root: the run directory.
        config: its resolved :class:`~dualcontrast.config.Config`.
        device: where the model runs.
        checkpoint: which checkpoint :attr:`model` is read from (``auto``: best.pt where the
            run has one, else last.pt; ``best``; ``last``).
    """

    def __init__(self, path: str | Path, *, device: str = "auto", checkpoint: str = "auto"):
        self._dir = RunDir.open(path)
        self.root = self._dir.root
        self.config: Config = load_config(self._dir.config)
        self.device = resolve_device(device)
        self.checkpoint = checkpoint
        self._model: DisentanglementModel | None = None
        self._sample_shape: tuple[int, ...] | None = None
        self._dims: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r}, model={self.config.model.name!r})"

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The contents of metrics.json (scores under ``"scores"``), or None before evaluation."""
        if not self._dir.metrics.exists():
            return None
        return json.loads(self._dir.metrics.read_text())

    @property
    def model(self) -> DisentanglementModel:
        """The model of the chosen checkpoint (see ``checkpoint``), in eval mode (read on first use)."""
        return self._loaded()[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` or ``(C, D, H, W)`` of the samples the model was trained on."""
        return self._loaded()[1]

    def _loaded(self) -> tuple[DisentanglementModel, tuple[int, ...]]:
        if self._model is None or self._sample_shape is None:
            model, ckpt = load_trained_model(self._dir, self.config, self.device, self.checkpoint)
            self._model, self._sample_shape = model, tuple(ckpt["meta"]["sample_shape"])
        return self._model, self._sample_shape

    def embed(
        self, data: Any, *, logvar: bool = False, batch_size: int | None = None
    ) -> tuple[np.ndarray | None, ...]:
        """``(c, z)`` posterior means ``(N, dc), (N, dz)`` of ``data``, normalised as in training.

        With ``logvar=True``: ``(c, z, c_logvar, z_logvar)``. A code the method lacks is None.
        """
        keys = ("c_mu", "z_mu", "c_logvar", "z_logvar")[: 4 if logvar else 2]
        parts = []
        for d in _datasets(data, "data"):
            if d.sample_shape != self.sample_shape:
                raise DataError(
                    d.source,
                    f"samples are shaped {d.sample_shape} but the run's model was trained on "
                    f"{self.sample_shape}",
                )
            d = dataclasses.replace(d, normalize=self.config.data.normalize)
            parts.append(
                embed_codes(
                    self.model,
                    d,
                    batch_size=batch_size or self.config.eval.batch_size,
                    device=self.device,
                    progress=False,
                )
            )
        return tuple(np.concatenate([p[k] for p in parts]) if k in parts[0] else None for k in keys)

    def decode(self, c: Any, z: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Images ``(N, C, H, W)`` (volumes ``(N, C, D, H, W)``) decoded from codes ``(N, dc), (N, dz)``."""
        c_arr, z_arr = np.asarray(c, dtype=np.float32), np.asarray(z, dtype=np.float32)
        dc, dz = self._code_dims()
        for name, arr, dim in (("c", c_arr, dc), ("z", z_arr, dz)):
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise DataError(None, f"{name} must be shaped (N, {dim}) for this run, got {arr.shape}")
        if len(c_arr) != len(z_arr):
            raise DataError(None, f"c holds {len(c_arr)} codes but z holds {len(z_arr)}")
        model = self.model
        step = batch_size or self.config.eval.batch_size
        out = []
        with torch.no_grad():
            for start in range(0, len(c_arr), step):
                cb = torch.from_numpy(c_arr[start : start + step]).to(self.device)
                zb = torch.from_numpy(z_arr[start : start + step]).to(self.device)
                with model.autocast():
                    decoded = model.decode(cb, zb)
                if decoded is None:
                    raise ConfigError(f"model {self.config.model.name!r} has no decoder: nothing to decode")
                out.append(decoded.float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, *self.sample_shape), np.float32)

    def transfer(self, content_images: Any, transform_images: Any) -> np.ndarray:
        """Grid ``(m, n, C, H, W)``: ``grid[i, j]`` has the content of ``content_images[j]`` and
        the transformation of ``transform_images[i]`` (content along columns, transformation
        along rows, as in figures/transfer_grid.png)."""
        c = self.embed(_checked(content_images, "content_images"))[0]
        z = self.embed(_checked(transform_images, "transform_images"))[1]
        if c is None or z is None:
            raise ConfigError(f"model {self.config.model.name!r} lacks a c or z code: no transfer")
        n, m = len(c), len(z)
        decoded = self.decode(np.tile(c, (m, 1)), np.repeat(z, n, axis=0))
        return decoded.reshape(m, n, *decoded.shape[1:])

    def _code_dims(self) -> tuple[int, int]:
        """Sizes of c and z, read from an encoding (methods fix them in different ways)."""
        if self._dims is None:
            with torch.no_grad():
                codes = self.model.encode(torch.zeros((1, *self.sample_shape), device=self.device))
            c, z = codes.c_mu, codes.z_mu
            self._dims = (0 if c is None else int(c.shape[1]), 0 if z is None else int(z.shape[1]))
        return self._dims


def _checked(data: Any, where: str) -> Any:
    """Arrays named after the argument they came in, so a bad one is named in the message."""
    if isinstance(data, (str, Path, Dataset, DataSplits)):
        return data
    return _array_dataset(data, where)


def _save_array(data: Dataset, path: Path) -> None:
    """``data`` as an .npz that :func:`~dualcontrast.data.load_path` reads back unchanged."""
    arrays = {("y" if k == CONTENT else k): np.asarray(v) for k, v in data.factors.items()}
    np.savez(path, x=np.asarray(data.x), **arrays)


def _recorded_path(data: Dataset) -> str | None:
    """The file ``data`` was read from, for the run's config (so the CLI can read it again)."""
    if Path(data.source).exists():
        return data.source
    log.warning(
        "%s: not a file; the run's config records no data, so CLI commands cannot reread it", data.source
    )
    return None


def _config_layer(config: Any) -> dict[str, Any]:
    """``config=``: a YAML file, or a mapping (nested, or ``"section.key"`` keys)."""
    if config is None:
        return {}
    if isinstance(config, (str, Path)):
        return load_yaml(config)
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a mapping or a YAML file, got {type(config).__name__}")
    merged: dict[str, Any] = {}
    for k, v in config.items():
        _deep_update(merged, _dotted(str(k), v))
    return merged


def _dotted(key: str, value: Any) -> dict[str, Any]:
    *parents, leaf = key.split(".")
    out: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        out = {part: out}
    return out


def _deep_update(target: dict[str, Any], layer: dict[str, Any]) -> None:
    for k, v in layer.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _deep_update(target[k], v)
        else:
            target[k] = v


def train_in_run_dir(
    cfg: Config,
    splits: DataSplits,
    root: Path,
    *,
    overwrite: bool,
    evaluate: bool,
    command: list[str],
    prepare: Callable[[RunDir], None] | None = None,
) -> Run:
    """Train ``cfg`` on ``splits`` into run directory ``root`` (as ``dualcontrast train`` does).

    Model and data are checked (the trainer is built) before the directory is touched;
    ``prepare(run)`` then writes what the run needs besides its config (e.g. its data).
    """
    device = resolve_device(cfg.train.device)
    target = RunDir(root)
    trainer = Trainer(cfg, target, splits, device, validate=validation_scorer(cfg, splits, device))
    run = RunDir.create(root, overwrite=overwrite)
    if prepare is not None:
        prepare(run)
    meta: dict[str, Any] = {}
    record_resolved(cfg, trainer.state, meta)
    save_config(cfg, run.config, command=command, meta=meta)
    state = trainer.fit()
    model, epoch, label = evaluation_model(run, cfg, state, device)
    if evaluate:
        write_evaluation(run, cfg, model, splits, device, epoch=epoch, checkpoint=label)
    opened = Run(root, device=str(device))
    opened._model, opened._sample_shape = model, splits.sample_shape
    return opened


class DualContrast(BaseEstimator):
    """Scikit-learn style estimator: ``fit(X)`` trains, ``transform(X)`` returns ``(c, z)``.

    Every argument left None takes its value from ``config`` and then from the defaults of
    ``dualcontrast train``. ``config`` is a YAML file or a mapping of any config keys
    (``{"loss": {"gamma_c": 0.02}}`` or ``{"loss.gamma_c": 0.02}``).

    ``fit`` trains in ``run_dir`` (default: a new temporary directory, kept so the run can be
    reopened: ``run_dir_``). An array ``X`` is saved there as ``data.npz`` (with ``y``) and the
    config points at it, so ``dualcontrast evaluate`` / ``analyze`` / ``train --resume`` work
    on the run. ``y`` (content labels, optional) is used only to score the codes
    (metrics.json), never for training.

    Fitted attributes: ``run_`` (a :class:`Run`: decode, transfer, metrics), ``run_dir_``.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        content_dim: int | None = None,
        transform_dim: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        seed: int | None = None,
        device: str | None = None,
        progress: bool | None = None,
        config: dict[str, Any] | str | Path | None = None,
        run_dir: str | Path | None = None,
        overwrite: bool = False,
        evaluate: bool = True,
    ):
        self.model = model
        self.content_dim = content_dim
        self.transform_dim = transform_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        self.progress = progress
        self.config = config
        self.run_dir = run_dir
        self.overwrite = overwrite
        self.evaluate = evaluate

    def _resolved_config(self) -> Config:
        params: dict[str, dict[str, Any]] = {
            "model": {
                "name": self.model,
                "content_dim": self.content_dim,
                "transform_dim": self.transform_dim,
            },
            "train": {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "seed": self.seed,
                "device": self.device,
                "progress": self.progress,
            },
        }
        given = {s: {k: v for k, v in keys.items() if v is not None} for s, keys in params.items()}
        return build_config(_config_layer(self.config), given)

    def fit(self, X: Any, y: Any = None) -> DualContrast:
        """Train on ``X`` (array, Dataset or path); ``y``: optional content labels for scoring."""
        cfg = self._resolved_config()
        array = None
        if isinstance(X, (str, Path)):
            if y is not None:
                raise DataError(X, "labels (y) are not accepted with a path; put them in the file")
            cfg.data.path = str(X)
            splits = load_splits(cfg)
        elif isinstance(X, DataSplits):
            if y is not None:
                raise DataError(X.train.source, "labels (y) are not accepted with ready-made splits")
            # As load_splits would read the recorded path back: with its validation set.
            splits = X if X.val is not None else carve_validation(X, cfg.data.val_fraction, cfg.data.split_seed)
            cfg.data.path = _recorded_path(X.train)
        else:
            data = X if isinstance(X, Dataset) else _array_dataset(X, "X")
            if y is not None:
                labels = np.asarray(y)
                if labels.shape != (len(data),):
                    raise DataError(
                        "y", f"must hold one label per sample ({len(data)}), got shape {labels.shape}"
                    )
                data = dataclasses.replace(data, factors={**data.factors, CONTENT: labels})
            data = dataclasses.replace(data, normalize=cfg.data.normalize)
            splits = carve_validation(
                split_dataset(data, cfg.data.test_fraction, cfg.data.split_seed, name="array"),
                cfg.data.val_fraction,
                cfg.data.split_seed,
            )
            if data.in_memory:
                array = data
            else:
                cfg.data.path = _recorded_path(data)
        temporary = self.run_dir is None
        root = Path(tempfile.mkdtemp(prefix="dualcontrast-")) if self.run_dir is None else Path(self.run_dir)
        if array is not None:
            # Recorded in the config so the CLI reads the same data back (same layout rules, same split).
            cfg.data.path = str((root / "data.npz").resolve())
        self.run_ = train_in_run_dir(
            cfg,
            splits,
            root,
            overwrite=self.overwrite or temporary,
            evaluate=self.evaluate,
            command=["python", f"dualcontrast.DualContrast({self._param_text()}).fit"],
            prepare=None if array is None else lambda run: _save_array(array, run.root / "data.npz"),
        )
        self.run_dir_ = root
        return self

    def _param_text(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v is not None)

    def transform(self, X: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(c, z)`` means of ``X`` (array, Dataset or path)."""
        check_is_fitted(self, "run_")
        c, z = self.run_.embed(_checked(X, "X"))
        return c, z

    def fit_transform(self, X: Any, y: Any = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.fit(X, y).transform(X)
