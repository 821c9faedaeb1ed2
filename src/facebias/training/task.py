"""`train(cfg)`: one training run, from a composed Hydra config to a finished run directory.

The run dir holds `run.json` (the manifest every analysis reads: kind train, config, checkpoints, data,
W&B identity), `config.yaml`, `checkpoints/{best,last}.ckpt` and `metrics.json` (per-cell test accuracy at
the 0.5 threshold and the stereotypical vs counter-stereotypical gap); W&B gets the same through the
stage's `wandb_session`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def resolve_precision(trainer_cfg: DictConfig) -> str:
    import torch

    precision = trainer_cfg.get("precision", "auto")
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.cuda.is_available() and trainer_cfg.accelerator != "cpu" else "32-true"


def quiet_known_warnings() -> None:
    """Silence warnings that are expected by design (they would bury the summary)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def check_config(cfg: DictConfig) -> None:
    """Fail on a bad option before any data is generated, cached or trained on."""
    from facebias.data.bias import GRAYSCALE, validate_p

    data = cfg.data
    validate_p(data.p, "data.p")
    for q in data.get("sweep") or []:
        validate_p(q, "data.sweep entry")
    if not data.targets:
        raise ValueError("data.targets is empty: name at least one attribute to classify, e.g. data.targets=[Male]")
    if data.source == "synthfaces":
        from facebias.data.synthfaces import ATTRIBUTE_NAMES

        wanted = [*data.targets, *([data.concept] if data.concept not in (None, GRAYSCALE) else []),
                  *([data.protected] if data.protected not in (None, data.concept) else [])]
        for name in wanted:
            if name not in ATTRIBUTE_NAMES:
                raise KeyError(f"unknown attribute {name!r} for SynthFaces (in data.targets, data.concept or "
                               f"data.protected); available: {', '.join(ATTRIBUTE_NAMES)}")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test and record one configuration; returns the metrics written to metrics.json."""
    import hydra
    import pytorch_lightning as pl
    import torch

    from facebias.reporting.console import get_logger
    from facebias.reporting.files import write_json_atomic
    from facebias.reporting.wandb import plain_config, run_identity, wandb_session
    from facebias.runs import TRAIN, RunRecord, output_dir
    from facebias.training.callbacks import build_callbacks
    from facebias.training.loggers import build_loggers, wandb_logger
    from facebias.training.report import log_bias_grid, log_test_table, print_summary

    check_config(cfg)
    quiet_known_warnings()
    started = time.time()
    out = output_dir()
    out.mkdir(parents=True, exist_ok=True)
    identity = run_identity(cfg)  # evaluate.py and the analyses log into the same group
    record = RunRecord(kind=TRAIN, status="running", config=plain_config(cfg), wandb=identity,
                       checkpoints={"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"},
                       result="metrics.json")
    record.write(out)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.set_float32_matmul_precision("high")

    with wandb_session(cfg, out, identity, "train", plain_config(cfg)) as session:
        datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
        datamodule.setup("fit")
        get_logger(__name__).info(datamodule.splits.summary())
        record.data = datamodule.describe()
        record.write(out)
        model = hydra.utils.instantiate(cfg.model, _convert_="all", targets=list(cfg.data.targets),
                                        channels_last=torch.cuda.is_available())
        if torch.cuda.is_available():
            model = model.to(memory_format=torch.channels_last)
        loggers = build_loggers(cfg, out, session)
        trainer_kwargs = {k: v for k, v in plain_config(cfg.trainer).items() if k != "_target_"}
        trainer_kwargs["precision"] = resolve_precision(cfg.trainer)
        trainer = pl.Trainer(**trainer_kwargs, logger=loggers or False,
                             callbacks=build_callbacks(cfg.callbacks, out))
        wandb = wandb_logger(loggers)
        if wandb is not None and cfg.logger.wandb.log_images:
            log_bias_grid(wandb, datamodule)
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = final_metrics(cfg, trainer, model, datamodule, out)
        metrics["seconds"] = round(time.time() - started, 1)
        metrics["wandb"] = identity
        write_json_atomic(out / "metrics.json", metrics)
        if wandb is not None:
            log_test_table(wandb, metrics)
    record.status = "finished"
    record.write(out)
    print_summary(out, metrics, session.sync_command)
    return metrics


def final_metrics(cfg, trainer, model, datamodule, out: Path) -> dict[str, Any]:
    """Score the best checkpoint on val and the balanced test split; per-cell accuracy and the gap."""
    from facebias.metrics import cell_accuracy, stereotype_gap
    from facebias.metrics.summary import summarize_predictions
    from facebias.results import SCHEMA_VERSION
    from facebias.training.predictions import collect_predictions

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        model = type(model).load_from_checkpoint(best, weights_only=True)
    description = datamodule.describe()
    metrics: dict[str, Any] = {"schema": SCHEMA_VERSION, "experiment": cfg.get("exp_name"), "family": cfg.get("family"),
                               "data": description, "best_checkpoint": best,
                               "last_checkpoint": str(out / "checkpoints" / "last.ckpt"), "threshold": 0.5}
    splits = ("val", "test") if cfg.get("test", True) else ("val",)
    for split in splits:
        loader = getattr(datamodule, f"{split}_dataloader")()
        pred = collect_predictions(trainer, model, loader)
        metrics[split] = summarize_predictions(pred, list(cfg.data.targets), threshold=0.5)
        if split == "test":
            scores = (pred["score"][:, 0] > 0.5).astype(int)
            cells = cell_accuracy(scores, pred["target"][:, 0].astype(int), pred["concept"].astype(int))
            metrics["test_cells"] = cells
            metrics["test_gap"] = stereotype_gap(cells)
    return metrics
