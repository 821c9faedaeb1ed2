"""Every experiment composes; options that scale out compose; bad overrides fail with a clear message."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, TINY, compose

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


DEBUG = ("default", "fdr", "limit", "overfit", "profiler")


@pytest.mark.parametrize("name", DEBUG)
def test_every_debug_config_composes(name):
    cfg = compose([f"debug={name}", "+experiment=p80"])
    assert cfg.task_name == "debug"  # outputs/debug/, away from real runs
    assert cfg.logger == {} and cfg.callbacks.progress_bar is None
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1 and not cfg.trainer.enable_progress_bar
    assert cfg.exp_name == "p80"  # an experiment still applies on top
    expected = {"fdr": ("fast_dev_run", True), "limit": ("limit_train_batches", 5),
                "overfit": ("overfit_batches", 3), "profiler": ("profiler", "simple")}
    if name in expected:
        key, value = expected[name]
        assert cfg.trainer[key] == value
    assert cfg.model.scheduler.T_max == cfg.trainer.max_epochs


def test_hparams_search_composes():
    cfg = compose(["hparams_search=optuna"])
    assert cfg.optimized_metric == "val/AP"
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert {"model.optimizer.lr", "data.batch_size"} <= set(sweeper.params)


def test_optimized_metric_lookup():
    from facebias.training.objective import UnknownMetric, metric_value

    metrics = {"val": {"AP": 0.75, "acc": 0.5}, "test_gap": {"gap": 0.25}, "experiment": "p80", "seconds": 3.0}
    assert metric_value(metrics, "val/AP") == 0.75
    assert metric_value(metrics, "test_gap/gap") == 0.25
    with pytest.raises(KeyError) as error:
        metric_value(metrics, "val/auc")
    assert isinstance(error.value, UnknownMetric)
    assert "val/AP, val/acc, test_gap/gap, seconds" in str(error.value)  # the names there are
    with pytest.raises(KeyError, match="experiment"):
        metric_value(metrics, "experiment")  # not a number


def test_optimizer_and_callbacks_come_from_target_configs(tmp_path):
    import hydra
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar

    from facebias.training.callbacks import build_callbacks

    out = tmp_path / "run"
    cfg = compose(["model.backbone=small_cnn", "model.optimizer._target_=torch.optim.AdamW",
                   "model.optimizer.weight_decay=0.01", "trainer.max_epochs=7", f"paths.output_dir={out}"])
    model = hydra.utils.instantiate(cfg.model, _convert_="all", targets=["Male"])
    assert type(model.hparams.optimizer) is dict and type(model.hparams.scheduler) is dict  # weights_only-safe
    torch.save({"hyper_parameters": dict(model.hparams)}, tmp_path / "h.pt")
    assert torch.load(tmp_path / "h.pt", weights_only=True)["hyper_parameters"]["optimizer"]["lr"] == 1e-3
    built = model.configure_optimizers()
    opt, sched = built["optimizer"], built["lr_scheduler"]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.01
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max == 7
    no_sched = compose(["model.backbone=small_cnn", "model.scheduler=null"])
    model = hydra.utils.instantiate(no_sched.model, _convert_="all", targets=["Male"])
    assert isinstance(model.configure_optimizers(), torch.optim.Adam)

    best, last, bar = build_callbacks(cfg.callbacks, out)
    assert isinstance(best, ModelCheckpoint) and best.monitor == "val/AP" and best.filename == "best"
    assert isinstance(last, ModelCheckpoint) and last.monitor is None and last.filename == "last"
    assert best.dirpath == last.dirpath == str(out / "checkpoints")
    assert isinstance(bar, RichProgressBar)
    here = f"paths.output_dir={out}"
    assert len(build_callbacks(compose([here, "~callbacks.progress_bar"]).callbacks, out)) == 2
    assert len(build_callbacks(compose([here, "callbacks.progress_bar=null"]).callbacks, out)) == 2
    relative = compose([here, "callbacks.last_checkpoint.dirpath=ckpts"]).callbacks
    assert build_callbacks(relative, out)[1].dirpath == str(out / "ckpts")  # under the run dir, not the cwd
    with pytest.raises(ValueError, match="callbacks.progress_bar='none'.*~callbacks.progress_bar"):
        build_callbacks(compose([here, "callbacks.progress_bar=none"]).callbacks, out)


@pytest.mark.parametrize("switch", ["debug=fdr", "++trainer.fast_dev_run=true"])
def test_fast_dev_run_end_to_end(switch, tmp_path, data_dir):
    """One batch of everything, no checkpoint written: the metrics come from the in-memory model."""
    result = run_train(*TINY, f"paths.data_dir={data_dir}", f"paths.root_dir={tmp_path}", switch, timeout=300)
    assert result.returncode == 0, result.stderr[-5000:]
    (metrics_path,) = tmp_path.rglob("metrics.json")
    assert metrics_path.parent.parent.name == ("debug" if switch.startswith("debug") else "train")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["best_checkpoint"] == "" and not (metrics_path.parent / "checkpoints").exists()
    assert {"AP", "acc"} <= set(metrics["val"]) and "test_cells" in metrics
