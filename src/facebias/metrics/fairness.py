"""AP, DEO, BA and KL exactly as Ramaswamy et al.'s reference code computes them (DESIGN §5).

Notation: y = target in {0, 1}, g = protected attribute in {0, 1} (g = 1: male), s = score
(sigmoid output), thr = the calibrated threshold, prediction yhat = [s > thr] (strict).

These are the plain, one-sample-set definitions; ``bootstrap`` computes the same quantities on
many resamples at once and is tested against them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score

from facebias.metrics.bootstrap import KL_DIRECTIONS, bootstrap_metrics
from facebias.metrics.histogram_kl import distributions_from_counts, kl_divergence, score_histogram
from facebias.metrics.validation import as_binary, as_scores, check_same_length, require_both_classes


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


def bias_amplification(predictions, targets, protected) -> float:
    """Directional bias amplification, attribute -> task (Wang & Russakovsky), on this split alone.

    BA = 1/2 * sum_a sign(P(y=1|g=a) - P(y=1)) * (P(yhat=1|g=a) - P(y=1|g=a)): positive when the
    predictions exaggerate the correlation between g and y present in the labels, negative when
    they weaken it, 0 for a group whose positive rate equals the overall one. The reference
    averages over both classes y in {0, 1}, whose terms are equal, and skips (nanmean) an empty
    group; so with one group absent BA is that group's term alone, which is then 0.
    """
    predictions = as_binary("predictions", predictions)
    targets, protected = as_binary("targets", targets), as_binary("protected", protected)
    n = check_same_length(predictions=predictions, targets=targets, protected=protected)
    n_pos = int(targets.sum())
    terms = []
    for group in (0, 1):
        members = protected == group
        size = int(members.sum())
        if size == 0:
            continue
        group_pos, group_pred = int(targets[members].sum()), int(predictions[members].sum())
        direction = np.sign(group_pos * n - n_pos * size)  # sign(P(y=1|a) - P(y=1)), exactly
        terms.append(direction * (group_pred / size - group_pos / size))
    return float(np.mean(terms))


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


def fairness_report(scores, targets, protected, threshold: float, n_bootstrap: int = 0,
                    seed: int = 0) -> dict[str, float]:
    """AP, DEO, BA and KL of one evaluated split, as fractions (multiply AP, DEO, BA by 100 for tables).

    ``threshold`` is the calibrated threshold of the *validation* split (``calibrated_threshold``);
    predictions are ``scores > threshold``.

    Point estimates on the split itself: ``AP``, ``DEO``, ``BA``; ``KL`` is the mean of the four
    single-direction values, also reported as ``KL_pos_01``, ``KL_pos_10``, ``KL_neg_01``,
    ``KL_neg_10`` (01: KL(g=0 || g=1); pos/neg: among targets 1/0).

    With ``n_bootstrap`` = B > 0, also ``<M>_median`` and ``<M>_std`` (population std, np.std) for
    M in AP, DEO, BA over B resamples with replacement at full size, seeded by ``seed``; KL's
    median and std pool the 4*B single-direction values, as the reference does. All four metrics
    share the same resamples (the reference draws fresh, unseeded ones per metric).
    """
    scores = as_scores("scores", scores)
    targets, protected = as_binary("targets", targets), as_binary("protected", protected)
    check_same_length(scores=scores, targets=targets, protected=protected)
    threshold = _as_threshold(threshold)
    require_both_classes("targets", targets, "AP and DEO need positives and negatives")
    require_both_classes("protected", protected, "fairness metrics compare the two groups")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer (got {n_bootstrap!r}); 0 skips the bootstrap")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")

    predictions = (scores > threshold).astype(np.int8)
    kl = score_kl_divergences(scores, targets, protected)
    report = {
        "AP": average_precision(scores, targets),
        "DEO": equal_opportunity_difference(predictions, targets, protected),
        "BA": bias_amplification(predictions, targets, protected),
        "KL": float(np.mean([kl[key] for key in KL_DIRECTIONS])),
    }
    report.update({f"KL_{key}": kl[key] for key in KL_DIRECTIONS})
    if n_bootstrap:
        resampled = bootstrap_metrics(scores, targets, protected, threshold, int(n_bootstrap), seed)
        for name, values in resampled.items():
            report[f"{name}_median"] = float(np.median(values))
            report[f"{name}_std"] = float(np.std(values))
    return report


def _as_threshold(threshold) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise TypeError(f"threshold must be a number (got {threshold!r}); use calibrated_threshold on the "
                        "validation split") from None
    if not np.isfinite(value):
        raise ValueError(f"threshold must be finite (got {value}); use calibrated_threshold on the validation split")
    return value
