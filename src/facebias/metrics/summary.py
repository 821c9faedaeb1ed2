"""Headline numbers of a split from its gathered scores: AP, accuracy, per-cell accuracy and the gap.

Pure functions on numpy arrays (no torch): the model's epoch-end logging and the run's final scoring share
them, so the numbers logged during training and those in metrics.json are computed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score

from facebias.metrics.cells import cell_accuracy, stereotype_gap


def summarize_predictions(pred: dict[str, np.ndarray], targets: Sequence[str], threshold: float = 0.5,
                          cell_column: str = "concept") -> dict[str, float]:
    """AP (mean over heads and per head), accuracy, per-cell accuracy and the stereotype gap of head 0.

    `pred` holds `score` and `target` (n, T) and the cells' group column `cell_column` (n,): the data module's
    `cell_column` (the concept, else the protected attribute). A head whose targets hold a single class has AP
    nan; `AP` is the mean over the heads where it is defined (nan when none is).
    """
    scores, y = pred["score"], pred["target"].astype(int)
    out: dict[str, float] = {}
    aps = []
    for j, name in enumerate(targets):
        ap = average_precision_score(y[:, j], scores[:, j]) if 0 < y[:, j].sum() < len(y) else float("nan")
        out[f"AP_{name}"] = ap
        out[f"acc_{name}"] = float(np.mean((scores[:, j] > threshold) == y[:, j]))
        aps.append(ap)
    out["AP"] = float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")
    out["acc"] = out[f"acc_{targets[0]}"]
    cells = cell_accuracy((scores[:, 0] > threshold).astype(int), y[:, 0], pred[cell_column].astype(int))
    for key, value in flatten_cells(cells).items():
        out[key] = value
    out.update({f"gap_{k}" if k != "gap" else "gap": v for k, v in stereotype_gap(cells).items()
                if isinstance(v, (int, float))})
    return out


def flatten_cells(cells: dict) -> dict[str, float]:
    """{'y1_c1': {'accuracy': a, 'count': n}, ...} -> {'acc_y1_c1': a, ...} for loggers."""
    return {f"acc_{k}": float(v["accuracy"]) for k, v in cells.items() if isinstance(v, dict)}
