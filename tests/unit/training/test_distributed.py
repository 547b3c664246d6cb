"""The distributed helpers that need no second process: launcher environment, the single-process
context, gradient buckets, one-process averaging."""

from __future__ import annotations

import os

import torch

from dualcontrast.training.distributed import GradientAverager, _buckets, env_ranks, init_distributed


def test_launcher_environment(monkeypatch):
    # env_ranks fills RANK / WORLD_SIZE / MASTER_PORT in from SLURM's variables; on a copy of the
    # environment those writes end with the test instead of reaching later tests' runs.
    monkeypatch.setattr(os, "environ", os.environ.copy())
    for var in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "SLURM_NTASKS",
        "SLURM_PROCID",
        "SLURM_LOCALID",
    ):
        monkeypatch.delenv(var, raising=False)
    assert env_ranks() == (0, 1, 0)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert env_ranks() == (0, 1, 0)  # several SLURM tasks alone do not start a process group
    monkeypatch.setenv("MASTER_ADDR", "node1")
    assert env_ranks() == (3, 4, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert env_ranks() == (1, 2, 0)  # torchrun's variables win


def test_single_process_context(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed("cpu")
    assert not ctx.enabled and ctx.is_main and ctx.device == torch.device("cpu")


def test_gradient_buckets_respect_size_and_dtype():
    ts = [
        torch.zeros(10),
        torch.zeros(10),
        torch.zeros(30),
        torch.zeros(5, dtype=torch.float64),
        torch.zeros(1),
    ]
    sizes = [[t.numel() for t in b] for b in _buckets(ts, max_bytes=100)]
    assert sizes == [[10, 10], [30], [5], [1]]


def test_one_process_averaging_is_a_no_op():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    GradientAverager(1)([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
