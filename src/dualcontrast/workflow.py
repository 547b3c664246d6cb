"""The workflows behind the commands: resolve a config, train a run, evaluate it, analyze it.

``dualcontrast train / evaluate / analyze``, the benchmark runner, the scripts under
``benchmarks/`` and a notebook all call these functions; the CLI only turns flags into their
arguments. Every function takes paths that may be relative to the working directory and stores
absolute ones, so a run directory works from anywhere afterwards.

Example (a notebook)::

    from dualcontrast import workflow

    cfg = workflow.resolve_config(data="shapes2d", settings={"train": {"epochs": 5}})
    result = workflow.train_run(cfg, "runs/demo")
    print(result.metrics["scores"])
    workflow.analyze_run("runs/demo", k=5)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config, build_config, load_config, load_yaml, parse_override, read_meta, save_config
from .errors import ConfigError
from .rundir import RunDir

log = logging.getLogger(__name__)

# `dualcontrast train` with neither --data nor --config: a run that shows its result in under three
# minutes on a 2-core CPU. Half the samples per cell, a 5x higher learning rate (1e-3 and above
# collapsed the decoder to one blob within 12 epochs on this data) and 16 epochs, chosen by the
# measurements in benchmarks/results/first_run.md. The package defaults stay those of the paper,
# which the benchmarks rely on (configs/shapes2d_quality.yaml is the full-size run).
FIRST_RUN: dict[str, Any] = {
    "data": {"name": "shapes2d", "params": {"n_train_per_cell": 500, "n_test_per_cell": 100}},
    "train": {"epochs": 16, "lr": 5e-4},
}

# What a resumed run may change: the schedule's length and how it runs, not what is trained.
RESUME_MAY_CHANGE = (
    "name",
    "train.epochs",
    "train.device",
    "train.progress",
    "train.eval_every",
    "train.resident",
    "train.amp",
    "train.compile",
    "eval.",
)


# --------------------------------------------------------------------------- configs and data


def data_layer(spec: str | None) -> dict[str, Any]:
    """The config layer of a ``--data`` value: a file or folder, or a built-in data set name."""
    if spec is None:
        return {}
    from .data import BUILTIN_DATASETS

    if not Path(spec).exists() and spec in BUILTIN_DATASETS:
        return {"data": {"name": spec, "path": None}}
    if not Path(spec).exists():
        raise ConfigError(
            f"--data {spec!r}: no such file or folder, and not a built-in data set "
            f"({', '.join(BUILTIN_DATASETS.names())})"
        )
    return {"data": {"path": spec}}


@dataclass(frozen=True)
class ConfigSources:
    """Where a run's config comes from, lowest priority first: defaults < ``base`` < ``data``
    (a path or built-in name) < each file of ``config_files`` < ``settings`` (a nested layer,
    e.g. ``{"train": {"epochs": 5}}``) < ``overrides`` (``"section.key=value"`` strings)."""

    data: str | None = None
    config_files: tuple[str | Path, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    overrides: tuple[str, ...] = ()

    def resolve(self, base: dict[str, Any] | None = None) -> Config:
        layers: list[dict[str, Any]] = [base or {}, data_layer(self.data)]
        layers += [load_yaml(path) for path in self.config_files]
        layers.append(self.settings)
        layers += [parse_override(o) for o in self.overrides]
        return build_config(*layers)


def resolve_config(
    *,
    data: str | None = None,
    config_files: Sequence[str | Path] = (),
    settings: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """A run's config from its sources (see :class:`ConfigSources` for the order)."""
    return ConfigSources(data, tuple(config_files), settings or {}, tuple(overrides)).resolve(base)


def load_splits(cfg: Config):
    """The train/val/test :class:`~dualcontrast.data.base.DataSplits` a config describes (the
    validation set is ``data.val_fraction`` of the training data)."""
    from .data import load_data

    d = cfg.data
    return load_data(
        d.path,
        name=d.name,
        labels=d.labels,
        test_fraction=d.test_fraction,
        val_fraction=d.val_fraction,
        split_seed=d.split_seed,
        normalize=d.normalize,
        max_samples=d.max_samples,
        params=d.params,
        project=d.project,
    )


def open_run(path: str | Path) -> tuple[RunDir, Config]:
    """An existing run directory and its saved config."""
    run = RunDir.open(path)
    return run, load_config(run.config)


def default_run_name(cfg: Config) -> Path:
    """``runs/<data>-<model>-<time>`` under the working directory."""
    data = Path(cfg.data.path).stem if cfg.data.path else cfg.data.name
    return Path("runs") / f"{data}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def absolute_data_paths(cfg: Config) -> dict[str, str]:
    """Make ``data.path`` and ``data.labels`` absolute in place; returns the paths as given
    (``{"data.path": "../x.npz"}``) where they were relative, for the run's provenance."""
    given = {}
    for key in ("path", "labels"):
        value = getattr(cfg.data, key)
        if value is not None and not Path(value).is_absolute():
            given[f"data.{key}"] = value
            setattr(cfg.data, key, str(Path(value).resolve()))
    return given


def record_resolved(cfg: Config, state: Any, meta: dict[str, Any]) -> None:
    """Write into ``cfg`` what the trainer resolved (``model.output: auto`` -> sigmoid / linear), so
    config.yaml holds the config the model was built with; the values as given go to ``meta``."""
    output = state.meta["output"]
    if cfg.model.output != output:
        meta.setdefault("model_as_given", {})["model.output"] = cfg.model.output
        cfg.model.output = output


def as_given(cfg: Config, meta: dict[str, Any]) -> Config:
    """``cfg`` (a saved run's config) with what :func:`record_resolved` resolved put back as the
    user gave it, e.g. to compare the run with a plan that leaves ``model.output`` on auto."""
    for key, value in meta.get("model_as_given", {}).items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    return cfg


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in ("params", "encoder_options", "decoder_options"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_changes(
    saved: Config, cfg: Config, model_as_given: dict[str, Any] | None = None
) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, new)}`` of the settings a resume changes; ConfigError for any of them
    that would continue the checkpoint as something else (model, dimensions, data ...).

    ``model_as_given``: the run's values before the trainer resolved them (config.yaml's
    ``meta.model_as_given``, :func:`record_resolved`); ``cfg`` may hold either, e.g.
    ``model.output: auto`` against a run that resolved it to ``sigmoid``."""
    saved = build_config(saved.to_dict())
    absolute_data_paths(saved)  # runs saved before paths were stored absolute: as the caller gives them
    old, new = _flat(saved.to_dict()), _flat(cfg.to_dict())
    given = model_as_given or {}
    changes = {
        k: (old.get(k), new.get(k))
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and not (k in given and given[k] == new.get(k))
    }
    refused = [k for k in changes if not k.startswith(RESUME_MAY_CHANGE)]
    if refused:
        k = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ConfigError(
            f"--resume cannot change {k} (run has {changes[k][0]!r}, now {changes[k][1]!r}){more}: the "
            "checkpoint was trained with the run's settings; only the schedule (train.epochs ...) may "
            "change; train a new run with another -o, or replace this one with --overwrite"
        )
    return changes


# --------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What :func:`train_run` made: the run directory, the final training state (model,
    optimizers, epochs done), the data it trained on, and metrics.json's content (None when
    evaluation was skipped or on processes other than rank 0)."""

    run: RunDir
    state: Any
    splits: Any
    metrics: dict[str, Any] | None


def train_run(
    cfg: Config,
    outdir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    evaluate: bool = True,
    command: Sequence[str] | None = None,
) -> TrainResult:
    """Train ``cfg`` into a run directory, then (``evaluate``) write embeddings, metrics and figures.

    - new run: ``outdir`` (default :func:`default_run_name`) must not hold a run yet;
    - ``resume``: continue ``outdir`` from its last checkpoint (from epoch 0 when it has none).
      ``cfg`` is the run's saved config with the changes wanted; only the schedule may change
      (:data:`RESUME_MAY_CHANGE`), and the resume is recorded in config.yaml's ``meta.resumes``;
    - ``overwrite``: train into a temporary sibling directory that replaces ``outdir`` once it has
      its first checkpoint (until then the old run is untouched; files of the user's own in
      ``outdir`` are kept).

    A run that fails before its first checkpoint leaves no directory behind (or the old run,
    with ``overwrite``); after it, one that ``resume`` continues. ``command`` is recorded in
    config.yaml (default: this process's command line). Distributed launches (torchrun) are
    joined here; rank 0 alone writes.
    """
    from .training.distributed import init_distributed, shutdown

    cfg = build_config(cfg.to_dict())  # a copy: paths are made absolute below
    given = absolute_data_paths(cfg)
    ctx = init_distributed(cfg.train.device)
    done = False
    try:
        train = _train_restarts if cfg.train.restarts > 1 else _train
        result = train(cfg, outdir, ctx, resume=resume, overwrite=overwrite, evaluate=evaluate,
                       command=command, given=given)  # fmt: skip
        done = True
    finally:
        shutdown(ctx, synchronize=done)
    return result


def _run_place(cfg: Config, outdir, *, resume: bool, overwrite: bool) -> tuple[RunDir, dict[str, tuple[Any, Any]]]:
    """Where a training goes, checked before anything is written: the run ``resume`` continues
    (with the setting changes it makes, :func:`resume_changes`), or a new run's directory, which
    may hold a run only with ``overwrite``."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if resume:
        if outdir is None:
            raise ConfigError("--resume needs -o RUN (the run directory to continue)")
        final = RunDir.open(outdir)
        return final, resume_changes(
            load_config(final.config), cfg, read_meta(final.config).get("model_as_given")
        )
    final = RunDir(Path(outdir) if outdir is not None else default_run_name(cfg))
    RunDir.check_new(final.root, overwrite=overwrite)
    return final, {}


def _train(cfg, outdir, ctx, *, resume, overwrite, evaluate, command, given, splits=None, until=None) -> TrainResult:
    import torch.distributed as dist

    from .evaluation.run import validation_scorer
    from .training import Trainer

    final, changes = _run_place(cfg, outdir, resume=resume, overwrite=overwrite)
    command = list(command) if command is not None else sys.argv
    meta: dict[str, Any] = read_meta(final.config) if resume else ({"data_as_given": given} if given else {})
    # Everything that can fail on bad input happens before the run directory is touched.
    splits = splits if splits is not None else load_splits(cfg)
    if ctx.enabled and not resume:
        # A default name holds the time: every rank must use rank 0's.
        name = [str(final.root)]
        dist.broadcast_object_list(name, src=0)
        final = RunDir(Path(name[0]))
    current = {"run": final}  # where the run is: a staging directory until it replaces the old one
    trainer = Trainer(
        cfg, final, splits, ctx.device, rank=ctx.rank, world_size=ctx.world_size,
        validate=validation_scorer(cfg, splits, ctx.device),
    )  # fmt: skip
    # The model and data are valid: only now is a directory made.
    replacing = overwrite and final.root.is_dir() and any(final.root.iterdir())
    staging = final.staging() if replacing and ctx.is_main else None
    if staging is not None:
        current["run"] = trainer.run = RunDir(staging)
    target = current["run"]
    created = False
    if not resume:
        if ctx.is_main:
            created = not final.root.exists()
            RunDir.create(target.root, overwrite=overwrite and not replacing)
        if ctx.enabled:
            dist.barrier()
    if staging is not None:
        # From the first checkpoint on, the run is at its place.
        def replace_old(st) -> None:
            if current["run"].root != final.root:
                final.replace_with(current["run"].root)
                current["run"] = trainer.run = final

        trainer.callbacks.insert(0, replace_old)
    try:
        start = 0
        if resume and final.last_checkpoint.exists():
            trainer.resume()
            start = trainer.state.epoch
        elif resume:
            log.warning("%s has no checkpoint yet: training it from epoch 0", final.root)
        if ctx.is_main:
            if resume:
                entry = {"command": " ".join(command), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "from_epoch": start, "changes": {k: list(v) for k, v in changes.items()}}  # fmt: skip
                meta["resumes"] = [*meta.get("resumes", []), entry]
            record_resolved(cfg, trainer.state, meta)
            save_config(cfg, target.config, command=command if not resume else None, meta=meta)
        log.info(
            "training %s on %s (%d train / %d test) on %s%s -> %s",
            cfg.model.name, splits.train.source, len(splits.train), len(splits.test), ctx.device,
            f" (process {ctx.rank} of {ctx.world_size})" if ctx.enabled else "", final.root,
        )  # fmt: skip
        state = trainer.fit(until)
    except BaseException:
        if ctx.is_main and not resume and not current["run"].last_checkpoint.exists():
            _discard(current["run"], staging is not None or created)
        raise
    run = current["run"]
    doc = None
    if evaluate and ctx.is_main:
        model, epoch, label = evaluation_model(run, cfg, state, ctx.device)
        doc = write_evaluation(run, cfg, model, splits, ctx.device, epoch=epoch, checkpoint=label)
    return TrainResult(run, state, splits, doc)


RESTART_COLUMNS = ("seed", "epochs", "metric", "compared", "best_epoch", "value", "chosen")


def _train_restarts(cfg, outdir, ctx, *, resume, overwrite, evaluate, command, given) -> TrainResult:
    """``train.restarts`` N > 1: N trainings from seeds ``train.seed`` .. ``train.seed + N - 1``,
    each a run of its own in ``RUN/restarts/seed<S>/`` (trained exactly as a run with that seed
    alone). RUN gets the checkpoints and logs of the one whose best validation score (the record
    that chose its best.pt) is best, ``restarts.csv`` lists them all, and RUN is evaluated as
    any run. With ``train.restart_epochs`` E the restarts are compared after E epochs and only
    the best trains on to ``train.epochs``. ``resume`` continues the unfinished ones (a restart
    past E is the one chosen); ``overwrite`` builds the new run aside and replaces the old one
    only when every restart is done. TrainResult.state is the chosen
    restart's final state where it was trained by this call, else None.
    """
    import shutil

    import torch.distributed as dist

    from .rundir import load_checkpoint

    if cfg.data.val_fraction <= 0:
        raise ConfigError("train.restarts > 1 chooses among trainings on validation: set data.val_fraction > 0")
    final, _ = _run_place(cfg, outdir, resume=resume, overwrite=overwrite)
    command = list(command) if command is not None else sys.argv
    splits = load_splits(cfg)  # once for every restart (they differ in the seed only), before anything is written
    replacing = overwrite and final.root.is_dir() and any(final.root.iterdir())
    target = RunDir(final.staging()) if replacing and ctx.is_main else final
    if ctx.enabled:
        # Every rank trains in rank 0's directory (its default name holds the time, its staging a random part).
        where = [str(target.root)]
        dist.broadcast_object_list(where, src=0)
        target = RunDir(Path(where[0]))
    created = not resume and not target.root.exists()
    if not resume and ctx.is_main:
        RunDir.create(target.root, overwrite=replacing)
        save_config(cfg, target.config, command=command, meta={"data_as_given": given} if given else {})
    chosen: dict[str, Any] | None = None
    states: dict[int, Any] = {}
    seeds = [cfg.train.seed + k for k in range(cfg.train.restarts)]
    subs = {seed: RunDir(target.root / "restarts" / f"seed{seed}") for seed in seeds}
    early = cfg.train.restart_epochs
    trial = early if early is not None and early < cfg.train.epochs else None

    def trained(seed: int) -> int:
        sub = subs[seed]
        return int(load_checkpoint(sub.last_checkpoint)["epoch"]) if sub.last_checkpoint.exists() else 0

    def train(seed: int, until: int | None) -> None:
        one = build_config(cfg.to_dict())
        one.train.seed, one.train.restarts, one.train.restart_epochs = seed, 1, None
        states[seed] = _train(one, subs[seed].root, ctx, resume=subs[seed].config.exists(), overwrite=False,
                              evaluate=False, command=command, given=given, splits=splits, until=until).state  # fmt: skip

    try:
        # With restart_epochs only the chosen restart trains past it: a resumed run finds its choice
        # there (resume cannot change restart_epochs, so there is at most one).
        done = {seed: trained(seed) for seed in seeds}
        ahead = [seed for seed in seeds if trial is not None and done[seed] > trial]
        for seed in seeds:
            if not ahead and done[seed] < (trial or cfg.train.epochs):
                train(seed, trial)
        records = [_restart_record(seed, subs[seed]) for seed in seeds] if ctx.is_main else []
        if ctx.is_main:
            chosen = _best_restart([r for r in records if r["seed"] in ahead] or records)
        if trial is not None:
            pick = [chosen["seed"] if chosen else None]
            if ctx.enabled:
                dist.broadcast_object_list(pick, src=0)
            if trained(pick[0]) < cfg.train.epochs:
                train(pick[0], None)
            if ctx.is_main:
                compared = {r["seed"]: r["compared"] for r in records}
                records = [{**_restart_record(seed, subs[seed]), "compared": compared[seed]} for seed in seeds]
                chosen = next(r for r in records if r["seed"] == pick[0])
        if ctx.is_main:
            _keep_restart(target, cfg, records, chosen)
    except BaseException:
        if ctx.is_main and target.root != final.root:
            shutil.rmtree(target.root, ignore_errors=True)
        elif ctx.is_main and created and not any((target.root / "restarts").glob("*/checkpoints/last.pt")):
            _discard(target, whole=True)
        raise
    if target.root != final.root:
        final.replace_with(target.root)
    doc = evaluate_checkpoint(final, cfg, splits, ctx.device) if evaluate and ctx.is_main else None
    state = states.get(chosen["seed"]) if chosen is not None else None
    return TrainResult(final, state, splits, doc)


def _restart_record(seed: int, sub: RunDir) -> dict[str, Any]:
    """A restart's validation record (the one that chose its best.pt) and how far it trained;
    ``compared``: the value the choice among restarts saw (the same, until the kept one trains on)."""
    from .rundir import load_checkpoint

    ckpt = load_checkpoint(sub.last_checkpoint)
    best = ckpt["meta"].get("best")
    if best is None:
        raise ConfigError(f"{sub.root}: no validation score was recorded (is the validation split "
                          "empty?); restarts cannot be compared")  # fmt: skip
    return {"seed": seed, "epochs": int(ckpt["epoch"]), "best_epoch": int(best["epoch"]), "metric": best["metric"],
            "compared": float(best["value"]), "value": float(best["value"]), "higher": bool(best["higher_is_better"]),
            "sub": sub}  # fmt: skip


def _best_restart(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The record with the best validation value (ties: the lower seed)."""
    sign = 1.0 if records[0]["higher"] else -1.0
    return max(records, key=lambda r: sign * r["compared"])


def _keep_restart(target: RunDir, cfg: Config, records: list[dict[str, Any]], chosen: dict[str, Any]) -> None:
    """Make ``target`` the ``chosen`` restart: its checkpoints and logs, ``restarts.csv`` listing all,
    config.yaml with what the model was built with."""
    import shutil

    from .rundir import atomic_copy
    from .training import append_csv

    for name in ("last.pt", "best.pt"):
        if (chosen["sub"].checkpoints / name).exists():
            atomic_copy(chosen["sub"].checkpoints / name, target.checkpoints / name)
    for path in (target.log, target.eval_log, target.root / "restarts.csv"):
        path.unlink(missing_ok=True)
    for name in ("log.csv", "eval_log.csv"):
        if (chosen["sub"].root / name).exists():
            shutil.copyfile(chosen["sub"].root / name, target.root / name)
    for r in records:
        append_csv(target.root / "restarts.csv", {**{c: r[c] for c in RESTART_COLUMNS[:-1]}, "chosen": r is chosen})
    # model.output as resolved by the trainer, as in any run's config.yaml.
    meta = read_meta(target.config)
    meta.update({k: v for k, v in read_meta(chosen["sub"].config).items() if k == "model_as_given"})
    cfg.model.output = load_config(chosen["sub"].config).model.output
    save_config(cfg, target.config, meta=meta)
    log.info("restarts: seed %d kept (validation %s compared: %s)", chosen["seed"], chosen["metric"],
             ", ".join(f"seed {r['seed']}: {r['compared']:.4f}" for r in records))  # fmt: skip


def evaluation_model(run: RunDir, cfg: Config, state: Any, device: Any) -> tuple[Any, int, str]:
    """``(model, epoch, checkpoint label)`` a finished training is scored with: the best
    validation epoch (best.pt) where the run has one, else the final state in memory."""
    from .models import load_trained_model
    from .training import checkpoint_label

    best = state.meta.get("best")
    if best is None or int(best["epoch"]) == state.epoch or not run.best_checkpoint.exists():
        state.model.eval()
        kind = "best" if best is not None and int(best["epoch"]) == state.epoch else "last"
        return state.model, state.epoch, checkpoint_label(kind, state.epoch, best)
    model, ckpt = load_trained_model(run, cfg, device, "best")
    return model, int(ckpt["epoch"]), checkpoint_label("best", int(ckpt["epoch"]), best)


def _discard(run: RunDir, whole: bool) -> None:
    """Remove what a run that never reached its first checkpoint wrote."""
    if whole:
        import shutil

        shutil.rmtree(run.root, ignore_errors=True)
        log.warning("run failed before its first checkpoint; %s removed", run.root)
    else:
        run.remove_outputs()
        log.warning("run failed before its first checkpoint; its files in %s were removed", run.root)


# --------------------------------------------------------------------------- evaluate / analyze


def write_evaluation(run: RunDir, cfg: Config, model, splits, device, *, epoch: int, figures: bool = True,
                     checkpoint: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Embeddings, metrics and figures of a trained ``model`` into ``run``, then its report.html
    (refreshed every time: never a page with stale metrics). ``checkpoint``: which one the model
    is, as metrics.json records it. Returns metrics.json's content."""
    from .evaluation.run import evaluate_run as evaluate_model
    from .report import write_report

    doc = evaluate_model(run, cfg, model, splits, device, epoch=epoch, figures=figures, checkpoint=checkpoint)
    write_report(run.root, projection=None if figures and cfg.eval.figures else "none")
    return doc


def evaluate_run(
    path: str | Path, *, device: str | None = None, figures: bool = True, checkpoint: str = "auto"
) -> dict[str, Any]:
    """Score a trained run (finished or interrupted) into its directory: embeddings.npz,
    metrics.json and (``figures``) figures/. Returns metrics.json's content.
    ``checkpoint``: ``auto`` (best.pt where the run has one, else last.pt), ``best`` or ``last``;
    metrics.json says which. ``device``: default the run's ``train.device``."""
    from .training import run_device

    run, cfg = open_run(path)
    dev = run_device(cfg, device)
    return evaluate_checkpoint(run, cfg, load_splits(cfg), dev, figures=figures, checkpoint=checkpoint)


def evaluate_checkpoint(run: RunDir, cfg: Config, splits, device, *, figures: bool = True,
                        checkpoint: str = "auto") -> dict[str, Any]:  # fmt: skip
    """:func:`write_evaluation` of a run's saved ``checkpoint`` (auto | best | last)."""
    from .models import load_trained_model
    from .training import checkpoint_label

    model, ckpt = load_trained_model(run, cfg, device, checkpoint)
    epoch = int(ckpt["epoch"])
    label = checkpoint_label(ckpt["chosen"], epoch, ckpt["meta"].get("best"))
    return write_evaluation(run, cfg, model, splits, device, epoch=epoch, figures=figures, checkpoint=label)


def analyze_run(
    path: str | Path, *, device: str | None = None, checkpoint: str = "auto", **options: Any
) -> dict[str, Any]:
    """Cluster, average and export a trained run into RUN/analysis/; returns analysis.json's content.

    ``checkpoint``: ``auto`` (best.pt where the run has one, else last.pt), ``best`` or ``last``.

    ``options`` are the fields of :class:`dualcontrast.analysis.pipeline.AnalyzeOptions`
    (``k``, ``k_max``, ``k_z``, ``projection``, ``average``, ``export`` ...); ``device``:
    default the run's ``train.device``.
    """
    from .analysis.pipeline import AnalyzeOptions, run_truth_and_ctf
    from .analysis.pipeline import analyze_run as write_analysis
    from .models import load_trained_model
    from .training import checkpoint_label, run_device

    run, cfg = open_run(path)
    dev = run_device(cfg, device)
    splits = load_splits(cfg)
    model, ckpt = load_trained_model(run, cfg, dev, checkpoint)
    label = checkpoint_label(ckpt["chosen"], int(ckpt["epoch"]), ckpt["meta"].get("best"))
    truth, ctf, voxel_size = run_truth_and_ctf(cfg)
    opts = AnalyzeOptions(**{**options, "device": str(dev)})
    return write_analysis(
        run, cfg, model, splits, opts, truth=truth, ctf=ctf, voxel_size=voxel_size, checkpoint=label
    )


# --------------------------------------------------------------------------- the summary


# The headline scores of a run summary, in this order; the words come from evaluation.metrics.SCORES.
SUMMARY_SCORES = ("d_c_c", "d_c_z", "sap_c", "d_z_z", "d_z_c", "sap_z", "ari_c", "s_z", "r2_pose_z")


def describe_scores(scores: dict[str, Any]) -> list[str]:
    """metrics.json's scores in words, one line each: the headline scores, the states of other
    factors, and the state scores inside each content class (D(state|z) next to D(state|c))."""
    from .evaluation.metrics import SCORES, score_info

    lines = []
    for key in SUMMARY_SCORES:
        value = scores.get(key)
        if isinstance(value, (int, float)):
            lines.append(f"{SCORES[key].words}: {value:.2f} ({SCORES[key].better} is better)")
    for key, value in scores.items():
        info = score_info(key)
        if key in SUMMARY_SCORES or key.endswith("_raw") or info is None or not isinstance(value, (int, float)):
            continue
        lines.append(f"{info.words}: {value:.2f} ({info.better} is better)")
    within = scores.get("within_content")
    if isinstance(within, dict) and within:
        parts = [
            f"{cls}: {inner['d_z_z']:.2f} / {inner['d_z_c']:.2f}"
            for cls, inner in within.items()
            if "d_z_z" in inner and "d_z_c" in inner
        ]
        if parts:
            lines.append("inside each content class, D(state|z) / D(state|c): " + ", ".join(parts))
    if "d_c_c_raw" in scores and "d_c_c" in scores:
        lines.append(f"D(c|c) on raw codes (the reference evaluator): {scores['d_c_c_raw']:.2f}")
    return lines


def run_summary(run: RunDir, metrics: dict[str, Any] | None) -> str:
    """What a finished run shows a user: its metrics in words, its files and the next commands."""
    lines = [f"run {run.root} finished"]
    if metrics is not None:
        if metrics.get("checkpoint"):
            lines.append(f"  scored on the test split with the {metrics['checkpoint']} checkpoint")
        lines += ["  " + s for s in describe_scores(metrics["scores"])] or ["  no labels to score"]
        few = metrics.get("small_sample_warning")
        if few:
            lines.append(
                f"  caution: some classes have fewer than {few['min_per_class']} samples "
                f"({', '.join(few['classes'])}): these scores are rough"
            )
    written = [p for p in (run.config, run.last_checkpoint, run.best_checkpoint, run.log, run.eval_log, run.embeddings, run.metrics,
                           run.root / "report.html", run.root / "restarts.csv") if p.exists()]  # fmt: skip
    written += sorted(run.figures.glob("*.png")) if run.figures.is_dir() else []
    lines.append("  wrote: " + ", ".join(str(p.relative_to(run.root)) for p in written))
    lines += [
        "  next:",
        f"    dualcontrast evaluate {run.root}      # re-score (e.g. after --resume)",
        f"    dualcontrast analyze {run.root}       # clusters, averages, exports",
        f"    open {run.root / 'report.html'}",
    ]
    return "\n".join(lines)
