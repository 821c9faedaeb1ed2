"""Every experiment composes; options that scale out compose; bad overrides fail with a clear message."""

import subprocess
import sys

import pytest
from conftest import REPO, compose

PS = (50, 60, 70, 80, 90, 100)


@pytest.mark.parametrize("name", [f"p{p}" for p in PS] + [f"gray_p{p}" for p in PS])
def test_every_experiment_composes(name):
    cfg = compose([f"+experiment={name}"])
    assert cfg.exp_name == name
    assert cfg.data.targets == ["Male"]
    assert cfg.data.concept == ("grayscale" if name.startswith("gray") else "Eyeglasses")
    assert cfg.data.p == int(name.split("p")[-1])
    assert cfg.data.source == "synthfaces"


def test_experiment_runs_on_celeba_by_changing_data_only():
    cfg = compose(["+experiment=p80", "data=celeba", "data.root=/datasets/celeba"])
    assert cfg.data.source == "celeba" and cfg.data.root == "/datasets/celeba"
    assert cfg.data.concept == "Eyeglasses" and cfg.data.p == 80


def test_scale_out_options_compose():
    cfg = compose(["+experiment=p80", "trainer=ddp", "hydra/launcher=slurm"])
    assert cfg.trainer.strategy == "ddp_spawn" and cfg.trainer.devices == -1
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1


def run_train(*overrides: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *overrides], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_unknown_experiment_is_named():
    result = run_train("+experiment=p85", "--cfg", "job")
    assert result.returncode != 0
    assert "experiment/p85" in result.stderr and "p80" in result.stderr  # Hydra lists the options


@pytest.mark.parametrize(("override", "message"), [
    ("data.p=40", "data.p=40 is outside [50, 100]"),
    ("data.p=101", "data.p=101 is outside [50, 100]"),
    ("data.concept=Eyeglases", "unknown attribute 'Eyeglases'"),
    ("data.targets=[Mal]", "unknown attribute 'Mal'"),
])
def test_bad_overrides_fail_before_any_work(override, message, tmp_path):
    result = run_train("+experiment=p80", override, f"paths.root_dir={tmp_path}", "logger=none")
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "data").exists()  # failed before generating or caching anything
