"""Figures of an evaluation (matplotlib, Agg backend, written as PNG): score histograms, reliability, sweep.

* score histograms per group and class, the reference paper's figure: for the positives and the
  negatives separately, the scores of g=0 and g=1 overlaid; a shortcut shows as two humps apart;
* reliability diagram: mean predicted score vs observed positive rate per score bin, overall and
  per protected group;
* the sweep figure: AP, DEO, BA (direction from training), BA_ref (the reference's, direction from
  the test split: 0 on a cell-balanced test split), KL and the cell gap against P, one line per family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facebias.reporting.plots import FAMILY_COLOURS, GROUP_COLOURS, pyplot, save_figure


def score_histograms(path: Path, scores: np.ndarray, targets: np.ndarray, protected: np.ndarray,
                     threshold: float, head: str, protected_name: str, bins: int = 50) -> Path:
    """Two panels (positives, negatives), each with the score histograms of g=0 and g=1 overlaid.

    The bins span the scores' own range (and the threshold), so an undertrained model whose scores
    sit in a narrow band still shows its groups apart.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    low, high = min(float(scores.min()), threshold), max(float(scores.max()), threshold)
    pad = max(high - low, 1e-6) * 0.02
    edges = np.linspace(max(0.0, low - pad), min(1.0, high + pad), bins + 1)
    for ax, (label, cls) in zip(axes, ((f"{head}=1 (positives)", 1), (f"{head}=0 (negatives)", 0)), strict=True):
        for g, colour in zip((0, 1), GROUP_COLOURS, strict=True):
            members = (targets == cls) & (protected == g)
            ax.hist(scores[members], bins=edges, density=True, alpha=0.5, color=colour,
                    label=f"{protected_name}={g} (n={int(members.sum())})")
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
        ax.set_title(label)
        ax.set_xlabel(f"score (sigmoid) of {head}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density")
    fig.suptitle(f"{head}: test scores by {protected_name} group")
    return save_figure(fig, path)


def reliability_curve(scores: np.ndarray, targets: np.ndarray, n_bins: int = 10,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean score, positive rate, count) of the non-empty uniform score bins on [0, 1]."""
    which = np.clip((scores * n_bins).astype(int), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    mean_score = np.bincount(which, weights=scores, minlength=n_bins)
    positives = np.bincount(which, weights=targets, minlength=n_bins)
    kept = counts > 0
    return mean_score[kept] / counts[kept], positives[kept] / counts[kept], counts[kept]


def reliability_plot(path: Path, scores: np.ndarray, targets: np.ndarray, protected: np.ndarray, head: str,
                     protected_name: str, n_bins: int = 10) -> Path:
    """Calibration curve (positive rate vs mean score per bin), overall and per protected group."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1, label="perfectly calibrated")
    curves = [("all", np.ones(len(scores), dtype=bool), "black")]
    curves += [(f"{protected_name}={g}", protected == g, c) for g, c in zip((0, 1), GROUP_COLOURS, strict=True)]
    for label, members, colour in curves:
        if not members.any():
            continue
        x, y, _ = reliability_curve(scores[members], targets[members].astype(float), n_bins)
        ax.plot(x, y, marker="o", markersize=3, color=colour, label=f"{label} (n={int(members.sum())})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted score")
    ax.set_ylabel(f"fraction with {head}=1")
    ax.set_title(f"{head}: reliability (test)")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


SWEEP_PANELS = (("AP", "AP (x100)"), ("DEO", "DEO (x100)"), ("BA", "BA (x100, train direction)"),
                ("BA_ref", "BA_ref (x100, reference)"), ("KL", "KL"), ("gap", "cell gap (x100)"))


def sweep_plot(path: Path, rows: Sequence[Mapping[str, Any]], title: str = "") -> Path:
    """AP, DEO, BA, BA_ref, KL and the cell gap vs P: one line per family (and attribute), bootstrap std as bars.

    A point is the bootstrap median when there is one, else the point estimate; runs sharing
    (family, attribute, P) (e.g. several seeds) are averaged.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SWEEP_PANELS), figsize=(4 * len(SWEEP_PANELS), 3.6))
    lines = sorted({(str(r["family"]), str(r["attribute"])) for r in rows if r.get("P") not in (None, "")})
    several_attributes = len({a for _, a in lines}) > 1
    for ax, (metric, label) in zip(axes, SWEEP_PANELS, strict=True):
        drawn = False
        for k, (family, attribute) in enumerate(lines):
            mine = [r for r in rows if str(r["family"]) == family and str(r["attribute"]) == attribute
                    and r.get("P") not in (None, "")]
            ps = sorted({float(r["P"]) for r in mine})
            centre, spread = [], []
            for p in ps:
                at_p = [r for r in mine if float(r["P"]) == p]
                centre.append(_finite_mean([_value(r, metric) for r in at_p]))
                stds = [float(r[f"{metric}_std"]) for r in at_p if r.get(f"{metric}_std") not in (None, "")]
                spread.append(_finite_mean(stds) if stds else 0.0)
            name = f"{family} ({attribute})" if several_attributes else family
            spread = np.nan_to_num(np.asarray(spread, dtype=float))
            ax.errorbar(ps, centre, yerr=spread, marker="o", capsize=3, color=FAMILY_COLOURS[k % len(FAMILY_COLOURS)],
                        label=name)
            drawn = drawn or bool(np.isfinite(centre).any())
        if not drawn:
            ax.text(0.5, 0.5, "no value for any run:\nNaN (too few test images per cell)\nor not in these results",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9, color="gray")
        ax.set_xlabel("P (% of target positives with the concept)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _value(row: Mapping[str, Any], metric: str) -> float:
    median = row.get(f"{metric}_median")
    value = median if median not in (None, "") else row.get(metric)
    return float("nan") if value in (None, "") else float(value)
