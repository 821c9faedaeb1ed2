"""Resuming reproduces the run: a tiny run stopped after its first epoch and resumed from last.ckpt ends with
the same metrics.json numbers (and weights) as the same run uninterrupted, on CPU. The pieces behind it: the
training order is a function of (seed, epoch), every random state is saved in the checkpoint, and the best
checkpoint so far follows the run into its new run dir."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, TINY

from facebias.data.datamodule import EpochShuffle
from facebias.training import rng
from facebias.training.callbacks import ModelCheckpoint

# ---------------------------------------------------------------------------------------------- units


def test_shuffle_is_a_function_of_seed_and_epoch():
    data = list(range(50))
    first, again = EpochShuffle(data, seed=3), EpochShuffle(data, seed=3)
    orders = []
    for epoch in range(3):
        first.set_epoch(epoch)
        orders.append(list(first))
    again.set_epoch(2)  # a resumed run starts at epoch 2 without having drawn epochs 0 and 1
    assert list(again) == orders[2]
    assert sorted(orders[0]) == data and orders[0] != orders[1] != orders[2]
    other = EpochShuffle(data, seed=4)
    other.set_epoch(2)
    assert list(other) != orders[2]
    # two ranks take alternate items of the same permutation, padded to equal length
    shares = [EpochShuffle(data[:49], seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for share in shares:
        share.set_epoch(1)
    a, b = list(shares[0]), list(shares[1])
    assert len(a) == len(b) == 25 and set(a) | set(b) == set(range(49))


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # numpy caches a gaussian: part of its state
    torch.save({"random_state": rng.capture()}, tmp_path / "c.ckpt")
    expected = (torch.rand(3), np.random.normal(size=3), [random.random() for _ in range(3)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    rng.restore(torch.load(tmp_path / "c.ckpt", weights_only=True)["random_state"])
    got = (torch.rand(3), np.random.normal(size=3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_best_checkpoint_follows_a_run_resumed_into_a_new_dir(tmp_path):
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    old.mkdir(parents=True)
    (old / "best.ckpt").write_bytes(b"epoch 0 weights")
    saved = ModelCheckpoint(dirpath=str(old), filename="best", monitor="val/AP", mode="max")
    saved.best_model_score = saved.current_score = torch.tensor(0.9)
    saved.best_model_path = saved.kth_best_model_path = str(old / "best.ckpt")
    saved.best_k_models = {str(old / "best.ckpt"): torch.tensor(0.9)}
    state = saved.state_dict()
    assert "random_state" in state

    resumed = ModelCheckpoint(dirpath=str(new), filename="best", monitor="val/AP", mode="max")
    resumed.load_state_dict(state)
    assert float(resumed.best_model_score) == pytest.approx(0.9)  # Lightning's own would forget it
    assert resumed.best_model_path == str(new / "best.ckpt")
    trainer = SimpleNamespace(is_global_zero=True, strategy=SimpleNamespace(barrier=lambda name=None: None))
    resumed.on_train_start(trainer, None)
    assert (new / "best.ckpt").read_bytes() == b"epoch 0 weights"

    last = ModelCheckpoint(dirpath=str(new), filename="last", monitor=None)
    last.load_state_dict({**state, "monitor": None})  # nothing to carry, no warning
    assert last.best_model_path == ""


# ------------------------------------------------------------------------------------------ end to end


def run_train(root: Path, data_dir: Path, *overrides: str) -> Path:
    cmd = [sys.executable, str(REPO / "train.py"), *TINY, f"paths.data_dir={data_dir}", "+experiment=p80",
           "trainer.max_epochs=2", *overrides]
    root.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    (run_dir,) = sorted(p.parent for p in root.rglob("metrics.json"))
    return run_dir


def numbers(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {key: metrics[key] for key in ("val", "test", "test_cells", "test_gap")}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True, map_location="cpu")["state_dict"]


def test_resumed_run_ends_as_the_uninterrupted_run(tmp_path, data_dir):
    full = run_train(tmp_path / "full", data_dir)
    steps_per_epoch = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] // 2

    # the same config stopped after its first epoch (max_epochs, hence the cosine schedule's T_max, unchanged)
    first = run_train(tmp_path / "first", data_dir, f"+trainer.max_steps={steps_per_epoch}")
    stopped = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["epoch"] == 0 and stopped["global_step"] == steps_per_epoch
    assert any("random_state" in state for state in stopped["callbacks"].values())

    resumed = run_train(tmp_path / "resumed", data_dir, f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}")
    assert numbers(resumed) == numbers(full)
    for name in ("last.ckpt", "best.ckpt"):  # the same weights, and the same epoch chosen as best
        expected, got = weights(full / "checkpoints" / name), weights(resumed / "checkpoints" / name)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), name
