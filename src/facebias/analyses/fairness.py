"""The fairness audit (``evaluate.py``): per head, the calibrated threshold on validation; on test AP, DEO,
BA, KL (point and bootstrap median/std), accuracy per (target x concept) cell and the stereotype gap.

One run writes metrics.json (``results.EvaluationMetrics``), metrics.csv, cells.csv, categories.csv
(protected Male), scores.npz and plots/*.png, and logs them to the training run's W&B group with
job_type=eval. A sweep writes sweep_summary.csv/.json (one row per run and head, sorted by family,
attribute and P) and sweep_vs_p.png (AP, DEO, BA, KL and the cell gap vs P, one line per family).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from facebias.analyses.base import Analysis, Context, Result
from facebias.reporting.console import print_summary
from facebias.reporting.files import files_under, json_safe, portable_path, write_csv, write_json_atomic
from facebias.results import SCHEMA_VERSION
from facebias.runs import TrainedRun, build_datamodule, load_model

SPLITS = ("val", "test")
DATA_OVERRIDES = ("data_dir", "eval_batch_size", "num_workers", "progress", "protected")
LEADING_COLUMNS = ("family", "P", "attribute", "experiment", "train_seed")
SHOWN = ("AP", "DEO", "BA", "BA_ref", "KL")


class Fairness(Analysis):
    name = "fairness"
    kind = "eval"
    result_file = "metrics.json"
    subdir = "eval"
    summary_file = "sweep_summary.json"
    job_type = "eval"

    def settings(self, cfg: DictConfig) -> dict[str, Any]:
        """The options that change the numbers (an evaluation with other settings is not reused by a sweep)."""
        n_bootstrap = cfg.get("n_bootstrap", 500)
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
            raise ValueError(f"n_bootstrap={n_bootstrap!r}: use a non-negative integer (0 skips the bootstrap)")
        return {"n_bootstrap": n_bootstrap, "seed": int(cfg.get("seed", 0)),
                "checkpoint": str(cfg.get("checkpoint", "best")),
                "protected_override": OmegaConf.select(cfg, "data.protected")}

    def run(self, run: TrainedRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        started = time.time()
        out = ctx.out
        datamodule, predictions = collect_split_predictions(run, ctx)
        result = analyse(run, datamodule, predictions, settings["n_bootstrap"], settings["seed"])
        rows, images = write_outputs(out, run, result, predictions, plots=bool(ctx.option("plots", True)))
        metrics: dict[str, Any] = {
            "schema": SCHEMA_VERSION, "job": "evaluate", **run.provenance(),
            "settings": {**settings, "threshold": "calibrated on val per head (cp-th largest val score; s > thr)"},
            "data": datamodule.describe(), **result, "wandb": ctx.identity,
            "files": files_under(out, "metrics.json", "run.json"),
        }
        metrics["seconds"] = round(time.time() - started, 1)
        metrics = json_safe(metrics)
        write_json_atomic(out / "metrics.json", metrics)
        ctx.wandb.log({f"eval/{name}": table_rows for name, table_rows in rows.items()},
                      {f"eval/{key}": path for key, path in images.items()}, wandb_summary(metrics))
        return metrics

    def print_run(self, metrics: Mapping[str, Any], ctx: Context) -> None:
        n_bootstrap = metrics["settings"]["n_bootstrap"]
        title = (f"facebias evaluate: {metrics['experiment']} (test; median ± std over {n_bootstrap} resamples)"
                 if n_bootstrap else f"facebias evaluate: {metrics['experiment']}")
        rows = []
        for name, head in metrics["heads"].items():
            test = head["test"]
            rows.append([name, f"{head['threshold']:.3f}",
                         *(_with_spread(test, m, 100 if m != "KL" else 1, n_bootstrap) for m in SHOWN),
                         f"{100 * test['accuracy']:.1f}", _with_spread(head["gap"], "gap", 100, 0)])
        notes = [f"cells by {metrics['cell_by']}; protected attribute: {metrics['protected']}"]
        for category, entry in (metrics.get("categories") or {}).items():
            if category != "uncategorised" and entry["n"]:
                notes.append(f"{category}: {', '.join(entry['attributes'])} (missing {len(entry['missing'])})")
        notes.append(f"output dir: {ctx.out}  ({metrics['seconds']} s)")
        print_summary(title, ["head", "thr", *SHOWN, "acc", "gap"], rows, notes, sync_command=ctx.wandb.sync_command)

    def summarize(self, results: Sequence[Result], skipped: Sequence[Mapping[str, str]],
                  settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        """The table and figure of a sweep: one row per (run, head), metrics vs P per family."""
        from facebias.evaluation.plots import sweep_plot
        from facebias.evaluation.tables import metric_columns

        started = time.time()
        root = ctx.option("paths.root_dir")
        rows = sweep_rows([(r.dir, r.payload) for r in results], root)
        columns = [*LEADING_COLUMNS, "threshold", "n_test", *metric_columns(), "accuracy", "stereotypical_acc",
                   "counter_stereotypical_acc", "gap", "stereotype", "category", "run_dir", "eval_dir"]
        csv_path = write_csv(ctx.out / "sweep_summary.csv", rows, columns)
        figure = sweep_plot(ctx.out / "sweep_vs_p.png", rows, title=f"{ctx.identity['name']}: test metrics vs P")
        summary = json_safe({
            "schema": SCHEMA_VERSION, "job": "evaluate-sweep",
            "sweep_dirs": [str(p) for p in ctx.roots],
            "runs": len(results), "rows": rows, "skipped": list(skipped),
            "files": [csv_path.name, figure.name, "sweep_summary.json"], "wandb": ctx.identity,
            "seconds": round(time.time() - started, 1)})
        write_json_atomic(ctx.out / "sweep_summary.json", summary)
        ctx.wandb.log({"sweep/summary": [{c: r.get(c) for c in columns} for r in rows]},
                      {"sweep/metrics_vs_p": figure}, {"sweep/runs": len(results)})
        return summary

    def print_sweep(self, summary: Mapping[str, Any], ctx: Context) -> None:
        rows = [[str(r["family"]), r["attribute"], "" if r["P"] is None else f"{r['P']:g}",
                 *(_fmt(_central(r, m)) for m in SHOWN), _fmt(r["gap"])] for r in summary["rows"]]
        notes = [f"skipped {s['run_dir']}: {s['reason']}" for s in summary["skipped"]]
        notes.append(f"summary: {ctx.out / 'sweep_summary.csv'}, figure: {ctx.out / 'sweep_vs_p.png'}")
        print_summary("facebias sweep summary (test; x100 except KL)", ["family", "attribute", "P", *SHOWN, "gap"],
                      rows, notes, sync_command=ctx.wandb.sync_command, left=("family", "attribute"))


def collect_split_predictions(run: TrainedRun, ctx: Context) -> tuple[Any, dict[str, dict[str, np.ndarray]]]:
    """The run's datamodule (same splits as in training) and its model's predictions on val and test, in fp32
    whatever the run trained with (as training scored its own validation and metrics.json)."""
    import logging

    import pytorch_lightning as pl

    from facebias.training.predictions import collect_predictions

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no "GPU available" chatter per run
    datamodule = build_datamodule(run, ctx.data_overrides(DATA_OVERRIDES))
    model = load_model(run)
    trainer = pl.Trainer(accelerator=ctx.option("accelerator", "auto"), devices=1, precision="32-true",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
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
    cell_key, cell_by = datamodule.cell_column, datamodule.cell_attribute  # the concept, else the protected one
    train_cells = getattr(train, cell_key)
    heads = evaluate_heads(run.targets, predictions["val"], predictions["test"], train.targets, train_cells,
                           cell_key, n_bootstrap, seed, protected, train_protected=train.protected)
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
        write_csv(out / f"{name}.csv", table_rows)
    tmp = out / ".scores.tmp.npz"
    np.savez_compressed(tmp, targets=np.array(run.targets),
                        **{f"{split}_{key}": value for split, pred in predictions.items() for key, value in pred.items()})
    tmp.replace(out / "scores.npz")
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


def wandb_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, head in metrics["heads"].items():
        prefix = f"eval/{name}"
        summary[f"{prefix}/threshold"] = head["threshold"]
        summary[f"{prefix}/accuracy"] = head["test"]["accuracy"]
        for key, value in head["test"].items():
            if key.split("_")[0] in SHOWN:
                summary[f"{prefix}/{key}"] = value
        for key, value in head["gap"].items():
            summary[f"{prefix}/{key}" if key == "gap" else f"{prefix}/{key}_acc"] = value
    return summary


def sweep_rows(entries: Sequence[tuple[Path, Mapping[str, Any]]], root: str | None = None) -> list[dict[str, Any]]:
    """One row per (run, head): family, P, attribute, the per-attribute table's columns, where it came from
    (paths relative to ``root``, the project, when they lie under it)."""
    from facebias.evaluation.tables import attribute_row

    rows = []
    for eval_dir, metrics in entries:
        for name, head in metrics["heads"].items():
            row = {"family": metrics["family"], "P": metrics["P"], "attribute": name,
                   "experiment": metrics["experiment"], "train_seed": metrics.get("train_seed")}
            row.update({k: v for k, v in attribute_row(name, head).items() if k != "attribute"})
            row.update({"run_dir": portable_path(metrics["source"]["run_dir"], root),
                        "eval_dir": portable_path(eval_dir, root)})
            rows.append(row)
    return sorted(rows, key=lambda r: (str(r["family"]), r["attribute"], -1 if r["P"] is None else r["P"],
                                       r["train_seed"] if r["train_seed"] is not None else -1))


def _central(row: Mapping[str, Any], metric: str) -> Any:
    """The bootstrap median when there is one, else the point estimate."""
    median = row.get(f"{metric}_median")
    return row[metric] if median is None else median


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.2f}"


def _with_spread(test: Mapping[str, Any], metric: str, scale: float, n_bootstrap: int) -> str:
    def fmt(value):
        return "nan" if value is None else f"{scale * value:.1f}"

    if not n_bootstrap:
        return fmt(test[metric])
    return f"{fmt(test[f'{metric}_median'])}±{fmt(test[f'{metric}_std'])}"
