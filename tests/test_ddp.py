"""Distributed training: `trainer=ddp` on two CPU processes (gloo) scores like one process, and the SLURM
configs (several GPUs and nodes per job) compose into what Lightning's SLURM environment expects."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, compose

from facebias.reporting.files import json_safe

# ------------------------------------------------------------------------------------------------ SLURM


def test_slurm_configs_compose_beside_the_one_gpu_launcher():
    cfg = compose(["+experiment=p80", "trainer=ddp_slurm", "hydra/launcher=slurm_ddp", "trainer.devices=4",
                   "trainer.num_nodes=2", "hydra.launcher.partition=gpu"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu" and cfg.trainer.num_nodes == 2
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.tasks_per_node == launcher.gpus_per_node == 4 and launcher.nodes == 2  # one task per GPU
    one_gpu = compose(["+experiment=p80", "hydra/launcher=slurm"]).hydra.launcher  # today's sweep launcher
    assert one_gpu.tasks_per_node == one_gpu.gpus_per_node == 1 and one_gpu.nodes == 1


SLURM_TASK = """
import json
import pytorch_lightning as pl
from conftest import compose
from omegaconf import OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities import rank_zero_only

cfg = compose(["trainer=ddp_slurm", "trainer.devices=2", "trainer.num_nodes=2", "trainer.accelerator=cpu"])
kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items()
          if k not in ("_target_", "default_root_dir", "precision", "cpu_bf16")}
trainer = pl.Trainer(**{**kwargs, "sync_batchnorm": False}, logger=False, enable_progress_bar=False)
env = trainer.strategy.cluster_environment
print(json.dumps({"slurm": isinstance(env, SLURMEnvironment), "strategy": type(trainer.strategy).__name__,
                  "world": trainer.world_size, "rank": trainer.global_rank, "local": trainer.local_rank,
                  "node": trainer.node_rank, "main": env.main_address, "lead": rank_zero_only.rank == 0}))
"""


def test_slurm_tasks_form_one_ddp_group():
    """What a task of a 2-node x 2-GPU job sees (CPU devices stand in for GPUs): SLURM's variables make it
    rank 3 of 4 under plain ddp, not a process of its own, and not the lead that writes the run dir."""
    env = {**os.environ, "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "3",
           "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NODELIST": "gpu[01-02]", "SLURM_JOB_NAME": "train",
           "SLURM_JOB_ID": "42"}
    result = subprocess.run([sys.executable, "-c", SLURM_TASK], cwd=REPO / "tests", env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"slurm": True, "strategy": "DDPStrategy", "world": 4, "rank": 3, "local": 1, "node": 1,
                    "main": "gpu01", "lead": False}


# -------------------------------------------------------------------------------------- two CPU processes


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_scores_like_one_process(tmp_path, data_dir):
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from facebias.metrics import cell_accuracy
    from facebias.metrics.summary import summarize_predictions
    from facebias.models.classifier import AttributeClassifier
    from facebias.training.predictions import collect_predictions

    overrides = [*TINY, f"paths.data_dir={data_dir}", "+experiment=p80", "trainer.max_epochs=2"]
    cmd = [sys.executable, str(REPO / "train.py"), *overrides, "logger=csv", "trainer=ddp",
           "trainer.accelerator=cpu", "trainer.devices=2"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr  # two processes trained
    assert "sync_dist=True" not in result.stderr  # every epoch-level log was synced across them
    (run_dir,) = sorted(p.parent for p in tmp_path.rglob("metrics.json"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best, last = run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"
    assert metrics["best_checkpoint"] == str(best)
    from facebias.training.task import cpu_supports_bf16
    assert metrics["precision"] == ("bf16-mixed" if cpu_supports_bf16() else "32-true")  # the default trains

    # one process, one device, the same checkpoints (as evaluate.py scores a run)
    cfg = compose([*overrides, f"paths.output_dir={tmp_path / 'one'}"])
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup()
    scorer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)

    def one_process(checkpoint: Path, split: str) -> dict:
        model = AttributeClassifier.load_from_checkpoint(checkpoint, weights_only=True)
        return collect_predictions(scorer, model, getattr(datamodule, f"{split}_dataloader")())

    for split in ("val", "test"):
        pred = one_process(best, split)
        assert metrics[split] == json_safe(summarize_predictions(pred, ["Male"], threshold=0.5)), split
    pred = one_process(best, "test")
    cells = cell_accuracy((pred["score"][:, 0] > 0.5).astype(int), pred["target"][:, 0].astype(int),
                          pred["concept"].astype(int))
    assert metrics["test_cells"] == json_safe(cells)
    assert sum(c["count"] for c in cells.values()) == metrics["data"]["n_test"]  # each test image once

    # what training logged and chose its checkpoint by: the whole val split's numbers, not a rank's half
    logged = {int(row["epoch"]): row for row in read_csv_rows(run_dir / "csv" / "metrics.csv") if row["val/AP"]}
    assert sorted(logged) == [0, 1]
    for checkpoint in (best, last):
        saved = torch.load(checkpoint, weights_only=True, map_location="cpu")
        expected = summarize_predictions(one_process(checkpoint, "val"), ["Male"], threshold=0.5)
        row = logged[saved["epoch"]]
        for key in ("AP", "acc", "acc_y1_c1", "acc_y1_c0", "acc_y0_c1", "acc_y0_c0", "gap"):
            assert float(row[f"val/{key}"]) == pytest.approx(expected[key], abs=1e-6), (checkpoint.name, key)
    monitor = next(state for key, state in torch.load(best, weights_only=True)["callbacks"].items()
                   if "val/AP" in key)
    expected_ap = summarize_predictions(one_process(best, "val"), ["Male"], threshold=0.5)["AP"]
    assert float(monitor["best_model_score"]) == pytest.approx(expected_ap, abs=1e-6)
    assert metrics["val"]["AP"] == pytest.approx(expected_ap)
