"""AP, DEO, BA_ref and KL exactly as Ramaswamy et al.'s reference code computes them (docs/design.md §5); BA
with its direction taken from the training split, as Wang & Russakovsky define it.

Notation: y = target in {0, 1}, g = protected attribute in {0, 1} (g = 1: male), s = score
(sigmoid output), thr = the calibrated threshold, prediction yhat = [s > thr] (strict).

Every public function validates its inputs first (``validation``): scores must be finite
probabilities in [0, 1], labels 0/1, all arrays of one length; otherwise ``MetricInputError`` (a
``ValueError``) names the argument, the count and the first rows at fault.

These are the plain, one-sample-set definitions; ``bootstrap`` computes the same quantities on
many resamples at once and is tested against them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score

from facebias.metrics.bootstrap import KL_DIRECTIONS, bootstrap_metrics
from facebias.metrics.histogram_kl import distributions_from_counts, kl_divergence, score_histogram
from facebias.metrics.validation import (
    MetricInputError,
    MetricInputTypeError,
    as_binary,
    as_scores,
    check_same_length,
    require_both_classes,
)


def calibrated_threshold(val_scores, val_targets) -> float:
    """The threshold that would predict as many positives as the validation split holds.

    cp = number of validation positives; thr = the cp-th largest validation score. Predictions
    are ``s > thr`` (strict), so the sample at thr itself and every score tied with it are
    predicted negative: with ties, fewer than cp samples are predicted positive (the reference's
    behaviour, kept on purpose).
    """
    scores = as_scores("val_scores", val_scores)
    targets = as_binary("val_targets", val_targets)
    check_same_length(val_scores=scores, val_targets=targets)
    require_both_classes("val_targets", targets, "the calibrated threshold needs positives and negatives")
    n_positive = int(targets.sum())
    return float(np.sort(scores)[-n_positive])


def predict(scores, threshold: float) -> np.ndarray:
    """yhat = [s > thr] as int8 (a score equal to the threshold predicts 0)."""
    return (as_scores("scores", scores) > _as_threshold(threshold)).astype(np.int8)


def average_precision(scores, targets) -> float:
    """AP of the scores for the targets: scikit-learn's ``average_precision_score``."""
    scores, targets = as_scores("scores", scores), as_binary("targets", targets)
    check_same_length(scores=scores, targets=targets)
    return float(average_precision_score(targets, scores))


def equal_opportunity_difference(predictions, targets, protected) -> float:
    """DEO = |TPR(g=0) - TPR(g=1)| of the binary predictions.

    A group without positives has TPR 0 (what the reference's ``recall_score`` returns, with a
    warning); a warning is raised here too, because the DEO is then just the other group's TPR.
    """
    predictions = as_binary("predictions", predictions)
    targets, protected = as_binary("targets", targets), as_binary("protected", protected)
    check_same_length(predictions=predictions, targets=targets, protected=protected)
    tpr = []
    for group in (0, 1):
        positives = (protected == group) & (targets == 1)
        if not positives.any():
            warnings.warn(f"group protected={group} has no positives: its TPR is taken as 0 (as recall_score "
                          "does in the reference), so DEO is the other group's TPR", RuntimeWarning, stacklevel=2)
            tpr.append(0.0)
        else:
            tpr.append(np.count_nonzero(predictions[positives]) / np.count_nonzero(positives))
    return float(abs(tpr[0] - tpr[1]))


def bias_direction(train_targets, train_protected) -> np.ndarray:
    """The direction of directional BA: sign(P_D(y=1|g=a) - P_D(y=1)) for a = 0, 1 on the training split D.

    Returns int64 [sign for g=0, sign for g=1], computed exactly in integer arithmetic
    (n_pos_a * n - n_pos * n_a). +1: the training labels over-represent y=1 in group a, -1:
    under-represent, 0: no correlation (e.g. training labels of one class only). The training
    split must hold both groups: the direction of an absent group is undefined.
    """
    targets = as_binary("train_targets", train_targets)
    protected = as_binary("train_protected", train_protected)
    check_same_length(train_targets=targets, train_protected=protected)
    require_both_classes("train_protected", protected, "the direction of BA compares the two groups' "
                         "positive rates in the training labels")
    return _direction(targets, protected)


def bias_amplification(predictions, targets, protected, train_targets=None, train_protected=None) -> float:
    """Directional bias amplification attribute -> task (Wang & Russakovsky, 2021), BA_{A->T}.

    BA = 1/2 * sum_{a in {0,1}} sign(P_D(y=1|g=a) - P_D(y=1)) * (P(yhat=1|g=a) - P(y=1|g=a))

    * the direction sign(P_D(y=1|g=a) - P_D(y=1)) comes from the TRAINING split D
      (``train_targets``, ``train_protected``): which way the labels the model learned from
      correlate g with y;
    * the change Delta_a = P(yhat=1|g=a) - P(y=1|g=a) is measured on the evaluated split
      (``predictions``, ``targets``, ``protected``).

    Positive when the predictions push the groups' positive rates further in the training
    correlation's direction (the model amplifies the bias it was trained on), negative when they
    weaken it, 0 when the model treats the groups alike relative to their labels. Without training
    labels D is the evaluated split itself: that is the reference's BA (``BA_ref``). On a split
    balanced over the four (y x g) cells, P(y=1|g=a) = P(y=1) exactly, so BA_ref's sign term is 0
    and BA_ref is 0 whatever the model does; BA with the training direction still measures the
    amplification there. Like the reference (which averages over both classes, whose terms are
    equal, and skips an empty group with nanmean), a group absent from the evaluated split is
    left out, so BA is then the other group's term alone.
    """
    predictions = as_binary("predictions", predictions)
    targets, protected = as_binary("targets", targets), as_binary("protected", protected)
    check_same_length(predictions=predictions, targets=targets, protected=protected)
    direction = _training_direction(train_targets, train_protected)
    return _directional_ba(predictions, targets, protected, direction)


def _directional_ba(predictions: np.ndarray, targets: np.ndarray, protected: np.ndarray,
                    direction: np.ndarray | None) -> float:
    """Mean over the groups present of direction_a * (P(yhat=1|g=a) - P(y=1|g=a)) (validated inputs).

    ``direction`` None: sign(P(y=1|g=a) - P(y=1)) of this split (BA_ref).
    """
    if direction is None:
        direction = _direction(targets, protected)
    terms = []
    for group in (0, 1):
        members = protected == group
        size = int(members.sum())
        if size == 0:
            continue
        group_pos, group_pred = int(targets[members].sum()), int(predictions[members].sum())
        terms.append(direction[group] * (group_pred / size - group_pos / size))
    return float(np.mean(terms))


def _direction(targets: np.ndarray, protected: np.ndarray) -> np.ndarray:
    """sign(P(y=1|g=a) - P(y=1)) for a = 0, 1, exactly; 0 for an absent group (validated 0/1 inputs)."""
    n, n_pos = len(targets), int(targets.sum())
    signs = []
    for group in (0, 1):
        members = protected == group
        signs.append(np.sign(int(targets[members].sum()) * n - n_pos * int(members.sum())))
    return np.array(signs, dtype=np.int64)


def _training_direction(train_targets, train_protected) -> np.ndarray | None:
    """``bias_direction`` of the training labels, or None when neither is given (both or neither)."""
    if train_targets is None and train_protected is None:
        return None
    if train_targets is None or train_protected is None:
        given, missing = ("train_targets", "train_protected")[:: 1 if train_protected is None else -1]
        raise MetricInputError(f"{given} was given without {missing}: BA's training direction needs both "
                               "(or neither, to take the direction from the evaluated split = BA_ref)",
                               argument=missing, problem="option")
    return bias_direction(train_targets, train_protected)


def score_kl_divergences(scores, targets, protected) -> dict[str, float]:
    """KL between the score distributions of g=0 and g=1, for positives and negatives separately.

    Each histogram has 50 bins over *its own* min-max range (np.histogram's default), its integer
    counts are Gaussian-smoothed with integer (truncated) output, normalised to sum 1 and shifted
    by 1e-6 (see ``histogram_kl``). Keys: ``pos_01`` = KL(p_pos,g=0 || p_pos,g=1), ``pos_10`` the
    reverse, ``neg_01`` / ``neg_10`` likewise on the negatives. A cell that is empty or too small
    to survive the truncation gives NaN (as 0/0 in the reference), with a warning; so does a cell
    whose scores span only a few float steps (where the reference's np.histogram raises).
    """
    scores = as_scores("scores", scores)
    targets, protected = as_binary("targets", targets), as_binary("protected", protected)
    check_same_length(scores=scores, targets=targets, protected=protected)
    values = {}
    for name, label in (("pos", 1), ("neg", 0)):
        p, q = (distributions_from_counts(score_histogram(scores[(protected == g) & (targets == label)]))
                for g in (0, 1))
        values[f"{name}_01"], values[f"{name}_10"] = float(kl_divergence(p, q)), float(kl_divergence(q, p))
    undefined = [key for key, value in values.items() if np.isnan(value)]
    if undefined:
        warnings.warn(f"KL {', '.join(undefined)} is NaN: a (class, group) cell is empty, too small for its "
                      "integer-smoothed histogram to keep any mass, or its scores span only a few float steps", RuntimeWarning, stacklevel=2)
    return values


def fairness_report(scores, targets, protected, threshold: float, n_bootstrap: int = 0, seed: int = 0,
                    train_targets=None, train_protected=None) -> dict[str, float]:
    """AP, DEO, BA, BA_ref and KL of one evaluated split, as fractions (x100 for tables, except KL).

    ``threshold`` is the calibrated threshold of the *validation* split (``calibrated_threshold``);
    predictions are ``scores > threshold``.

    Point estimates on the split itself: ``AP``, ``DEO``; ``KL`` is the mean of the four
    single-direction values, also reported as ``KL_pos_01``, ``KL_pos_10``, ``KL_neg_01``,
    ``KL_neg_10`` (01: KL(g=0 || g=1); pos/neg: among targets 1/0).

    ``BA`` is directional bias amplification attribute -> task (``bias_amplification``): the sign
    of each group's term, sign(P_D(y=1|g=a) - P_D(y=1)), from the training labels
    ``train_targets``/``train_protected`` (this head's training targets and the training split's
    protected attribute), the change P(yhat=1|g=a) - P(y=1|g=a) on the evaluated split. ``BA_ref``
    is the reference's (gan-debiasing) BA, whose sign comes from the evaluated split too; on a test
    split balanced over the (y x g) cells that sign is 0, so BA_ref is 0 (its bootstrap median is
    only the sign of resampling noise). Without training labels BA equals BA_ref.

    With ``n_bootstrap`` = B > 0, also ``<M>_median`` and ``<M>_std`` (population std, np.std) for
    M in AP, DEO, BA, BA_ref over B resamples of the evaluated split with replacement at full size,
    seeded by ``seed``; BA's training direction stays fixed (the training split is not resampled),
    BA_ref's is recomputed on each resample. KL's median and std pool the 4*B single-direction
    values, as the reference does. All metrics share the same resamples (the reference draws
    fresh, unseeded ones per metric).
    """
    scores = as_scores("scores", scores)
    targets, protected = as_binary("targets", targets), as_binary("protected", protected)
    check_same_length(scores=scores, targets=targets, protected=protected)
    threshold = _as_threshold(threshold)
    require_both_classes("targets", targets, "AP and DEO need positives and negatives")
    require_both_classes("protected", protected, "fairness metrics compare the two groups")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise MetricInputError(f"n_bootstrap must be a non-negative integer (got {n_bootstrap!r}); 0 skips the "
                               "bootstrap", argument="n_bootstrap", problem="option")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MetricInputError(f"seed must be a non-negative integer (got {seed!r})", argument="seed",
                               problem="option")
    direction = _training_direction(train_targets, train_protected)

    predictions = (scores > threshold).astype(np.int8)
    kl = score_kl_divergences(scores, targets, protected)
    ba_ref = _directional_ba(predictions, targets, protected, None)
    report = {
        "AP": average_precision(scores, targets),
        "DEO": equal_opportunity_difference(predictions, targets, protected),
        "BA": ba_ref if direction is None else _directional_ba(predictions, targets, protected, direction),
        "BA_ref": ba_ref,
        "KL": float(np.mean([kl[key] for key in KL_DIRECTIONS])),
    }
    report.update({f"KL_{key}": kl[key] for key in KL_DIRECTIONS})
    if n_bootstrap:
        resampled = bootstrap_metrics(scores, targets, protected, threshold, int(n_bootstrap), seed,
                                      train_direction=direction)
        for name, values in resampled.items():
            report[f"{name}_median"] = float(np.median(values))
            report[f"{name}_std"] = float(np.std(values))
    return report


def _as_threshold(threshold) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise MetricInputTypeError(f"threshold must be a number (got {threshold!r}); use calibrated_threshold on "
                                   "the validation split", argument="threshold", problem="dtype") from None
    if not np.isfinite(value):
        raise MetricInputError(f"threshold must be finite (got {value}); use calibrated_threshold on the validation "
                               "split", argument="threshold", problem="non_finite")
    return value
