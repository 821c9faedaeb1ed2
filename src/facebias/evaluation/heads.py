"""Per-head evaluation from scores alone: threshold on val, fairness and cells on test (docs/design.md §5).

Pure numpy on the arrays ``collect_predictions`` returns, so it is tested without a model. The
metrics themselves come from ``facebias.metrics``; this module decides what is compared with what:
the threshold of each head is the calibrated threshold of its *validation* scores, reused on test;
the protected attribute g is the batches' ``protected``; the cells are (target x the run's bias
concept), or (target x protected) when the run has no planted concept. BA's direction comes from
the training split (the head's training targets and ``train_protected``) when it is given.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facebias.metrics import (
    MetricInputError,
    bias_direction,
    calibrated_threshold,
    cell_accuracy,
    fairness_report,
    predict,
    stereotype_gap,
)


class EvaluationInputError(ValueError):
    """A split that cannot be evaluated (one class for a head, one protected group...), named precisely."""


_WHAT = {"scores": "scores", "targets": "labels", "protected": "protected-attribute values"}


def explain_metric_error(error: MetricInputError, head: str, split: str) -> EvaluationInputError:
    """The metric's input error re-worded for one head and split (``train_*`` arguments: the train split).

    e.g. "head 'Male': the test scores contain 3 NaN values (first at row 17) — the model produced
    NaN outputs".
    """
    argument = error.argument or ""
    for prefix in ("val_", "train_"):
        if argument.startswith(prefix):
            split, argument = prefix[:-1], argument[len(prefix):]
    what = _WHAT.get(argument, argument or "input")
    first = f" (first at row {error.rows[0]})" if error.rows else ""
    if error.problem == "non_finite" and error.detail:
        cause = "NaN" if "inf" not in error.detail else "NaN/infinite" if "NaN" in error.detail else "infinite"
        message = (f"head {head!r}: the {split} {what} contain {error.detail}{first} — the model produced "
                   f"{cause} outputs")
    elif error.problem == "out_of_range" and error.detail:
        message = (f"head {head!r}: the {split} {what} contain {error.detail}{first} — they look like logits; "
                   "the evaluation needs sigmoid probabilities")
    else:
        message = f"head {head!r}, {split} split: {error}"
    return EvaluationInputError(message)


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
                  protected_name: str | None, *, train_target: np.ndarray | None = None,
                  train_protected: np.ndarray | None = None) -> dict[str, Any]:
    """Threshold (val), fairness report with bootstrap, accuracy, per-cell accuracy and gap (test) of head j.

    ``train_target`` (this head's training labels, 1-D) and ``train_protected`` (the training
    split's protected attribute) give BA its direction; with either missing, BA's direction comes
    from the test split (BA = BA_ref, 0 on a cell-balanced test split). ``ba_direction`` in the
    result records which. A metric input error (NaN scores, logits, non-0/1 labels) is raised as
    ``EvaluationInputError`` naming the head and the split.
    """
    val_y, test_y = val["target"][:, j].astype(np.int8), test["target"][:, j].astype(np.int8)
    need_both = "the calibrated threshold and AP need positives and negatives; use a larger or different split"
    require_two_values(val_y, f"head {name!r}", "val", need_both)
    require_two_values(test_y, f"head {name!r}", "test", need_both)
    require_two_values(test["protected"], f"protected attribute {protected_name!r}", "test",
                       "the fairness metrics compare the two groups; choose data.protected with both values "
                       "in the test split")
    val_s, test_s = val["score"][:, j], test["score"][:, j]
    try:
        threshold = calibrated_threshold(val_s, val_y)
    except MetricInputError as error:
        raise explain_metric_error(error, name, "val") from error
    train = {}
    ba_direction: dict[str, Any] = {"source": "test", "sign_g0": None, "sign_g1": None}
    if train_target is not None and train_protected is not None:
        train = {"train_targets": np.asarray(train_target), "train_protected": np.asarray(train_protected)}
        try:
            signs = bias_direction(**train)
        except MetricInputError as error:
            raise explain_metric_error(error, name, "train") from error
        ba_direction = {"source": "train", "sign_g0": int(signs[0]), "sign_g1": int(signs[1])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = fairness_report(test_s, test_y, test["protected"], threshold, n_bootstrap=n_bootstrap,
                                     seed=seed, **train)
            predictions = predict(test_s, threshold)
            cells = cell_accuracy(predictions, test_y, test[cell_key])
        except MetricInputError as error:
            raise explain_metric_error(error, name, "test") from error
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
        "ba_direction": ba_direction,
        "warnings": notes,
    }


def evaluate_heads(targets: Sequence[str], val: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                   train_targets: np.ndarray, train_cells: np.ndarray, cell_key: str, n_bootstrap: int,
                   seed: int, protected_name: str | None, *,
                   train_protected: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """``evaluate_head`` for every head; the stereotype of each head is read off its training split.

    With ``train_protected`` (the training split's protected attribute, aligned with the rows of
    ``train_targets``), each head's BA takes its direction from that head's training targets and
    ``train_protected``; without it BA = BA_ref (direction from the test split).
    """
    heads = {}
    for j, name in enumerate(targets):
        stereotype = stereotype_direction(train_targets[:, j], train_cells)
        head = evaluate_head(name, j, val, test, cell_key, stereotype["direction"], n_bootstrap, seed,
                             protected_name, train_target=train_targets[:, j] if train_protected is not None else None,
                             train_protected=train_protected)
        head["stereotype"] = stereotype
        heads[name] = head
    return heads
