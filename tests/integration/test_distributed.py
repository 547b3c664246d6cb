"""Two-process data-parallel training on CPU (gloo), launched by torchrun.

- the CLI under ``torchrun -m dualcontrast.cli.main train``: one run directory, written once
  (one log row per epoch, one checkpoint holding both ranks' RNG states), and ``--resume``;
- the library under torchrun (this file run as the worker script): gradients are averaged,
  both replicas end with identical weights, and a run interrupted and resumed ends with the
  same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

TINY = {"n_train_per_cell": 20, "n_test_per_cell": 10}  # 400 training images of 28x28
CLI_SETTINGS = [
    "--data",
    "shapes2d",
    "--batch-size",
    "50",
    "--device",
    "cpu",
    "--no-eval",
    "--set",
    f"data.params={TINY}",
    "--set",
    "model.content_dim=4",
    "--set",
    "model.transform_dim=3",
    "--set",
    "train.progress=false",
]


def torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def log_epochs(run: Path) -> list[str]:
    with open(run / "log.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


def test_cli_under_torchrun_writes_one_run_and_resumes(tmp_path):
    run = tmp_path / "run"
    torchrun(
        ["-m", "dualcontrast.cli.main", "train", *CLI_SETTINGS, "--epochs", "2", "-o", str(run)], tmp_path
    )
    assert log_epochs(run) == ["1", "2"]  # rank 0 alone logs
    # Rank 0 alone writes checkpoints: last.pt and the best validation epoch's best.pt.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and len(ckpt["rng_ranks"]) == 2
    assert not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])

    torchrun(
        ["-m", "dualcontrast.cli.main", "train", *CLI_SETTINGS, "--epochs", "3", "--resume", "-o", str(run)],
        tmp_path,
    )
    assert log_epochs(run) == ["1", "2", "3"]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 3


def test_restarts_under_torchrun(tmp_path):
    """train.restarts with two processes: every restart trained by both, rank 0 alone choosing
    (with train.restart_epochs, the choice sent to every rank, which train the kept one on)."""
    run = tmp_path / "run"
    torchrun(["-m", "dualcontrast.cli.main", "train", *CLI_SETTINGS, "--epochs", "2", "--set", "train.restarts=2",
              "--set", "train.restart_epochs=1", "-o", str(run)], tmp_path)  # fmt: skip
    assert sorted(p.name for p in (run / "restarts").iterdir()) == ["seed0", "seed1"]
    with open(run / "restarts.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["chosen"] for r in table].count("True") == 1
    assert sorted(r["epochs"] for r in table) == ["1", "2"]
    assert log_epochs(run) == ["1", "2"] and (run / "checkpoints" / "best.pt").exists()


def test_replicas_agree_and_resume_is_exact(tmp_path):
    torchrun([__file__, str(tmp_path)], tmp_path)
    for rank in (0, 1):
        assert (tmp_path / f"averaged_{rank}.txt").read_text() == "ok"
    straight = [torch.load(tmp_path / f"straight_{r}.pt") for r in (0, 1)]
    resumed = [torch.load(tmp_path / f"resumed_{r}.pt") for r in (0, 1)]
    for key in straight[0]:
        assert torch.equal(straight[0][key], straight[1][key]), f"replicas differ: {key}"
        assert torch.equal(resumed[0][key], resumed[1][key]), f"replicas differ after resume: {key}"
        assert torch.equal(straight[0][key], resumed[0][key]), f"resume is not exact: {key}"
    # Training moved the weights (the comparison above is not between untouched models).
    first = torch.load(tmp_path / "initial_0.pt")
    assert any(not torch.equal(first[k], straight[0][k]) for k in first)


# --------------------------------------------------------------------------- worker


def _worker(out: Path) -> None:
    """Run by torchrun in each of the two processes."""
    from torch import nn

    from dualcontrast.config import build_config
    from dualcontrast.data import load_data
    from dualcontrast.rundir import RunDir
    from dualcontrast.training import Trainer
    from dualcontrast.training.distributed import GradientAverager, init_distributed, shutdown

    ctx = init_distributed("cpu")
    assert ctx.world_size == 2 and ctx.backend == "gloo"
    rank = ctx.rank

    # Gradient averaging: rank r holds gradient r + 1 everywhere; the mean is 1.5.
    net = nn.Linear(3, 2)
    for p in net.parameters():
        p.grad = torch.full_like(p, rank + 1.0)
    GradientAverager(ctx.world_size, bucket_bytes=16)(net.parameters())  # several buckets
    ok = all(torch.equal(p.grad, torch.full_like(p, 1.5)) for p in net.parameters())
    (out / f"averaged_{rank}.txt").write_text("ok" if ok else "wrong")

    splits = load_data(name="shapes2d", params=TINY)

    def cfg(epochs: int):
        return build_config(
            {
                "model": {"content_dim": 4, "transform_dim": 3},
                "train": {"epochs": epochs, "batch_size": 50, "lr": 1e-3, "progress": False, "seed": 3},
            }
        )

    def trainer(epochs: int, name: str) -> Trainer:
        run = RunDir.create(out / name, overwrite=True) if rank == 0 else RunDir(out / name)
        torch.distributed.barrier()
        return Trainer(cfg(epochs), run, splits, ctx.device, rank=rank, world_size=ctx.world_size)

    t = trainer(2, "straight")
    torch.save(t.model.state_dict(), out / f"initial_{rank}.pt")
    torch.save(t.fit().model.state_dict(), out / f"straight_{rank}.pt")

    trainer(1, "split").fit()  # "interrupted" after one epoch
    torch.distributed.barrier()  # rank 0's checkpoint is on disk
    t = Trainer(cfg(2), RunDir(out / "split"), splits, ctx.device, rank=rank, world_size=ctx.world_size)
    t.resume()
    torch.save(t.fit().model.state_dict(), out / f"resumed_{rank}.pt")
    shutdown(ctx)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
