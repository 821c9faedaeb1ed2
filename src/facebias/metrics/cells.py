"""Accuracy per (target x concept) cell and the stereotype gap: the direct read-out of a planted shortcut.

In a controlled-bias experiment (target Male, concept e.g. Eyeglasses, P % of men with the concept)
a model that learned "concept => man" is right on the stereotypical cells and wrong on the
counter-stereotypical ones; the test split is balanced over the four cells, so the gap between
the two mean accuracies measures the shortcut without any threshold-free fairness metric.
"""

from __future__ import annotations

import warnings

import numpy as np

from facebias.metrics.validation import as_binary, check_same_length

CELL_KEYS = ("y1_c1", "y1_c0", "y0_c1", "y0_c0")
# stereotype -> (stereotypical cells, counter-stereotypical cells)
STEREOTYPE_CELLS = {
    "positive": (("y1_c1", "y0_c0"), ("y1_c0", "y0_c1")),  # the concept goes with y=1 (P > 50)
    "negative": (("y1_c0", "y0_c1"), ("y1_c1", "y0_c0")),  # the concept goes with y=0 (P < 50)
}


def cell_accuracy(predictions, targets, concept) -> dict[str, dict[str, float]]:
    """Accuracy and sample count of the binary predictions in each (target, concept) cell.

    Keys ``y{t}_c{c}`` (e.g. ``y1_c1``: target 1 with the concept), each mapping to
    ``{"accuracy": float, "count": int}``; an empty cell has accuracy NaN (with a warning).
    """
    predictions = as_binary("predictions", predictions)
    targets, concept = as_binary("targets", targets), as_binary("concept", concept)
    check_same_length(predictions=predictions, targets=targets, concept=concept)
    correct = predictions == targets
    result = {}
    for key in CELL_KEYS:
        t, c = int(key[1]), int(key[4])
        members = (targets == t) & (concept == c)
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else float("nan")
        result[key] = {"accuracy": accuracy, "count": count}
    empty = [key for key in CELL_KEYS if result[key]["count"] == 0]
    if empty:
        warnings.warn(f"cells {', '.join(empty)} have no samples: their accuracy is NaN", RuntimeWarning,
                      stacklevel=2)
    return result


def stereotype_gap(cell_acc: dict[str, dict[str, float]], stereotype: str = "positive") -> dict[str, float]:
    """Mean accuracy of the stereotypical cells minus that of the counter-stereotypical cells.

    ``stereotype="positive"`` (concept goes with target 1, e.g. P > 50 in the controlled
    experiments: men with the concept, women without): stereotypical = y1_c1 and y0_c0,
    counter-stereotypical = y1_c0 and y0_c1. ``"negative"`` swaps the two sets. The means are
    unweighted over cells (each cell counts once, whatever its size), so a balanced and an
    unbalanced test split read the same way. A positive gap means the model follows the stereotype.
    Returns ``stereotypical``, ``counter_stereotypical`` and ``gap``; an empty cell makes them NaN.
    """
    if stereotype not in STEREOTYPE_CELLS:
        raise ValueError(f"stereotype must be one of {sorted(STEREOTYPE_CELLS)} (got {stereotype!r})")
    missing = [key for key in CELL_KEYS if key not in cell_acc]
    if missing:
        raise KeyError(f"cell_acc lacks the cells {missing}; pass the dict returned by cell_accuracy")
    stereotypical, counter = (float(np.mean([cell_acc[key]["accuracy"] for key in keys]))
                              for keys in STEREOTYPE_CELLS[stereotype])
    return {"stereotypical": stereotypical, "counter_stereotypical": counter, "gap": stereotypical - counter}
