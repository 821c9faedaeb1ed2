"""What a person sees of a training run: the bias grid and the test table in W&B, a one-screen summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CELL_NAMES = {"y1_c1": "target=1, concept=1", "y1_c0": "target=1, concept=0",
              "y0_c1": "target=0, concept=1", "y0_c0": "target=0, concept=0"}


def bias_grid(datamodule, per_cell: int = 8) -> tuple[np.ndarray, list[str]]:
    """Training images as they reach the model, one row per (target, concept) cell: the planted bias shown."""
    from facebias.data.transforms import to_grayscale

    train = datamodule.dataset("train")
    target, concept = train.targets[:, 0], train.concept
    rows, captions = [], []
    for key in CELL_NAMES:
        t, c = int(key[1]), int(key[4])
        idx = np.flatnonzero((target == t) & (concept == c))[:per_cell]
        share = len(np.flatnonzero((target == t) & (concept == c))) / max(1, len(np.flatnonzero(target == t)))
        captions.append(f"{key}: {share:.0%} of target={t}")
        if len(idx) == 0:
            rows.append(np.zeros((per_cell, *train.images.shape[1:]), dtype=np.uint8))
            continue
        batch = train.__getitems__(list(idx))
        images = to_grayscale(batch["image"], batch["gray"]).numpy()
        pad = np.zeros((per_cell - len(images), *images.shape[1:]), dtype=np.uint8)
        rows.append(np.concatenate([images, pad]))
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    return grid, captions


def log_bias_grid(wandb_logger, datamodule) -> None:
    grid, captions = bias_grid(datamodule)
    wandb_logger.log_image("train/bias_grid", [grid], caption=[" | ".join(captions)])


def log_test_table(wandb_logger, metrics: dict[str, Any]) -> None:
    """Per-cell test accuracy as a W&B table, with the decision threshold it was taken at in every row
    (training scores at 0.5; evaluate.py reports the calibrated threshold), and the test metrics as summary."""
    threshold = metrics.get("threshold", 0.5)
    cells = metrics.get("test_cells") or {}
    data = [[key, CELL_NAMES.get(key, key), threshold, v["accuracy"], v["count"]] for key, v in cells.items()
            if isinstance(v, dict)]
    if data:
        wandb_logger.log_table("test/cell_accuracy",
                               columns=["cell", "meaning", "threshold", "accuracy", "count"], data=data)
    summary = {f"test/{k}": v for k, v in (metrics.get("test") or {}).items()}
    summary["test/threshold"] = threshold
    summary.update({f"test/gap_{k}": v for k, v in (metrics.get("test_gap") or {}).items()
                    if isinstance(v, (int, float))})
    wandb_logger.experiment.summary.update(summary)


def print_summary(output_dir: Path, metrics: dict[str, Any], sync_command: str | None) -> None:
    from facebias.reporting.console import print_summary as print_table

    if "quality" in metrics:  # a GAN run: its quality figures, not a classifier's table
        rows, notes = gan_summary_rows(metrics["quality"])
        notes += [f"data: {metrics['data']['summary']}", f"run dir: {output_dir}  ({metrics.get('seconds', '?')} s)",
                  f"best checkpoint: {metrics.get('best_checkpoint')}; samples: {metrics.get('samples')}"]
        print_table(f"facebias train: {metrics.get('experiment') or 'run'} (GAN quality, best checkpoint)",
                    ["figure", "generated", "training data", "training, true"], rows, notes, sync_command=sync_command)
        return
    threshold = metrics.get("threshold", 0.5)
    rows = [[split, *(f"{100 * metrics[split].get(k, float('nan')):.1f}" for k in ("AP", "acc", "gap"))]
            for split in ("val", "test") if split in metrics]
    notes = []
    cells = metrics.get("test_cells") or {}
    if cells:
        by = f"y = {metrics['data'].get('targets', ['target'])[0]}, c = {metrics['cells_by']}; " \
            if metrics.get("cells_by") else ""
        notes.append(f"test accuracy per cell ({by}threshold {threshold:g}; evaluate.py reports the calibrated "
                     "threshold): " + ", ".join(f"{k} {100 * v['accuracy']:.1f}% (n={v['count']})"
                                                 for k, v in cells.items() if isinstance(v, dict)))
    notes += [f"data: {metrics['data']['summary']}", f"run dir: {output_dir}  ({metrics.get('seconds', '?')} s)",
              f"best checkpoint: {metrics.get('best_checkpoint')}"]
    print_table(f"facebias train: {metrics.get('experiment') or 'run'}",
                ["split", "AP", f"acc@{threshold:g}", f"gap@{threshold:g}"], rows, notes, sync_command=sync_command)


def gan_summary_rows(quality: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """Rows (figure, generated, training data, its true labels) of a GAN run's quality figures, and notes.

    Rates of generated faces come from the quality classifier, so they are compared with the same classifier's
    rates on the training faces; the true labels stand beside them (the classifier's own error shows there)."""
    def fmt(value: Any, digits: int = 3) -> str:
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "—"

    settings = quality.get("settings", {})
    name = settings.get("quality_figure", "quality")
    rows = [[name, fmt(quality.get("quality"), 1), "", ""],
            ["pixel Fréchet distance", fmt(quality.get("pixel_fd")), "", ""]]
    for key in ("precision", "recall"):
        if key in quality:
            rows.append([f"{key} (k={settings.get('k', '?')})", fmt(quality[key]), "", ""])
    rates = quality.get("rates") or {}
    generated, train, true = rates.get("generated", {}), rates.get("train", {}), rates.get("train_true", {})
    for key in generated:
        rows.append([f"rate {key.replace('_given_', ' | ').replace('not_', 'not ')}", fmt(generated[key]),
                     fmt(train.get(key)), fmt(true.get(key))])
    for attribute, accuracy in (quality.get("separability") or {}).items():
        rows.append([f"latent SVM held-out accuracy, {attribute}", fmt(accuracy), "", ""])
    notes = [f"{settings.get('n_generated', '?')} generated faces; rates under the classifier "
             f"{settings.get('classifier_run') or '(none)'}, on generated and on training faces alike"]
    return rows, notes + list(settings.get("notes", []))
