"""Speed benchmark: the reference DualContrast step against the fused one, in one run.

Measures, on one machine and the same data, with the two steps interleaved (epoch by epoch,
step by step) so that background load hits both alike:

1. MNIST (2D, batch 100): epoch time and samples/s of the ``reference`` and ``fused`` steps
   trained side by side from the same weights and random stream, and their D(c|c), D(c|z)
   after the same number of epochs;
2. 32^3 volumes (batch 50, the subtomogram architecture of configs/subtomo.yaml): step time
   and samples/s of both steps with the reference MLP decoder and the conv-transpose one;
3. 3D quality of the two decoders (fused step) on the built-in ``phantoms3d`` simulation,
   when it is available;
4. optionally, peak resident memory while embedding 100,000 32^3 volumes from a
   memory-mapped ``.npy`` file (written, then deleted).

Results: ``benchmarks/results/speed.md`` and ``speed.json`` (``--quick``: ``speed_quick.*``).
Wall times depend on what else runs; the load average and the process CPU time of every
timed part are recorded next to them.

Usage (from the repository root)::

    python benchmarks/speed.py --memmap-dir /work/exp    # full run, ~20 min on an idle 2-core CPU
    python benchmarks/speed.py --quick                   # the script itself, ~3 min
    python benchmarks/speed.py --device cuda             # the same on a GPU (data resident there)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualcontrast.config import build_config, load_yaml
from dualcontrast.data import BUILTIN_DATASETS, Dataset, load_data
from dualcontrast.evaluation import d_score, embed_splits, split_view
from dualcontrast.models import build_model
from dualcontrast.rundir import RunDir
from dualcontrast.training import Trainer, apply_runtime, resolve_device, rng_state, set_rng_state
from dualcontrast.training.runtime import cpu_model
from dualcontrast.training.trainer import bf16_supported
from dualcontrast.workflow import load_splits

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist.npz"
RESULTS = REPO / "benchmarks" / "results"
STEPS = ("reference", "fused")
# The paper writes D(c|z) for "content predicted from z", D(z|z) for the transformation factor.
FACTOR_SYMBOL = {"content": "c", "transform": "z"}


# --------------------------------------------------------------------------- environment


def load_avg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "load_avg_start": load_avg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class Clock:
    """Wall and process-CPU seconds of a block, with device work finished."""

    def __init__(self, device: torch.device):
        self.device = device
        self.wall = self.cpu = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Clock:
        self._sync()
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


class RngSlot:
    """A private random stream: each side of a comparison draws from its own copy of one
    starting state, so interleaving them does not change what either of them sees."""

    def __init__(self) -> None:
        self.state = rng_state()

    @contextlib.contextmanager
    def active(self):
        outside = rng_state()
        set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = rng_state()
            set_rng_state(outside)


# --------------------------------------------------------------------------- training side by side


@dataclass
class Contender:
    name: str
    trainer: Trainer
    slot: RngSlot
    epochs: list[dict[str, float]] = field(default_factory=list)


def side_by_side(
    configs: dict[str, Any], splits, device: torch.device, workdir: Path, epochs: int
) -> dict[str, Contender]:
    """Train every config for ``epochs`` epochs, one epoch of each in turn."""
    contenders = {}
    for name, cfg in configs.items():
        trainer = Trainer(cfg, RunDir.create(workdir / name, overwrite=True), splits, device)
        contenders[name] = Contender(name, trainer, RngSlot())  # the state right after seeding
    for epoch in range(1, epochs + 1):
        for c in contenders.values():
            c.trainer.cfg.train.epochs = epoch
            load = load_avg()[0]
            with c.slot.active(), Clock(device) as clock:
                c.trainer.fit()
            c.epochs.append({"epoch": epoch, "wall_s": clock.wall, "cpu_s": clock.cpu, "load1": load})
            print(
                f"  {c.name:>14} epoch {epoch}: {clock.wall:7.1f} s wall, {clock.cpu:7.1f} s CPU", flush=True
            )
    return contenders


def scores(model, splits, device: torch.device, pairs: list[tuple[str, str]]) -> dict[str, float]:
    """D(factor | code) on the test split for each ``(factor, code)``, the paper's protocol."""
    arrays = embed_splits(model, splits, batch_size=1000, device=device, progress=False)
    train, test = split_view(arrays, "train"), split_view(arrays, "test")
    out = {}
    for factor, code in pairs:
        if factor in train and f"{code}_mu" in train:
            out[f"D({FACTOR_SYMBOL[factor]}|{code})"] = d_score(
                train[f"{code}_mu"], train[factor], test[f"{code}_mu"], test[factor], max_fit_samples=20000
            )
    return out


def step_gflop(cfg, x: torch.Tensor) -> float:
    """Floating-point work of one training step (forward, backward and optimizer) on batch ``x``,
    counted by torch's FlopCounterMode after one warm-up step."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg, tuple(x.shape[1:]), "sigmoid").to(x.device)
    optimizers = model.configure_optimizers(cfg.train.lr)
    model.training_step(x, optimizers)
    with FlopCounterMode(display=False) as counter:
        model.training_step(x, optimizers)
    return counter.get_total_flops() / 1e9


def mnist_gflop(args, device: torch.device) -> dict[str, float]:
    """GFLOP per step of each step kind on 100 MNIST training images (the benchmark's batch)."""
    base = load_yaml(REPO / "configs" / "mnist.yaml")
    images = np.load(args.mnist)["x_train"][:100]
    x = torch.from_numpy(images).float().div(255).unsqueeze(1).to(device)
    return {step: step_gflop(build_config(base, runtime_layer(args, device, step)), x) for step in STEPS}


def epoch_summary(runs: list[Contender], n_train: int) -> dict[str, Any]:
    """Median epoch time over every run of one contender, leaving out each run's first epoch
    (it also builds kernels and caches)."""
    steady = [e for c in runs for e in (c.epochs[1:] or c.epochs)]
    wall = float(np.median([e["wall_s"] for e in steady]))
    return {
        "epochs": [c.epochs for c in runs],
        "epoch_wall_s": wall,
        "epoch_cpu_s": float(np.median([e["cpu_s"] for e in steady])),
        "samples_per_s": n_train / wall,
    }


# --------------------------------------------------------------------------- 1. MNIST


def runtime_layer(
    args, device: torch.device, step: str, amp: bool | None = None, seed: int | None = None
) -> dict[str, Any]:
    return {
        "train": {
            "step": step,
            "device": str(device),
            "progress": False,
            "amp": args.amp if amp is None else amp,
            "compile": args.compile,
            "eval_every": 0,
            "seed": args.seeds[0] if seed is None else seed,
        }
    }


def bf16_contender(args, device: torch.device) -> bool:
    """Also time the fused step under bf16 autocast, on a CPU that computes bf16 natively
    (on GPUs ``--amp`` puts every contender in bf16 instead)."""
    return device.type == "cpu" and not args.amp and "bf16" not in args.skip and bf16_supported(device)


def mnist_part(args, device: torch.device, workdir: Path) -> dict[str, Any]:
    """Every contender trained side by side, once per seed; speed over all runs, D-scores per seed."""
    base = load_yaml(REPO / "configs" / "mnist.yaml")
    base["data"] = {"path": str(args.mnist), "max_samples": 6000 if args.quick else None}
    runs: dict[str, list[Contender]] = {}
    quality: dict[str, list[dict[str, float]]] = {}
    splits = None
    for seed in args.seeds:
        configs = {step: build_config(base, runtime_layer(args, device, step, seed=seed)) for step in STEPS}
        if bf16_contender(args, device):
            configs["fused+bf16"] = build_config(
                base, runtime_layer(args, device, "fused", amp=True, seed=seed)
            )
        splits = splits or load_splits(configs["fused"])
        print(
            f"MNIST seed {seed}: {len(splits.train)} train / {len(splits.test)} test, {args.mnist_epochs} epochs"
        )
        for name, c in side_by_side(
            configs, splits, device, workdir / f"mnist-{seed}", args.mnist_epochs
        ).items():
            runs.setdefault(name, []).append(c)
            pairs = [("content", "c"), ("content", "z")]
            quality.setdefault(name, []).append(scores(c.trainer.model, splits, device, pairs))
    assert splits is not None
    n_train = (len(splits.train) // 100) * 100
    out: dict[str, Any] = {
        "n_train": len(splits.train),
        "epochs": args.mnist_epochs,
        "seeds": list(args.seeds),
        "steps": {},
        "gflop_per_step": mnist_gflop(args, device),
    }
    for name, contender_runs in runs.items():
        per_seed = quality[name]
        out["steps"][name] = {
            **epoch_summary(contender_runs, n_train),
            "quality_per_seed": per_seed,
            "quality": {k: float(np.mean([q[k] for q in per_seed])) for k in per_seed[0]},
        }
    ref = out["steps"]["reference"]
    for r in out["steps"].values():
        r["speedup_wall"] = ref["epoch_wall_s"] / r["epoch_wall_s"]
        r["speedup_cpu"] = ref["epoch_cpu_s"] / r["epoch_cpu_s"]
        r["d_cc_minus_reference"] = [
            q["D(c|c)"] - qr["D(c|c)"]
            for q, qr in zip(r["quality_per_seed"], ref["quality_per_seed"], strict=True)
        ]
    return out


# --------------------------------------------------------------------------- 2. 32^3 step speed


def subtomo_config(args, device: torch.device, step: str, decoder: str, extra: dict | None = None):
    base = load_yaml(REPO / "configs" / "subtomo.yaml")
    return build_config(base, {"model": {"decoder": decoder}}, runtime_layer(args, device, step), extra or {})


def volume_batch(n: int, device: torch.device) -> tuple[torch.Tensor, str]:
    """``n`` normalised 32^3 volumes: simulated phantoms where the data set exists, else noise."""
    if "phantoms3d" in BUILTIN_DATASETS.names():
        # 12 maps (3 identities x 4 states); 80% of the volumes land in the training split.
        splits = load_data(name="phantoms3d", params={"n_per_state": n // 6, "progress": False})
        x = splits.train.batch(np.arange(n))
        source = "phantoms3d (simulated subtomograms, SNR 0.1)"
    else:
        x = np.random.default_rng(0).standard_normal((n, 1, 32, 32, 32), dtype=np.float32)
        source = "random normal volumes"
    x = (x - x.mean(axis=(1, 2, 3, 4), keepdims=True)) / x.std(axis=(1, 2, 3, 4), keepdims=True)
    return torch.from_numpy(x).to(device), source


def volume_speed(args, device: torch.device) -> dict[str, Any]:
    """Seconds per step of each (step, decoder) pair, round robin after one warm-up step."""
    batch = 50
    x, source = volume_batch(batch, device)
    combos = [(step, decoder, args.amp) for decoder in ("mlp", "conv") for step in STEPS]
    if bf16_contender(args, device):
        combos.append(("fused", "conv", True))
    variants = {}
    for step, decoder, amp in combos:
        cfg = subtomo_config(args, device, step, decoder)
        torch.manual_seed(0)
        model = build_model(cfg, (1, 32, 32, 32), "linear").to(device)
        # channels_last: the trainer's default for volumes
        fmt = apply_runtime(model, device, 3, amp=amp, compile=args.compile, channels_last=True)
        name = f"{step}+{decoder}" + ("+bf16" if amp and not args.amp else "")
        variants[name] = (model, model.configure_optimizers(1e-4))
    x = x.contiguous(memory_format=fmt)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    print(f"32^3 volumes ({source}), batch {batch}: {args.volume_rounds} timed rounds")
    for r in range(args.volume_rounds + 1):
        for name, (model, opt) in variants.items():
            with Clock(device) as clock:
                model.training_step(x, opt)
            if r > 0:  # round 0 warms up
                times[name].append((clock.wall, clock.cpu))
        if r > 0:
            print("  round", r, ", ".join(f"{k} {v[-1][0]:.2f}s" for k, v in times.items()), flush=True)
    out: dict[str, Any] = {"batch": batch, "data": source, "variants": {}}
    for name, (model, _) in variants.items():
        wall = float(np.median([t[0] for t in times[name]]))
        cpu = float(np.median([t[1] for t in times[name]]))
        out["variants"][name] = {
            "step_wall_s": wall,
            "step_cpu_s": cpu,
            "samples_per_s": batch / wall,
            "decoder_params_M": sum(p.numel() for p in model.decoder.parameters()) / 1e6,
            "steps_wall_s": [t[0] for t in times[name]],
        }
    ref = out["variants"]["reference+mlp"]["step_wall_s"]
    for v in out["variants"].values():
        v["speedup_vs_reference_mlp"] = ref / v["step_wall_s"]
    del variants
    return out


# --------------------------------------------------------------------------- 3. 3D quality


def volume_quality(args, device: torch.device, workdir: Path) -> dict[str, Any]:
    if "phantoms3d" not in BUILTIN_DATASETS.names():
        return {"skipped": "the built-in phantoms3d data set is not available: speed only"}
    extra = {"data": {"params": {"n_per_state": args.phantoms_per_state, "progress": False}}}
    configs = {
        f"fused+{decoder}": subtomo_config(args, device, "fused", decoder, extra)
        for decoder in ("mlp", "conv")
    }
    splits = load_splits(configs["fused+conv"])
    print(f"phantoms3d: {len(splits.train)} train / {len(splits.test)} test, {args.volume_epochs} epochs")
    contenders = side_by_side(configs, splits, device, workdir / "phantoms3d", args.volume_epochs)
    n_train = (len(splits.train) // 50) * 50
    pairs = [("content", "c"), ("content", "z"), ("transform", "z"), ("transform", "c")]
    out: dict[str, Any] = {"n_train": len(splits.train), "epochs": args.volume_epochs, "decoders": {}}
    for name, c in contenders.items():
        out["decoders"][name] = {
            **epoch_summary([c], n_train),
            "quality": scores(c.trainer.model, splits, device, pairs),
        }
    return out


# --------------------------------------------------------------------------- 4. memory while embedding


def write_volumes(path: Path, n: int, size: int = 32, chunk: int = 1000) -> None:
    """``n`` float32 volumes as a ``.npy``, written block by block (never held whole)."""
    rng = np.random.default_rng(0)
    block = rng.standard_normal((chunk, size, size, size), dtype=np.float32)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, size, size, size))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        arr[start:stop] = block[: stop - start] * (1.0 + start / n)
        arr.flush()
    del arr


def memmap_rss(args, device: torch.device) -> dict[str, Any]:
    target = Path(args.memmap_dir) / f"dualcontrast_speed_{os.getpid()}.npy"
    target.parent.mkdir(parents=True, exist_ok=True)
    n = args.memmap_n
    print(f"memory-mapped embedding: writing {n} volumes ({n * 32**3 * 4 / 2**30:.1f} GiB) to {target}")
    try:
        with Clock(torch.device("cpu")) as clock:
            write_volumes(target, n)
        cmd = [sys.executable, __file__, "--embed-worker", str(target), "--device", str(device)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"embedding worker failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["write_s"] = clock.wall
        result["file_gib"] = target.stat().st_size / 2**30
        return result
    finally:
        target.unlink(missing_ok=True)


def _status_kib(*keys: str) -> dict[str, int]:
    """Memory counters of this process from /proc/self/status (Linux), in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0])
    return out


def embed_worker(path: Path, device: torch.device) -> None:
    """Child process: embed every volume of ``path`` and print its memory use as JSON.

    Peak RSS is the kernel's high-water mark of this process image (``VmHWM``; ``ru_maxrss``
    would also count the parent's memory at fork time), and a watcher samples the anonymous
    and file-backed parts.
    """
    from dualcontrast.data.images import load_npy
    from dualcontrast.evaluation import embed

    peak: dict[str, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for k, v in _status_kib("RssAnon", "RssFile").items():
                peak[k] = max(peak.get(k, 0), v)
            stop.wait(0.05)

    before = _status_kib("VmRSS")["VmRSS"]
    # Read lazily whatever the file size (data.load_path does so above 512 MiB), normalised
    # per particle as configs/subtomo.yaml asks.
    lazy = load_npy(path, mmap_threshold_bytes=0)
    data = Dataset(lazy.x, source=lazy.source, normalize="per_sample")
    cfg = build_config(load_yaml(REPO / "configs" / "subtomo.yaml"), {"model": {"decoder": "conv"}})
    model = build_model(cfg, data.sample_shape, "linear").to(device)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with Clock(device) as clock:
        codes = embed(model, data, batch_size=cfg.eval.batch_size, device=device, progress=False)
    stop.set()
    watcher.join()
    print(
        json.dumps(
            {
                "n": len(data),
                "lazy": not data.in_memory,
                "batch_size": cfg.eval.batch_size,
                "embed_s": clock.wall,
                "volumes_per_s": len(data) / clock.wall,
                "rss_before_mib": before / 1024,
                "peak_rss_mib": _status_kib("VmHWM")["VmHWM"] / 1024,
                "peak_rss_anon_mib": peak.get("RssAnon", 0) / 1024,
                "peak_rss_file_mib": peak.get("RssFile", 0) / 1024,
                "codes_shape": list(codes["c_mu"].shape),
            }
        )
    )


# --------------------------------------------------------------------------- report


def fmt(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}"


def _cell(text: str) -> str:
    """Text for a markdown table cell (a bare | would end the cell)."""
    return text.replace("|", "\\|")


def _join(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def targets(res: dict[str, Any]) -> list[str]:
    """The issue's targets for this device, each with the measured value."""
    gpu = res["environment"]["device"].startswith("cuda")
    rows: list[tuple[str, str, bool]] = []
    m = res.get("mnist", {}).get("steps")
    if m:
        fused, ref = m["fused"], m["reference"]
        diffs = fused["d_cc_minus_reference"]
        if gpu:
            rows.append(
                (
                    "MNIST fused epoch < 3 s (H100)",
                    f"{fused['epoch_wall_s']:.2f} s",
                    fused["epoch_wall_s"] < 3,
                )
            )
        else:
            rows.append(
                ("MNIST fused epoch <= 26 s", f"{fused['epoch_wall_s']:.1f} s", fused["epoch_wall_s"] <= 26)
            )
        need = 5.0 if gpu else 2.0
        rows.append(
            (
                f"MNIST fused >= {need:g}x the reference step (wall)",
                f"{fused['speedup_wall']:.2f}x (CPU time {fused['speedup_cpu']:.2f}x)",
                fused["speedup_wall"] >= need,
            )
        )
        rows.append(
            (
                "same epochs: D(c|c) within 0.01 of the reference",
                f"{_join(diffs, '+.3f')} (reference {_join([q['D(c|c)'] for q in ref['quality_per_seed']], '.3f')})",
                all(abs(d) <= 0.01 for d in diffs),
            )
        )
        if "fused+bf16" in m:
            b = m["fused+bf16"]
            bd = b["d_cc_minus_reference"]
            rows.append(
                (
                    "(fused + bf16 autocast: >= 2x, D(c|c) within 0.01)",
                    f"{b['speedup_wall']:.2f}x wall, {b['speedup_cpu']:.2f}x CPU; D(c|c) {_join(bd, '+.3f')}",
                    b["speedup_wall"] >= 2 and all(abs(d) <= 0.01 for d in bd),
                )
            )
    v = res.get("volume_speed", {}).get("variants")
    if v:
        best = max(
            (name for name in v if name.startswith("fused") and "bf16" not in name),
            key=lambda k: v[k]["speedup_vs_reference_mlp"],
        )
        rows.append(
            (
                "32^3: fused >= 3x the reference step (reference MLP decoder)",
                f"{best}: {v[best]['speedup_vs_reference_mlp']:.2f}x (fused+mlp {v['fused+mlp']['speedup_vs_reference_mlp']:.2f}x)",
                v[best]["speedup_vs_reference_mlp"] >= 3,
            )
        )
    mm = res.get("memmap")
    if mm:
        rows.append(
            (
                f"peak RSS embedding {mm['n']} 32^3 volumes (memory-mapped) < 2 GB",
                f"{mm['peak_rss_mib']:.0f} MiB",
                mm["peak_rss_mib"] < 2048,
            )
        )
    if not rows or res.get("quick"):  # quick settings cannot meet or miss the targets
        return []
    out = ['## Targets (issue "Speed and scale")', "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {_cell(t)} | {_cell(value)} | {'yes' if ok else 'no'} |" for t, value, ok in rows]
    return [*out, ""]


def flop_lines(m: dict[str, Any]) -> list[str]:
    """What the FLOP count says about the measured speed-up: the work ratio is the speed-up of a
    step that is as efficient per FLOP as the reference; more needs a faster arithmetic."""
    gflop = m.get("gflop_per_step")
    if not gflop:
        return []
    steps_per_epoch = m["n_train"] // 100
    rate = {k: gflop[k] * steps_per_epoch / m["steps"][k]["epoch_wall_s"] for k in gflop}
    work = gflop["reference"] / gflop["fused"]
    out = ["| step | GFLOP per step | achieved GFLOP/s |", "|---|---|---|"]
    out += [f"| {k} | {gflop[k]:.2f} | {rate[k]:.0f} |" for k in gflop]
    return [
        "FLOP count of one step (torch's FlopCounterMode, batch 100, forward + backward):",
        "",
        *out,
        "",
        f"The reference step does {work:.2f}x the arithmetic of the fused step; that ratio is the "
        "speed-up of a step computing at the reference's rate (on an idle 2-core CPU the reference "
        "already runs near the fp32 matrix-product peak). The measured "
        f"{m['steps']['fused']['speedup_wall']:.2f}x is above it because the fused step's larger "
        "batched matrix products run faster per FLOP. Beyond that, an fp32 step on this CPU can only "
        "get faster by doing less work than the objective needs, or with lower precision "
        "(`fused+bf16`).",
        "",
    ]


def report(res: dict[str, Any], command: str) -> str:
    env = res["environment"]
    lines = [
        "# Speed: reference vs fused DualContrast step",
        "",
        f"Command: `{command}` (from the repository root{'; QUICK settings: checks the script, not the targets' if res['quick'] else ''}).",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, torch {env['torch']} ({env['torch_threads']} threads), "
        f"device {env['device']}{' (' + env['gpu'] + ')' if 'gpu' in env else ''}. Started {env['started']}.",
        f"Load average (1, 5, 15 min) at start {env['load_avg_start']}, at end {res['load_avg_end']}"
        + (
            f" — the machine was shared during this run ({env['cores']} cores): wall times are inflated"
            " and less comparable than CPU times."
            if max(env["load_avg_start"][0], res["load_avg_end"][0]) > 0.5 * (env["cores"] or 1) + 1
            else "."
        ),
        "",
        "Both steps of each comparison run in the same process, interleaved (an epoch or a step of "
        "each in turn), from the same weights and the same random stream. `CPU s` is the process's "
        "CPU time, less sensitive to other load than wall time. Run it on an otherwise idle machine: "
        "when other processes share the cores, torch's OpenMP threads wait for each other and small "
        "steps become many times slower (then pass `--threads 1`, as the table header records).",
        "",
        *targets(res),
    ]
    if "mnist" in res:
        m = res["mnist"]
        lines += [
            f"## MNIST (2D), batch 100, {m['n_train']} training images, {m['epochs']} epochs per step, "
            f"seeds {', '.join(map(str, m['seeds']))}",
            "",
            r"| step | epoch wall s | epoch CPU s | samples/s | speed-up (wall / CPU) | D(c\|c) per seed | D(c\|z) per seed |",
            "|---|---|---|---|---|---|---|",
        ]
        for step, r in m["steps"].items():
            per_seed = r["quality_per_seed"]
            lines.append(
                f"| {step} | {fmt(r['epoch_wall_s'], 1)} | {fmt(r['epoch_cpu_s'], 1)} | {fmt(r['samples_per_s'], 0)} "
                f"| {fmt(r['speedup_wall'])}x / {fmt(r['speedup_cpu'])}x "
                f"| {' / '.join(fmt(q['D(c|c)'], 3) for q in per_seed)} "
                f"| {' / '.join(fmt(q['D(c|z)'], 3) for q in per_seed)} |"
            )
        diffs = m["steps"]["fused"]["d_cc_minus_reference"]
        lines += [
            "",
            f"D(c|c) fused - reference after {m['epochs']} epochs, same seed: "
            f"{_join(diffs, '+.3f')} (mean {np.mean(diffs):+.3f}). Both steps of a seed start "
            "from the same weights and draw the same batches and random numbers. Epoch times are medians "
            "over epochs 2.. of every seed (epoch 1 also builds kernels); every epoch with its load average "
            "is in the JSON. `fused+bf16`: the fused step under bf16 autocast (`train.amp: true`) on a CPU "
            "with bf16 instructions.",
            "",
        ]
        lines += flop_lines(m)
    if "volume_speed" in res:
        v = res["volume_speed"]
        lines += [
            f"## 32^3 volumes, batch {v['batch']} (configs/subtomo.yaml: d = 50), {v['data']}",
            "",
            "| step + decoder | decoder params (M) | step wall s | step CPU s | samples/s | vs reference + MLP |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in v["variants"].items():
            lines.append(
                f"| {name} | {fmt(r['decoder_params_M'], 1)} | {fmt(r['step_wall_s'])} | {fmt(r['step_cpu_s'])} "
                f"| {fmt(r['samples_per_s'], 1)} | {fmt(r['speedup_vs_reference_mlp'])}x |"
            )
        lines += ["", "Medians over the timed rounds (one warm-up step each first).", ""]
    if "volume_quality" in res:
        q = res["volume_quality"]
        lines += ["## 3D quality of the two decoders (fused step)", ""]
        if "skipped" in q:
            lines += [q["skipped"], ""]
        else:
            keys = list(next(iter(q["decoders"].values()))["quality"])
            lines += [
                f"phantoms3d, {q['n_train']} training volumes, {q['epochs']} epochs each, interleaved.",
                "",
                "| decoder | epoch wall s | epoch CPU s | "
                + " | ".join(k.replace("|", r"\|") for k in keys)
                + " |",
                "|---|---|---|" + "---|" * len(keys),
            ]
            for name, r in q["decoders"].items():
                lines.append(
                    f"| {name} | {fmt(r['epoch_wall_s'], 1)} | {fmt(r['epoch_cpu_s'], 1)} | "
                    + " | ".join(fmt(r["quality"][k], 3) for k in keys)
                    + " |"
                )
            lines.append("")
    if "memmap" in res:
        mm = res["memmap"]
        lines += [
            "## Memory while embedding from a memory-mapped file",
            "",
            f"{mm['n']} volumes of 32^3 ({fmt(mm['file_gib'], 1)} GiB float32 `.npy`, read lazily: {mm['lazy']}), "
            f"subtomogram encoder, batch {mm['batch_size']}: {fmt(mm['embed_s'], 1)} s "
            f"({fmt(mm['volumes_per_s'], 0)} volumes/s). Peak RSS {fmt(mm['peak_rss_mib'], 0)} MiB "
            f"(of which at most {fmt(mm['peak_rss_anon_mib'], 0)} anonymous and {fmt(mm['peak_rss_file_mib'], 0)} "
            f"file-backed; {fmt(mm['rss_before_mib'], 0)} MiB before the data was opened). Target < 2048 MiB.",
            "",
        ]
    if "errors" in res:
        lines += ["## Parts that failed", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small settings that only check the script")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for every contender (GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="train.seed values: MNIST is trained once per seed"
    )
    p.add_argument("--mnist", type=Path, default=MNIST, help="MNIST .npz")
    p.add_argument("--mnist-epochs", type=int)
    p.add_argument("--volume-rounds", type=int)
    p.add_argument("--volume-epochs", type=int)
    p.add_argument("--phantoms-per-state", type=int)
    p.add_argument("--memmap-n", type=int, help="volumes in the memory-mapped file (default 100000)")
    p.add_argument("--memmap-dir", default=tempfile.gettempdir(), help="where the temporary file goes")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["mnist", "volume-speed", "volume-quality", "memmap", "bf16"],
    )
    p.add_argument("--out", type=Path, help="results file stem (default benchmarks/results/speed[_quick])")
    p.add_argument("--workdir", type=Path, help="run directories (default: a temporary folder)")
    p.add_argument(
        "--report-from", type=Path, metavar="JSON", help="only re-write the .md of a results .json"
    )
    p.add_argument("--embed-worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = (
        {
            "mnist_epochs": 1,
            "volume_rounds": 2,
            "volume_epochs": 1,
            "phantoms_per_state": 10,
            "memmap_n": 2000,
        }
        if args.quick
        else {
            "mnist_epochs": 5,
            "volume_rounds": 5,
            "volume_epochs": 4,
            "phantoms_per_state": 100,
            "memmap_n": 100_000,
        }
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.embed_worker:
        embed_worker(args.embed_worker, device)
        return 0
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.report_from:
        res = json.loads(args.report_from.read_text())
        if "mnist" in res and "gflop_per_step" not in res["mnist"] and args.mnist.exists():
            # Results from before the FLOP count: the count is a property of the code, not of
            # the run, so it can be added afterwards.
            res["mnist"]["gflop_per_step"] = mnist_gflop(args, device)
            args.report_from.write_text(json.dumps(res, indent=2, default=str))
        args.report_from.with_suffix(".md").write_text(report(res, res.get("command", command)))
        print(f"wrote {args.report_from.with_suffix('.md')}")
        return 0
    res: dict[str, Any] = {
        "quick": args.quick,
        "command": command,
        "environment": environment(device),
        "args": vars(args),
    }
    res["args"] = {k: str(v) for k, v in res["args"].items()}
    parts = [
        ("mnist", lambda w: mnist_part(args, device, w)),
        ("volume_speed", lambda w: volume_speed(args, device)),
        ("volume_quality", lambda w: volume_quality(args, device, w)),
        ("memmap", lambda w: memmap_rss(args, device)),
    ]
    with tempfile.TemporaryDirectory(prefix="dc_speed_") as tmp:
        workdir = args.workdir or Path(tmp)
        for name, run in parts:
            if name.replace("_", "-") in args.skip or (name == "mnist" and not args.mnist.exists()):
                continue
            t0 = time.perf_counter()
            try:
                res[name] = run(workdir)
            except Exception as e:  # one failing part must not lose the others' numbers
                res.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
                print(f"{name} failed: {e}", file=sys.stderr)
            res.setdefault("part_seconds", {})[name] = time.perf_counter() - t0
    res["load_avg_end"] = load_avg()
    stem = args.out or RESULTS / ("speed_quick" if args.quick else "speed")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    stem.with_suffix(".md").write_text(report(res, command))
    print(f"wrote {stem.with_suffix('.md')} and .json")
    return 1 if "errors" in res else 0


if __name__ == "__main__":
    sys.exit(main())
