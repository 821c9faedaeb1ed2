"""`evaluate(cfg)`: score a trained run on val and test and write its fairness audit.

Per head: the calibrated threshold of the validation scores; on test, AP, DEO, BA, KL (point and
bootstrap median/std), accuracy per (target x concept) cell and the stereotype gap; score histograms
per group and class and a reliability diagram. Outputs: metrics.json, metrics.csv, cells.csv,
categories.csv (protected Male), scores.npz and plots/*.png in the output dir, and the same in W&B
in the training run's group with job_type=eval (finished in a `finally`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from facebias.evaluation.runs import TrainedRun, build_datamodule, load_model, locate_run

SPLITS = ("val", "test")
DATA_OVERRIDES = ("data_dir", "eval_batch_size", "num_workers", "progress", "protected")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Entry of evaluate.py: one run (run= / ckpt=) or a whole sweep (sweep=) into the Hydra output dir."""
    from facebias.training.task import output_dir

    out = output_dir()
    if cfg.get("sweep"):
        if cfg.get("run") or cfg.get("ckpt"):
            raise ValueError("give either sweep=<multirun dir> or run=/ckpt=, not both")
        from facebias.evaluation.sweep import summarise_sweep

        return summarise_sweep(cfg, out)
    run = locate_run(cfg.get("run"), cfg.get("ckpt"), cfg.get("checkpoint", "best"), search=search_dirs(cfg))
    return evaluate_run(run, cfg, out)


def search_dirs(cfg: DictConfig) -> tuple[Path, ...]:
    """Where relative run=/ckpt=/sweep= paths may also live: the project root (paths.root_dir)."""
    root = OmegaConf.select(cfg, "paths.root_dir", throw_on_resolution_failure=False)
    return (Path(root),) if root else ()


def eval_settings(cfg: DictConfig) -> dict[str, Any]:
    """The options that change the numbers (an evaluation with other settings is not reused by a sweep)."""
    n_bootstrap = cfg.get("n_bootstrap", 500)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap={n_bootstrap!r}: use a non-negative integer (0 skips the bootstrap)")
    return {"n_bootstrap": n_bootstrap, "seed": int(cfg.get("seed", 0)),
            "checkpoint": str(cfg.get("checkpoint", "best")), "precision": str(cfg.get("precision", "32-true")),
            "protected_override": OmegaConf.select(cfg, "data.protected")}


def collect_split_predictions(run: TrainedRun, cfg: DictConfig) -> tuple[Any, dict[str, dict[str, np.ndarray]]]:
    """The run's datamodule (same splits as in training) and its model's predictions on val and test."""
    import logging

    import pytorch_lightning as pl

    from facebias.training.predictions import collect_predictions

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no "GPU available" chatter per run

    overrides = {key: OmegaConf.select(cfg, f"data.{key}") for key in DATA_OVERRIDES}
    datamodule = build_datamodule(run, overrides)
    model = load_model(run)
    trainer = pl.Trainer(accelerator=cfg.get("accelerator", "auto"), devices=1,
                         precision=eval_settings(cfg)["precision"], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    predictions = {split: collect_predictions(trainer, model, getattr(datamodule, f"{split}_dataloader")())
                   for split in SPLITS}
    return datamodule, predictions


def analyse(run: TrainedRun, datamodule, predictions: dict[str, dict[str, np.ndarray]], n_bootstrap: int,
            seed: int) -> dict[str, Any]:
    """Every number of the evaluation, from the predictions (no model needed)."""
    from facebias.evaluation.attributes import CATEGORY_PROTECTED, category_averages
    from facebias.evaluation.heads import EvaluationInputError, evaluate_heads

    protected = datamodule.protected  # the data module's rule: data.protected, else the concept, else Male
    if protected is None:
        raise EvaluationInputError(
            f"{run.run_dir}: the run has no protected attribute (data.protected and data.concept are null and "
            f"Male is a target: {run.targets}); the fairness metrics compare two groups: pass "
            "data.protected=<attribute> to evaluate.py")
    train = datamodule.dataset("train")
    has_concept = run.concept is not None
    cell_key, cell_by = ("concept", run.concept) if has_concept else ("protected", protected)
    train_cells = train.concept if has_concept else train.protected
    heads = evaluate_heads(run.targets, predictions["val"], predictions["test"], train.targets, train_cells,
                           cell_key, n_bootstrap, seed, protected)
    result: dict[str, Any] = {"protected": protected, "cell_by": cell_by, "heads": heads, "categories": None}
    if protected == CATEGORY_PROTECTED:
        result["categories"] = category_averages({name: head["test"] for name, head in heads.items()})
    else:
        result["category_note"] = (f"attribute categories (inconsistently labelled, gender-dependent, "
                                   f"gender-independent) are defined for protected {CATEGORY_PROTECTED}, "
                                   f"not {protected}")
    return result


def write_outputs(out: Path, run: TrainedRun, result: dict[str, Any],
                  predictions: dict[str, dict[str, np.ndarray]], plots: bool = True,
                  ) -> tuple[dict[str, list[dict]], dict[str, Path]]:
    """CSV tables, scores.npz and the figures; returns the table rows and the images (for W&B)."""
    from facebias.evaluation import tables
    from facebias.evaluation.plots import reliability_plot, score_histograms

    rows = {"metrics": tables.attribute_rows(result["heads"]),
            "cells": tables.cell_rows(result["heads"], str(result["cell_by"]))}
    if result["categories"] is not None:
        rows["categories"] = tables.category_rows(result["categories"])
    for name, table_rows in rows.items():
        tables.write_csv(out / f"{name}.csv", table_rows)
    np.savez_compressed(out / "scores.npz", targets=np.array(run.targets),
                        **{f"{split}_{key}": value for split, pred in predictions.items()
                           for key, value in pred.items()})
    images: dict[str, Path] = {}
    if plots:
        test = predictions["test"]
        protected_name = str(result["protected"])
        for j, name in enumerate(run.targets):
            scores, targets = test["score"][:, j], test["target"][:, j].astype(int)
            threshold = result["heads"][name]["threshold"]
            images[f"score_hist/{name}"] = score_histograms(out / "plots" / f"score_hist_{name}.png", scores, targets,
                                                            test["protected"], threshold, name, protected_name)
            images[f"reliability/{name}"] = reliability_plot(out / "plots" / f"reliability_{name}.png", scores,
                                                             targets, test["protected"], name, protected_name)
    return rows, images


def evaluate_run(run: TrainedRun, cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Evaluate one trained run into `out`; returns what metrics.json holds."""
    from facebias.evaluation.tables import json_safe
    from facebias.evaluation.wandb_log import log_evaluation, start_run
    from facebias.training.loggers import finish_wandb, plain_config
    from facebias.training.task import write_json_atomic

    started = time.time()
    settings = eval_settings(cfg)
    out.mkdir(parents=True, exist_ok=True)
    datamodule, predictions = collect_split_predictions(run, cfg)
    result = analyse(run, datamodule, predictions, settings["n_bootstrap"], settings["seed"])
    rows, images = write_outputs(out, run, result, predictions, plots=bool(cfg.get("plots", True)))
    metrics: dict[str, Any] = {
        "job": "evaluate",
        **run.provenance(),
        "settings": {**settings, "threshold": "calibrated on val per head (cp-th largest val score; s > thr)"},
        "data": datamodule.describe(),
        **result,
        "wandb": run.wandb_identity(),
        "files": sorted({"metrics.json", *(str(p.relative_to(out)) for p in out.rglob("*")
                                            if p.is_file() and "wandb" not in p.parts and p.name != "metrics.json")}),
    }
    metrics["seconds"] = round(time.time() - started, 1)
    metrics = json_safe(metrics)
    write_json_atomic(out / "metrics.json", metrics)
    sync_command = None
    try:
        wandb_run = start_run(cfg, out, metrics["wandb"], {"eval": settings, "source": metrics["source"],
                                                            "train": plain_config(run.config)})
        log_evaluation(wandb_run, {f"eval/{name}": table_rows for name, table_rows in rows.items()},
                       {f"eval/{key}": path for key, path in images.items()}, wandb_summary(metrics))
    finally:
        sync_command = finish_wandb()
    print_summary(out, metrics, sync_command)
    return metrics


def wandb_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, head in metrics["heads"].items():
        prefix = f"eval/{name}"
        summary[f"{prefix}/threshold"] = head["threshold"]
        summary[f"{prefix}/accuracy"] = head["test"]["accuracy"]
        for key, value in head["test"].items():
            if key.split("_")[0] in ("AP", "DEO", "BA", "KL"):
                summary[f"{prefix}/{key}"] = value
        for key, value in head["gap"].items():
            summary[f"{prefix}/{key}" if key == "gap" else f"{prefix}/{key}_acc"] = value
    return summary


def print_summary(out: Path, metrics: dict[str, Any], sync_command: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    n_bootstrap = metrics["settings"]["n_bootstrap"]
    table = Table(title=f"facebias evaluate: {metrics['experiment']} (test; median ± std over "
                        f"{n_bootstrap} resamples)" if n_bootstrap else f"facebias evaluate: {metrics['experiment']}")
    for column in ("head", "thr", "AP", "DEO", "BA", "KL", "acc", "gap"):
        table.add_column(column, justify="left" if column == "head" else "right")
    for name, head in metrics["heads"].items():
        test = head["test"]
        cells = [_with_spread(test, m, 100 if m != "KL" else 1, n_bootstrap) for m in ("AP", "DEO", "BA", "KL")]
        table.add_row(name, f"{head['threshold']:.3f}", *cells, f"{100 * test['accuracy']:.1f}",
                      _with_spread(head["gap"], "gap", 100, 0))
    console.print(table)
    console.print(f"cells by {metrics['cell_by']}; protected attribute: {metrics['protected']}")
    for category, entry in (metrics.get("categories") or {}).items():
        if category != "uncategorised" and entry["n"]:
            console.print(f"{category}: {', '.join(entry['attributes'])} (missing {len(entry['missing'])})")
    console.print(f"output dir: {out}  ({metrics['seconds']} s)")
    if sync_command:
        console.print(f"W&B ran offline; upload with: {sync_command}")


def _with_spread(test: dict[str, Any], metric: str, scale: float, n_bootstrap: int) -> str:
    def fmt(value):
        return "nan" if value is None else f"{scale * value:.1f}"

    if not n_bootstrap:
        return fmt(test[metric])
    return f"{fmt(test[f'{metric}_median'])}±{fmt(test[f'{metric}_std'])}"
