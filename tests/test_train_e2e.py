"""train.py end to end at tiny scale: fit, checkpoints, resume, multirun with one W&B run per job, and the
known answer of the controlled experiments (a P=100 model is far more biased than a P=50 model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY
from wandb_records import find_runs, read_run


def run_train(root: Path, data_dir: Path, *overrides: str, env: dict | None = None, timeout: int = 300):
    flags = [o for o in overrides if o.startswith("-")]  # Hydra wants -m before the overrides
    # launched from `root`, as a user would from their project dir: outputs land under the launch dir
    cmd = [sys.executable, str(REPO / "train.py"), *flags, *TINY, f"paths.data_dir={data_dir}",
           *(o for o in overrides if not o.startswith("-"))]
    root.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("metrics.json"))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("fit")
    result = run_train(root, data_dir, "+experiment=p80", "trainer.max_epochs=2")
    (run_dir,) = run_dirs(root)
    return run_dir, result


def test_fit_writes_run_dir(fitted):
    run_dir, result = fitted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "config.yaml").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "checkpoints" / "best.ckpt").exists()
    cells = metrics["test_cells"]
    assert set(cells) == {"y1_c1", "y1_c0", "y0_c1", "y0_c0"}
    counts = {v["count"] for v in cells.values()}
    assert len(counts) == 1 and counts.pop() > 0  # the test split is balanced over the four cells
    assert metrics["data"]["P"] == 80 and metrics["data"]["concept"] == "Eyeglasses"
    assert {"stereotypical", "counter_stereotypical", "gap"} <= set(metrics["test_gap"])
    assert "run dir:" in result.stdout  # the one-screen summary


def test_checkpoint_loads_with_weights_only(fitted):
    run_dir, _ = fitted
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["targets"] == ["Male"]
    from facebias.models.classifier import AttributeClassifier

    model = AttributeClassifier.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 1)


def test_resume_from_last_checkpoint(fitted, tmp_path, data_dir):
    run_dir, _ = fitted
    last = run_dir / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True, map_location="cpu")
    assert before["epoch"] == 1  # two epochs: 0 and 1
    run_train(tmp_path, data_dir, "+experiment=p80", "trainer.max_epochs=3", f"ckpt_path={last}")
    (resumed,) = run_dirs(tmp_path)
    after = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert after["epoch"] == 2  # one more epoch, not three
    assert after["global_step"] == before["global_step"] * 3 // 2


def test_multirun_gives_one_wandb_run_per_job(tmp_path, data_dir):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir"), "WANDB_SILENT": "true"}
    result = run_train(tmp_path, data_dir, "-m", "+experiment=p50,p100", "logger=wandb",
                       "logger.wandb.log_images=true", env=env)
    runs = find_runs(tmp_path / "multirun")
    assert len(runs) == 2, result.stdout[-2000:]
    records = [read_run(path) for path in runs]
    assert {r["job_type"] for r in records} == {"train"}
    groups = {r["group"] for r in records}
    assert len(groups) == 1 and "sweep" in groups.pop()  # grouped by the sweep
    assert sorted(r["config"]["exp_name"] for r in records) == ["p100", "p50"]
    for record in records:  # each run holds its own job's numbers, not the other's
        logged = set().union(*record["history"]) if record["history"] else set()
        assert "train/loss_epoch" in logged and "val/AP" in logged
        assert "test/gap" in record["summary"]
    assert "wandb sync" in result.stdout


@pytest.mark.slow
def test_p100_model_is_more_biased_than_p50(tmp_path, data_dir):
    """The reason the toolkit exists: the planted shortcut must show at P=100 and not at P=50."""
    gaps = {}
    for p in (50, 100):
        root = tmp_path / f"p{p}"
        run_train(root, data_dir, f"+experiment=p{p}", "trainer.max_epochs=6", "data.batch_size=32",
                  "model.optimizer.lr=3e-3")
        (run_dir,) = run_dirs(root)
        gaps[p] = json.loads((run_dir / "metrics.json").read_text())["test_gap"]["gap"]
    assert gaps[100] > 0.3, gaps  # measured: 0.91 at P=100, -0.03 at P=50 (8 epochs)
    assert gaps[100] > gaps[50] + 0.25, gaps


def test_same_seed_gives_identical_weights_on_cpu(fitted, tmp_path, data_dir):
    run_dir, _ = fitted
    run_train(tmp_path, data_dir, "+experiment=p80", "trainer.max_epochs=2")
    (again,) = run_dirs(tmp_path)
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    second = torch.load(again / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][key]), key


@pytest.mark.slow
def test_optuna_search_runs_trials_and_records_the_best(tmp_path, data_dir):
    """`-m hparams_search=optuna`: each trial is a train.py job returning val/AP; optuna records the best."""
    import yaml

    result = run_train(tmp_path, data_dir, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    jobs = run_dirs(tmp_path / "multirun")
    assert len(jobs) == 2, result.stdout[-2000:]
    aps = [json.loads((job / "metrics.json").read_text())["val"]["AP"] for job in jobs]
    assert all(0.0 <= ap <= 1.0 for ap in aps)
    (results,) = (tmp_path / "multirun").rglob("optimization_results.yaml")
    best = yaml.safe_load(results.read_text())
    assert best["name"] == "optuna" and "model.optimizer.lr" in best["best_params"]
    assert best["best_value"] == pytest.approx(max(aps))  # direction: maximize, val/AP as train.py returns it


def test_cells_split_by_the_protected_attribute_when_nothing_is_planted(tmp_path, data_dir):
    """The reference's setting (an attribute classifier, protected Male, no concept: debias_attr's): metrics.json's
    cells are Smiling x Male, equal to accuracies recomputed here from the best checkpoint and the label table
    (they used to be split by the absent concept: every face in one group, half the cells empty)."""
    from omegaconf import OmegaConf

    from facebias.data.datamodule import FaceDataModule
    from facebias.models.classifier import AttributeClassifier

    run_train(tmp_path, data_dir, "data.targets=[Smiling]", "data.protected=Male", "data.concept=null")
    (run_dir,) = run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["cells_by"] == "Male"
    data = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml").data, resolve=True)
    data.pop("_target_")
    datamodule = FaceDataModule(**data)
    datamodule.setup()
    rows = datamodule.splits.test.rows
    smiling, male = datamodule.table.attr("Smiling")[rows], datamodule.table.attr("Male")[rows]
    model = AttributeClassifier.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=True,
                                                     map_location="cpu").eval()
    scores = []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            scores.append(torch.sigmoid(model(model.preprocess(batch)["image"].float()))[:, 0])
    correct = (torch.cat(scores).numpy() > 0.5) == (smiling == 1)
    for t in (0, 1):
        for g in (0, 1):
            members = (smiling == t) & (male == g)
            cell = metrics["test_cells"][f"y{t}_c{g}"]
            assert cell["count"] == members.sum() > 0
            assert abs(cell["accuracy"] - correct[members].mean()) < 1e-9, (t, g)
    assert metrics["test_gap"]["gap"] is not None
