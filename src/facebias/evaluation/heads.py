"""Per-head evaluation from scores alone: threshold on val, fairness and cells on test (DESIGN §5).

Pure numpy on the arrays ``collect_predictions`` returns, so it is tested without a model. The
metrics themselves come from ``facebias.metrics``; this module decides what is compared with what:
the threshold of each head is the calibrated threshold of its *validation* scores, reused on test;
the protected attribute g is the batches' ``protected``; the cells are (target x the run's bias
concept), or (target x protected) when the run has no planted concept.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facebias.metrics import calibrated_threshold, cell_accuracy, fairness_report, predict, stereotype_gap


class EvaluationInputError(ValueError):
    """A split that cannot be evaluated (one class for a head, one protected group...), named precisely."""


def require_two_values(values: np.ndarray, what: str, split: str, fix: str) -> None:
    """Fail, naming the head/attribute and split, when a 0/1 column holds only one value."""
    values = np.asarray(values)
    if len(values) == 0:
        raise EvaluationInputError(f"the {split} split is empty: nothing to evaluate ({what})")
    ones = int(np.count_nonzero(values))
    if ones in (0, len(values)):
        only = 1 if ones else 0
        raise EvaluationInputError(
            f"{what}: the {split} split holds only the value {only} ({len(values)} images); {fix}")


def stereotype_direction(train_target: np.ndarray, train_cell: np.ndarray) -> dict[str, Any]:
    """Which (target, cell variable) pairing the *training* data favoured.

    ``positive`` when P(y=1 | c=1) >= P(y=1 | c=0) on the training split (the controlled
    experiments with P >= 50: men wear the glasses), else ``negative``; ties count as positive.
    """
    train_target, train_cell = np.asarray(train_target), np.asarray(train_cell)
    rates = {}
    for c in (0, 1):
        members = train_cell == c
        rates[c] = float(train_target[members].mean()) if members.any() else float("nan")
    positive = not (rates[1] < rates[0])  # NaN (a missing value) falls back to positive
    return {"direction": "positive" if positive else "negative",
            "train_p_y1_given_c1": rates[1], "train_p_y1_given_c0": rates[0]}


def evaluate_head(name: str, j: int, val: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                  cell_key: str, stereotype: str, n_bootstrap: int, seed: int,
                  protected_name: str | None) -> dict[str, Any]:
    """Threshold (val), fairness report with bootstrap, accuracy, per-cell accuracy and gap (test) of head j."""
    val_y, test_y = val["target"][:, j].astype(np.int8), test["target"][:, j].astype(np.int8)
    need_both = "the calibrated threshold and AP need positives and negatives; use a larger or different split"
    require_two_values(val_y, f"head {name!r}", "val", need_both)
    require_two_values(test_y, f"head {name!r}", "test", need_both)
    require_two_values(test["protected"], f"protected attribute {protected_name!r}", "test",
                       "the fairness metrics compare the two groups; choose data.protected with both values "
                       "in the test split")
    val_s, test_s = val["score"][:, j], test["score"][:, j]
    threshold = calibrated_threshold(val_s, val_y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = fairness_report(test_s, test_y, test["protected"], threshold, n_bootstrap=n_bootstrap,
                                 seed=seed)
        predictions = predict(test_s, threshold)
        cells = cell_accuracy(predictions, test_y, test[cell_key])
    notes = sorted({f"{name}: {w.message}" for w in caught})
    for note in notes:  # still shown to the user, once each
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    return {
        "threshold": threshold,
        "val": {"n": len(val_y), "positives": int(val_y.sum())},
        "test": {"n": len(test_y), "positives": int(test_y.sum()),
                 "accuracy": float(np.mean(predictions == test_y)), **report},
        "cells": cells,
        "gap": stereotype_gap(cells, stereotype),
        "warnings": notes,
    }


def evaluate_heads(targets: Sequence[str], val: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                   train_targets: np.ndarray, train_cells: np.ndarray, cell_key: str, n_bootstrap: int,
                   seed: int, protected_name: str | None) -> dict[str, dict[str, Any]]:
    """``evaluate_head`` for every head; the stereotype of each head is read off its training split."""
    heads = {}
    for j, name in enumerate(targets):
        stereotype = stereotype_direction(train_targets[:, j], train_cells)
        head = evaluate_head(name, j, val, test, cell_key, stereotype["direction"], n_bootstrap, seed,
                             protected_name)
        head["stereotype"] = stereotype
        heads[name] = head
    return heads
