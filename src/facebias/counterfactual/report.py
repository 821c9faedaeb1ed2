"""Figures of the counterfactual search: one strip per search (initial -> intermediates -> final, captioned
"score a -> b (x %)" as in Kulynych's seed) and the objective along the steps, searches against the null."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def record_steps(steps: int, every: int) -> list[int]:
    """0, n, 2n, ... and always the last step T."""
    marks = list(range(0, steps + 1, max(int(every), 1)))
    return marks if marks[-1] == steps else [*marks, steps]


def caption(label: str, start: float, end: float) -> str:
    """'Male logit 3.5501 → 4.7940 (135.04 %)': the end as a percentage of the start where both are positive
    (the seed's convention), else the signed change."""
    if start > 0 and end >= 0:
        return f"{label} {start:.4f} → {end:.4f} ({100.0 * end / start:.2f} %)"
    return f"{label} {start:.4f} → {end:.4f} (change {end - start:+.4f})"


def strip_figure(path: Path, faces: np.ndarray, steps: Sequence[int], scores: Sequence[float], title: str) -> Path:
    """One search: its faces at the recorded steps side by side, each with its step and score."""
    from facebias.reporting.plots import pyplot, save_figure

    plt = pyplot()
    n = len(faces)
    fig, axes = plt.subplots(1, n, figsize=(1.5 * n, 1.95), squeeze=False)
    for ax, face, step, score in zip(axes[0], faces, steps, scores, strict=True):
        ax.imshow(face, interpolation="nearest")
        ax.set_title(f"step {step}\n{score:.3f}", fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=8.5, y=1.02)
    return save_figure(fig, path, dpi=100)


def score_figure(path: Path, search_scores: np.ndarray, null_steps: Sequence[int], null_scores: np.ndarray,
                 label: str) -> Path:
    """The objective along the steps: every search (thin), their mean, and the null walks' mean at the recorded steps."""
    from facebias.reporting.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = np.arange(search_scores.shape[1])
    finite = np.where(np.isfinite(search_scores), search_scores, np.nan)
    for row in finite[:64]:
        ax.plot(steps, row, color="tab:blue", alpha=0.15, linewidth=0.8)
    ax.plot(steps, np.nanmean(finite, axis=0), color="tab:blue", linewidth=2, label="searches (mean)")
    if null_scores.size:
        ax.plot(list(null_steps), np.nanmean(null_scores, axis=0), color="tab:gray", linewidth=2, marker="o",
                linestyle="--", label="null walks (mean)")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
