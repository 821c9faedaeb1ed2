"""What a person sees of the de-biasing stage: pairs G(z) | G(z') per cell, the hyperplanes and flip rates.

Written beside the training run (``<run>/augment/``: ``pairs.png``, ``augment.json``, ``augment.csv``) and
to W&B (job_type=augment) in the training run's group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facebias.reporting.console import get_logger
from facebias.reporting.files import write_csv, write_json_atomic

log = get_logger(__name__)


def pair_grid(path: Path, augmented, per_cell: int = 6) -> Path:
    """One row per (target, protected) cell of G(z): pairs G(z) | G(z') side by side."""
    from facebias.reporting.plots import pyplot, save_figure

    images = np.load(augmented.path / "images.npy", mmap_mode="r")
    labels = np.load(augmented.path / "labels.npz")
    n = len(images) // 2
    t, g = labels["target"][:n].reshape(n, -1)[:, 0], labels["protected"][:n]
    meta = augmented.meta
    plt = pyplot()
    fig, axes = plt.subplots(4, 2 * per_cell, figsize=(1.1 * 2 * per_cell, 4.8), squeeze=False)
    for r, (a, b) in enumerate(((1, 1), (1, 0), (0, 1), (0, 0))):
        rows = np.flatnonzero((t == a) & (g == b))[:per_cell]
        for c in range(2 * per_cell):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            k = c // 2
            if k < len(rows):
                ax.imshow(images[rows[k] + (n if c % 2 else 0)])
            if r == 0:
                ax.set_title("G(z')" if c % 2 else "G(z)", fontsize=7)
        axes[r, 0].set_ylabel(f"{meta['target']}={a}\n{meta['protected']}={b}", fontsize=7, rotation=0, ha="right",
                              va="center")
    fig.suptitle(f"pairs: z' keeps {meta['target']} and flips {meta['protected']} (labels of G(z) by f_t, f_g)",
                 fontsize=9)
    return save_figure(fig, path)


def summary_rows(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage's headline numbers as (quantity, value) rows."""
    rows = [{"quantity": "c = w_g . w_t", "value": meta["hyperplanes"]["c"]},
            {"quantity": "h_t held-out accuracy", "value": meta["hyperplanes"]["target"]["holdout_accuracy"]},
            {"quantity": "h_g held-out accuracy", "value": meta["hyperplanes"]["protected"]["holdout_accuracy"]},
            {"quantity": "f_g flip rate on pairs", "value": meta["classifier_view"]["protected_flip_rate"]},
            {"quantity": "f_t keep rate on pairs", "value": meta["classifier_view"]["target_keep_rate"]},
            {"quantity": "P(g=1 | t=1) in G(z)", "value": meta["composition"]["G(z)"]["P(g=1|t=1)"]},
            {"quantity": "P(g=1 | t=0) in G(z)", "value": meta["composition"]["G(z)"]["P(g=1|t=0)"]}]
    truth = meta.get("truth")
    if truth:
        rows += [{"quantity": "true protected flip rate", "value": truth["protected_flip_rate"]},
                 {"quantity": "true target keep rate", "value": truth["target_keep_rate"]},
                 {"quantity": "f_t label accuracy on G(z)", "value": truth["target_label_accuracy"]},
                 {"quantity": "f_g label accuracy on G(z)", "value": truth["protected_label_accuracy"]}]
    return rows


def log_augmentation(augmented, out: Path, session) -> None:
    """Files beside the run, the same in W&B, and one log line with the numbers that matter."""
    meta = augmented.meta
    rows = summary_rows(meta)
    write_json_atomic(out / "augment.json", {"path": str(augmented.path), **meta})
    write_csv(out / "augment.csv", rows)
    grid = pair_grid(out / "pairs.png", augmented)
    session.log({"augment/summary": rows}, {"augment/pairs": grid},
                {f"augment/{r['quantity']}": r["value"] for r in rows})
    truth = meta.get("truth") or {}
    log.info("augmented set %s: c=%.3f, h_t/h_g held-out acc %.3f/%.3f, f_g flips %.1f%% of pairs%s",
             augmented.path.name, meta["hyperplanes"]["c"], meta["hyperplanes"]["target"]["holdout_accuracy"],
             meta["hyperplanes"]["protected"]["holdout_accuracy"], 100 * meta["classifier_view"]["protected_flip_rate"],
             f", truly flips {100 * truth['protected_flip_rate']:.1f}% and keeps the target in "
             f"{100 * truth['target_keep_rate']:.1f}%" if truth else "")
