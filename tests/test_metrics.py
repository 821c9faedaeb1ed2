"""Fairness metrics: hand-computed answers, agreement with the reference-style computation, bad inputs."""

import math
import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.metrics import recall_score

from facebias.metrics import (
    MetricInputError,
    average_precision,
    bias_amplification,
    bias_direction,
    calibrated_threshold,
    cell_accuracy,
    equal_opportunity_difference,
    fairness_report,
    predict,
    score_kl_divergences,
    stereotype_gap,
)
from facebias.metrics.histogram_kl import smooth_counts

EPS = 1e-6


# ---------------------------------------------------------------- slow reference implementations
def slow_kl_pair(a, b):
    """The reference's recipe written out plainly: np.histogram, scipy gaussian_filter, normalise, KL."""
    pa = gaussian_filter(np.histogram(a, bins=50)[0], sigma=1)
    pb = gaussian_filter(np.histogram(b, bins=50)[0], sigma=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = pa / pa.sum() + EPS
        pb = pb / pb.sum() + EPS
        forward = np.sum(np.where(pa != 0, pa * np.log(pa / pb), 0))
        backward = np.sum(np.where(pb != 0, pb * np.log(pb / pa), 0))
    return forward, backward


def slow_kl(scores, targets, protected):
    out = {}
    for name, label in (("pos", 1), ("neg", 0)):
        a = scores[(protected == 0) & (targets == label)]
        b = scores[(protected == 1) & (targets == label)]
        out[f"{name}_01"], out[f"{name}_10"] = slow_kl_pair(a, b)
    return out


def slow_ba(predictions, targets, protected):
    """BA the reference's way: a 2x2 (class x group) table, both classes, nanmean over the 4 entries."""
    diff = np.full((2, 2), np.nan)
    n = len(targets)
    for t in (0, 1):
        p_t = np.mean(targets == t)
        for g in (0, 1):
            members = protected == g
            with np.errstate(invalid="ignore", divide="ignore"):
                p_t_g = np.sum(members & (targets == t)) / members.sum()
                p_hat_g = np.sum(members & (predictions == t)) / members.sum()
            sign = np.sign(p_t_g - p_t)
            diff[t, g] = 0.0 if sign == 0 else sign * (p_hat_g - p_t_g)
    assert n > 0
    return np.nanmean(diff)


def planted_data(n, seed, decimals=None):
    """Scores that depend on the target and (less) on the group; rounding makes ties."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, n)
    protected = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(1.5 * (2 * targets - 1) + 0.8 * protected + rng.normal(0, 1, n))))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, targets, protected


# ---------------------------------------------------------------- calibrated threshold
def test_calibrated_threshold_is_the_cp_th_largest_score_with_ties():
    # cp = 2 positives; scores descending 0.9, 0.8, 0.8, 0.3, 0.1 -> the 2nd largest is 0.8
    scores = [0.8, 0.9, 0.3, 0.8, 0.1]
    targets = [1, 0, 0, 1, 0]
    thr = calibrated_threshold(scores, targets)
    assert thr == 0.8
    # strict >: both scores tied at 0.8 predict 0, so only ONE positive prediction although cp = 2
    assert predict(scores, thr).tolist() == [0, 1, 0, 0, 0]


def test_calibrated_threshold_without_ties():
    # cp = 2; descending 0.9, 0.7, 0.4, 0.2 -> 0.7; s > 0.7 predicts only the 0.9
    assert calibrated_threshold(np.array([0.2, 0.7, 0.4, 0.9]), np.array([0, 1, 1, 0])) == 0.7


@pytest.mark.filterwarnings("ignore:KL")
def test_a_score_equal_to_the_threshold_predicts_zero_in_the_report():
    # g0 positives score 0.5 (== thr) and 0.9 -> TPR 1/2; g1 positives 0.9, 0.8 -> TPR 1; DEO = 0.5
    # (with >= it would be 0)
    scores = [0.5, 0.9, 0.9, 0.8, 0.1, 0.2]
    targets = [1, 1, 1, 1, 0, 0]
    protected = [0, 0, 1, 1, 0, 1]
    assert fairness_report(scores, targets, protected, threshold=0.5)["DEO"] == pytest.approx(0.5)


# ---------------------------------------------------------------- AP
def test_average_precision_hand_computed_with_a_tie():
    # descending: 0.9 (y1), 0.8 (y0), 0.8 (y1), 0.3 (y0); thresholds 0.9 -> P=1, R=1/2;
    # 0.8 (tie, both enter) -> P=2/3, R=1; AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision([0.9, 0.8, 0.8, 0.3], [1, 0, 1, 0]) == pytest.approx(5 / 6)


@pytest.mark.parametrize(("scores", "targets", "expected"), [
    # no ties: 0.9 (y1) P=1 R=1/3; 0.7 (y1) P=2/3 R=2/3; 0.5 (y1) P=3/5 R=1 -> AP = (1 + 2/3 + 3/5) / 3
    ([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 1], (1 + 2 / 3 + 3 / 5) / 3),
    # every score tied: one threshold, P = 2/4 at R = 1 -> AP = 1/2 (not the 1 a positive-first order would give)
    ([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 1], 1 / 2),
    # perfect ranking -> 1; worst ranking (the positive last of 3) -> P = 1/3 at R = 1
    ([0.2, 0.9, 0.8, 0.1], [0, 1, 1, 0], 1.0),
    ([0.9, 0.8, 0.1], [0, 0, 1], 1 / 3),
    # tied blocks: >=0.9: TP 1 of 2 -> P 1/2, R 1/4; >=0.6: TP 3 of 5 -> P 3/5, R 3/4; >=0.2: TP 4 of 6 -> P 2/3, R 1
    # AP = 1/4 * 1/2 + (3/4 - 1/4) * 3/5 + (1 - 3/4) * 2/3 = 1/8 + 3/10 + 1/6 = 71/120
    ([0.9, 0.9, 0.6, 0.6, 0.6, 0.2], [1, 0, 1, 1, 0, 1], 71 / 120),
    # a tie across the positives only changes nothing: 0.7, 0.7 both y1 -> P=1 at R=1
    ([0.7, 0.7, 0.3], [1, 1, 0], 1.0),
])
def test_average_precision_hand_computed_small_arrays(scores, targets, expected):
    assert average_precision(scores, targets) == pytest.approx(expected, rel=1e-15)


# ---------------------------------------------------------------- DEO
@pytest.mark.filterwarnings("ignore:KL")
def test_deo_hand_computed():
    # thr 0.5: g0 positives 0.9 0.8 0.7 0.2 -> TPR 3/4; g1 positives 0.95 0.6 -> TPR 2/2; DEO = 1/4
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.95, 0.6, 0.7, 0.1, 0.9, 0.3])
    targets = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    protected = np.array([0, 0, 0, 0, 1, 1, 0, 0, 1, 1])
    assert equal_opportunity_difference(predict(scores, 0.5), targets, protected) == pytest.approx(0.25)
    assert fairness_report(scores, targets, protected, 0.5)["DEO"] == pytest.approx(0.25)


def test_deo_group_without_positives_has_tpr_zero_like_recall_score():
    # g1 has no positives -> TPR(g1) = 0; g0 positives predicted 1, 0, 1 -> TPR 2/3; DEO = 2/3
    predictions = np.array([1, 0, 1, 1, 0])
    targets = np.array([1, 1, 1, 0, 0])
    protected = np.array([0, 0, 0, 1, 1])
    with pytest.warns(RuntimeWarning, match="no positives"):
        deo = equal_opportunity_difference(predictions, targets, protected)
    assert deo == pytest.approx(2 / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's own zero_division warning
        sk_g1 = recall_score(targets[protected == 1], predictions[protected == 1])
    assert sk_g1 == 0.0


def test_deo_matches_recall_score_on_random_data():
    scores, targets, protected = planted_data(1500, seed=5)
    predictions = predict(scores, 0.6)
    expected = abs(recall_score(targets[protected == 0], predictions[protected == 0])
                   - recall_score(targets[protected == 1], predictions[protected == 1]))
    assert equal_opportunity_difference(predictions, targets, protected) == pytest.approx(expected, abs=1e-15)


# ---------------------------------------------------------------- BA
# g1: y = 1 1 1 0 -> P(y=1|g1) = 3/4; g0: y = 1 0 0 0 -> P(y=1|g0) = 1/4; P(y=1) = 1/2
BA_TARGETS = np.array([1, 1, 1, 0, 1, 0, 0, 0])
BA_PROTECTED = np.array([1, 1, 1, 1, 0, 0, 0, 0])


def test_ba_positive_when_predictions_amplify_the_correlation():
    # yhat: all 1 for g1 (P=1), all 0 for g0 (P=0)
    # g1: sign(+) * (1 - 3/4) = +1/4 ; g0: sign(-) * (0 - 1/4) = +1/4 ; BA = (1/4 + 1/4) / 2 = 1/4
    predictions = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert bias_amplification(predictions, BA_TARGETS, BA_PROTECTED) == pytest.approx(0.25)


def test_ba_negative_when_predictions_weaken_the_correlation():
    # yhat rate 1/2 in both groups; g1: +1 * (1/2 - 3/4) = -1/4 ; g0: -1 * (1/2 - 1/4) = -1/4 ; BA = -1/4
    predictions = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    assert bias_amplification(predictions, BA_TARGETS, BA_PROTECTED) == pytest.approx(-0.25)


def test_ba_zero_when_group_rates_equal_the_overall_rate():
    # P(y=1|g) = 1/2 = P(y=1) in both groups: sign 0, BA = 0 whatever the predictions
    targets = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    assert bias_amplification(np.ones(8, int), targets, BA_PROTECTED) == 0.0


def test_ba_direction_comes_from_the_training_split():
    # training labels with the OPPOSITE correlation: g1 y = 1 0 0 0 0 (1/5), g0 y = 1 1 1 0 0 (3/5); P_D(y=1) = 4/10
    # direction: g1 sign(1/5 - 2/5) = -1, g0 sign(3/5 - 2/5) = +1
    train_targets = [1, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    train_protected = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert bias_direction(train_targets, train_protected).tolist() == [1, -1]  # [g=0, g=1]
    # evaluated split BA_TARGETS: P(y=1|g1) = 3/4, P(y=1|g0) = 1/4; yhat = g
    # Delta_g1 = 1 - 3/4 = +1/4, Delta_g0 = 0 - 1/4 = -1/4; BA = 1/2 * (-1 * 1/4 + 1 * -1/4) = -1/4
    predictions = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert bias_amplification(predictions, BA_TARGETS, BA_PROTECTED, train_targets, train_protected) == \
        pytest.approx(-0.25)
    # the evaluated split's own direction (g1 +, g0 -) gives +1/4: the reference BA
    assert bias_amplification(predictions, BA_TARGETS, BA_PROTECTED) == pytest.approx(0.25)
    # training labels with the same direction as the test split give the same value
    assert bias_amplification(predictions, BA_TARGETS, BA_PROTECTED, BA_TARGETS, BA_PROTECTED) == pytest.approx(0.25)


def test_ba_is_zero_when_the_training_labels_carry_no_correlation():
    # P_D(y=1|g) = 1/2 = P_D(y=1) in both groups: both signs 0, BA = 0 whatever the predictions
    train_targets, train_protected = [1, 0, 1, 0, 1, 1, 0, 0], [1, 1, 0, 0, 1, 0, 1, 0]
    assert bias_direction(train_targets, train_protected).tolist() == [0, 0]
    assert bias_amplification([1, 1, 1, 1, 0, 0, 0, 0], BA_TARGETS, BA_PROTECTED, train_targets,
                              train_protected) == 0.0
    # training labels of one class only: P_D(y=1|g) = P_D(y=1) = 1, no direction either
    assert bias_direction([1, 1, 1], [0, 1, 1]).tolist() == [0, 0]


def concept_detector_split(m, seed):
    """A balanced test split (m per (y, g) cell) scored by a pure concept detector: high iff g = 1, whatever y."""
    rng = np.random.default_rng(seed)
    targets = np.repeat([1, 1, 0, 0], m)
    protected = np.repeat([1, 0, 1, 0], m)
    scores = np.where(protected == 1, rng.uniform(0.6, 1.0, 4 * m), rng.uniform(0.0, 0.4, 4 * m))
    return scores, targets, protected


def test_p100_concept_detector_amplifies_on_a_balanced_split_while_ba_ref_is_zero():
    # training at P = 100: every positive has the concept, no negative has it: 300 g1 (all y=1), 500 g0 (all y=0)
    train_targets = np.array([1] * 300 + [0] * 500)
    train_protected = np.array([1] * 300 + [0] * 500)
    # P_D(y=1) = 300/800 = 3/8; direction g1: sign(1 - 3/8) = +1, g0: sign(0 - 3/8) = -1
    # test: 50 per cell, yhat = [s > 0.5] = g, so P(yhat=1|g1) = 1, P(yhat=1|g0) = 0, P(y=1|g) = 50/100
    # BA = 1/2 * (+1 * (1 - 50/100) + -1 * (0 - 50/100)) = 1/2 * (1/2 + 1/2) = 1/2
    expected_ba = 0.5 * (1 * (1 - 50 / 100) + -1 * (0 - 50 / 100))
    # BA_ref: its sign is sign(P(y=1|g) - P(y=1)) = sign(50/100 - 100/200) = 0 for both groups -> 0
    scores, targets, protected = concept_detector_split(50, seed=0)
    ba_ref_median_signs = set()
    for seed in range(5):
        report = fairness_report(scores, targets, protected, 0.5, n_bootstrap=200, seed=seed,
                                 train_targets=train_targets, train_protected=train_protected)
        assert report["BA"] == pytest.approx(expected_ba, abs=1e-15)
        assert report["BA_ref"] == 0.0
        assert report["BA_median"] > 0
        # resampled: BA = 1/2 (1 - p1 + p0) with p_a the resample's P(y=1|g=a): close to 1/2 every time;
        # BA_ref is +-1/2 depending on which group the noise favours, so its spread is about 1/2
        assert report["BA_median"] == pytest.approx(0.5, abs=0.1) and report["BA_std"] < 0.1
        assert report["BA_ref_std"] > 0.3
        ba_ref_median_signs.add(np.sign(report["BA_ref_median"]))
    assert ba_ref_median_signs == {-1.0, 1.0}  # BA_ref's bootstrap median is only the sign of resampling noise


def test_ba_of_a_model_that_ignores_the_group_is_near_zero():
    # scores depend on y only; the training labels are strongly correlated (P(y=1|g1) = 0.9, P(y=1|g0) = 0.1)
    rng = np.random.default_rng(3)
    m = 1000
    targets = np.repeat([1, 1, 0, 0], m)
    protected = np.repeat([1, 0, 1, 0], m)
    scores = 1 / (1 + np.exp(-(1.5 * (2 * targets - 1) + rng.normal(0, 1, 4 * m))))
    train_protected = rng.integers(0, 2, 5000)
    train_targets = (rng.random(5000) < np.where(train_protected == 1, 0.9, 0.1)).astype(int)
    for threshold in (0.3, 0.5, 0.7):  # a miscalibrated threshold shifts both groups alike: still ~0
        report = fairness_report(scores, targets, protected, threshold, n_bootstrap=100, seed=0,
                                 train_targets=train_targets, train_protected=train_protected)
        assert abs(report["BA"]) < 0.02 and abs(report["BA_median"]) < 0.02


def test_ba_without_training_labels_equals_ba_ref():
    scores, targets, protected = planted_data(800, seed=12)
    report = fairness_report(scores, targets, protected, 0.5, n_bootstrap=50, seed=3)
    for suffix in ("", "_median", "_std"):
        assert report[f"BA{suffix}"] == report[f"BA_ref{suffix}"]
    # and the point value is the hand-checked reference BA
    assert report["BA_ref"] == bias_amplification(predict(scores, 0.5), targets, protected)


def test_ba_needs_both_training_arrays_and_both_training_groups():
    predictions, targets, protected = [1, 0, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]
    with pytest.raises(MetricInputError, match="train_targets was given without train_protected"):
        bias_amplification(predictions, targets, protected, train_targets=[1, 0])
    with pytest.raises(MetricInputError, match="train_protected was given without train_targets"):
        fairness_report([0.9, 0.1, 0.8, 0.2], targets, protected, 0.5, train_protected=[1, 0])
    with pytest.raises(MetricInputError, match="train_protected holds only the class 1"):
        bias_amplification(predictions, targets, protected, [1, 0, 1], [1, 1, 1])
    with pytest.raises(MetricInputError, match=r"length mismatch \(train_targets=3, train_protected=2\)"):
        bias_direction([1, 0, 1], [1, 0])
    with pytest.raises(MetricInputError, match="train_targets must hold only 0 and 1.*row 1 \\(-1\\)"):
        bias_direction([1, -1, 0], [1, 0, 0])


def test_ba_matches_the_reference_two_by_two_table_on_random_data():
    scores, targets, protected = planted_data(1000, seed=7)
    for thr in (0.3, 0.5, 0.8):
        predictions = predict(scores, thr)
        assert bias_amplification(predictions, targets, protected) == pytest.approx(
            slow_ba(predictions, targets, protected), abs=1e-15)


# ---------------------------------------------------------------- KL
def test_integer_smoothing_truncates_hand_computed():
    # normalised Gaussian weights (sigma 1, radius 4): w0 = 0.398943, w1 = 0.241971, w2 = 0.053991,
    # w3 = 0.004432, w4 = 0.000134.  10 samples in bin 25: 3.989 -> 3, 2.420 -> 2, 0.540 -> 0
    counts = np.zeros(50, dtype=np.int64)
    counts[25] = 10
    expected = np.zeros(50, dtype=np.int64)
    expected[24:27] = [2, 3, 2]
    assert smooth_counts(counts).tolist() == expected.tolist()
    # reflect at the border: bin 0 sees its own value twice, 10 * (w0 + w1) = 6.41 -> 6,
    # bin 1: 10 * (w1 + w2) = 2.96 -> 2, bin 2: 10 * (w2 + w3) = 0.58 -> 0
    counts = np.zeros(50, dtype=np.int64)
    counts[0], counts[49] = 10, 30  # 30 * (w0+w1) = 19.2, 30 * (w1+w2) = 8.88, 30 * (w2+w3) = 1.75
    expected = np.zeros(50, dtype=np.int64)
    expected[[0, 1, 47, 48, 49]] = [6, 2, 1, 8, 19]
    assert smooth_counts(counts).tolist() == expected.tolist()
    with pytest.raises(TypeError, match="integer"):
        smooth_counts(counts.astype(float))


def test_smoothing_rows_equals_scipy_gaussian_filter_per_row():
    counts = np.random.default_rng(0).integers(0, 400, size=(300, 50))
    counts[::7] //= 97  # many tiny counts, where truncation bites
    rows = np.stack([gaussian_filter(row, sigma=1) for row in counts])
    assert np.array_equal(smooth_counts(counts), rows)


def hand_kl_data(g1_low, g1_high):
    """Positives: g0 has 10 at 0.0 and 10 at 1.0; g1 has 10 at g1_low and 30 at g1_high.
    Negatives: 5 at 0.2 and 5 at 0.4 in both groups (identical distributions)."""
    scores = [0.0] * 10 + [1.0] * 10 + [g1_low] * 10 + [g1_high] * 30 + [0.2, 0.4] * 5 + [0.2, 0.4] * 5
    targets = [1] * 60 + [0] * 20
    protected = [0] * 20 + [1] * 40 + [0] * 10 + [1] * 10
    return np.array(scores), np.array(targets), np.array(protected)


def expected_hand_kl():
    # each positive histogram spans its own min..max, so both have all mass in bins 0 and 49:
    # g0: bins 0, 49 = 10, 10 -> smoothed (see above) [6, 2, 0 ... 0, 2, 6], sum 16
    # g1: bins 0, 49 = 10, 30 -> smoothed [6, 2, 0 ... 0, 1, 8, 19], sum 36
    p = np.zeros(50)
    q = np.zeros(50)
    p[[0, 1, 48, 49]] = [6 / 16, 2 / 16, 2 / 16, 6 / 16]
    q[[0, 1, 47, 48, 49]] = [6 / 36, 2 / 36, 1 / 36, 8 / 36, 19 / 36]
    p, q = p + EPS, q + EPS  # no renormalising after adding 1e-6
    forward = sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))  # bins 2..46 add e*ln(1) = 0
    backward = sum(qk * math.log(qk / pk) for pk, qk in zip(p, q, strict=True))
    return forward, backward


def test_kl_hand_computed_on_a_tiny_case():
    forward, backward = expected_hand_kl()
    kl = score_kl_divergences(*hand_kl_data(0.0, 1.0))
    assert kl["pos_01"] == pytest.approx(forward, rel=1e-12)
    assert kl["pos_10"] == pytest.approx(backward, rel=1e-12)
    assert kl["neg_01"] == 0.0 and kl["neg_10"] == 0.0
    report = fairness_report(*hand_kl_data(0.0, 1.0), threshold=0.5)
    assert report["KL"] == pytest.approx((forward + backward) / 4, rel=1e-12)
    assert report["KL_pos_01"] == kl["pos_01"]


def test_kl_bins_span_each_histograms_own_range():
    # moving g1's positives to 0.5 / 0.7 changes nothing: its 50 bins now span [0.5, 0.7]
    # (a shared range over both groups would put them in bins 25 and 35 instead)
    forward, backward = expected_hand_kl()
    kl = score_kl_divergences(*hand_kl_data(0.5, 0.7))
    assert kl["pos_01"] == pytest.approx(forward, rel=1e-12)
    assert kl["pos_10"] == pytest.approx(backward, rel=1e-12)


@pytest.mark.parametrize("decimals", [None, 2])
def test_kl_matches_the_slow_reference(decimals):
    scores, targets, protected = planted_data(3000, seed=11, decimals=decimals)
    kl = score_kl_divergences(scores, targets, protected)
    slow = slow_kl(scores, targets, protected)
    for key, value in slow.items():
        assert kl[key] == pytest.approx(value, rel=1e-13, abs=1e-15)
        assert value > 0


def test_kl_of_a_too_small_cell_is_nan_with_a_warning():
    # one g1 positive: its histogram is a single 1, smoothed to 0.399 -> 0 everywhere -> 0/0
    scores = np.array([0.1, 0.5, 0.9, 0.7, 0.2, 0.3, 0.25, 0.35])
    targets = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    protected = np.array([0, 0, 0, 1, 0, 0, 1, 1])
    with pytest.warns(RuntimeWarning, match="pos_01"):
        kl = score_kl_divergences(scores, targets, protected)
    assert math.isnan(kl["pos_01"]) and math.isnan(kl["pos_10"])
    assert all(math.isnan(v) for v in slow_kl(scores, targets, protected).values())  # so is the reference


# ---------------------------------------------------------------- bootstrap
def looped_bootstrap(scores, targets, protected, threshold, n_bootstrap, seed, train=None):
    """The straightforward way: one resample at a time through the point-estimate functions.

    ``train``: (train_targets, train_protected), never resampled, for BA's direction.
    """
    from facebias.metrics.bootstrap import draw_resamples

    train = train or (None, None)
    rows = {"AP": [], "DEO": [], "BA": [], "BA_ref": [], "KL": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for block in draw_resamples(len(scores), n_bootstrap, seed, rows_per_chunk=7):
            for idx in block:
                s, y, g = scores[idx], targets[idx], protected[idx]
                yhat = predict(s, threshold)
                rows["AP"].append(average_precision(s, y))
                rows["DEO"].append(equal_opportunity_difference(yhat, y, g))
                rows["BA"].append(bias_amplification(yhat, y, g, *train))
                rows["BA_ref"].append(bias_amplification(yhat, y, g))
                kl = score_kl_divergences(s, y, g)
                rows["KL"].append([kl["pos_01"], kl["pos_10"], kl["neg_01"], kl["neg_10"]])
    return {key: np.array(values) for key, values in rows.items()}


def correlated_training_labels(n, seed, p_g1=0.8, p_g0=0.3):
    rng = np.random.default_rng(seed + 100)
    train_protected = rng.integers(0, 2, n)
    return (rng.random(n) < np.where(train_protected == 1, p_g1, p_g0)).astype(int), train_protected


@pytest.mark.parametrize(("n", "decimals", "seed"), [(600, None, 0), (500, 2, 1), (300, 1, 2)])
def test_vectorised_bootstrap_equals_the_loop(n, decimals, seed):
    from facebias.metrics.bootstrap import bootstrap_metrics

    scores, targets, protected = planted_data(n, seed=seed, decimals=decimals)
    train = correlated_training_labels(700, seed, p_g1=0.3, p_g0=0.8)  # opposite to the test split's
    thr = float(np.median(scores))  # rounded scores: some equal the threshold exactly
    fast = bootstrap_metrics(scores, targets.astype(np.int8), protected.astype(np.int8), thr, 40, seed,
                             train_direction=bias_direction(*train))
    slow = looped_bootstrap(scores, targets, protected, thr, 40, seed, train=train)
    for key in ("AP", "DEO", "BA", "BA_ref", "KL"):
        np.testing.assert_allclose(fast[key], slow[key], rtol=1e-12, atol=1e-14, err_msg=key)
    # g and y are independent in this test split: BA_ref's direction follows the noise of each resample, BA's not
    assert (np.sign(slow["BA"]) != np.sign(slow["BA_ref"])).any()
    report = fairness_report(scores, targets, protected, thr, n_bootstrap=40, seed=seed, train_targets=train[0],
                             train_protected=train[1])
    for key in ("AP", "DEO", "BA", "BA_ref", "KL"):
        assert report[f"{key}_median"] == pytest.approx(np.median(slow[key]), rel=1e-12, abs=1e-14)
        assert report[f"{key}_std"] == pytest.approx(np.std(slow[key]), rel=1e-9, abs=1e-14)


def test_bootstrap_kl_pools_the_four_directions():
    scores, targets, protected = planted_data(400, seed=4)
    report = fairness_report(scores, targets, protected, 0.5, n_bootstrap=30, seed=9)
    slow = looped_bootstrap(scores, targets, protected, 0.5, 30, 9)["KL"]
    pooled = np.concatenate([slow[:, 0], slow[:, 2], slow[:, 1], slow[:, 3]])  # the reference's list order
    assert report["KL_median"] == pytest.approx(np.median(pooled), rel=1e-12)
    assert report["KL_std"] == pytest.approx(np.std(pooled), rel=1e-9)
    # not the median of the per-resample mean of the four directions (another plausible reading)
    assert report["KL_median"] != pytest.approx(np.median(slow.mean(axis=1)), rel=1e-6)


def test_bootstrap_handles_tiny_cells_constant_and_ulp_wide_ranges_like_the_loop():
    from facebias.metrics.bootstrap import bootstrap_metrics

    rng = np.random.default_rng(5)
    base = np.nextafter(0.5, 1.0)
    ulp_wide = np.repeat(base + np.arange(6) * np.spacing(base), 10)  # np.histogram raises: NaN instead
    scores = np.concatenate([rng.random(40), ulp_wide, np.full(20, 0.3), rng.random(4)])
    targets = np.array([1] * 40 + [1] * 60 + [0] * 20 + [0] * 4)
    protected = np.array([0] * 40 + [1] * 60 + [1] * 20 + [0] * 4)  # neg g1 constant, neg g0 tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fast = bootstrap_metrics(scores, targets.astype(np.int8), protected.astype(np.int8), 0.5, 60, 3)
    slow = looped_bootstrap(scores, targets, protected, 0.5, 60, 3)
    assert np.isnan(slow["KL"][:, :2]).all()  # the ulp-wide positive cell of g1
    assert np.isnan(slow["KL"][:, 2:]).any() and np.isfinite(slow["KL"][:, 2:]).any()  # the tiny cell
    for key in ("AP", "DEO", "BA", "BA_ref", "KL"):
        np.testing.assert_allclose(fast[key], slow[key], rtol=1e-12, atol=1e-14, err_msg=key)


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (0.1, 0.3), (0.37, 0.93)])
def test_resampled_histograms_equal_np_histogram_with_values_on_bin_edges(low, high):
    from facebias.metrics.bootstrap import _count_draws, _histograms, _Layout, draw_resamples

    # every value is (nearly) a bin edge of the full range: the edge arithmetic is stressed
    grid = low + (high - low) * np.arange(51) / 50
    scores = np.concatenate([grid, grid[::3], np.random.default_rng(1).uniform(low, high, 60)])
    n = len(scores)
    targets, protected = np.ones(n, dtype=np.int8), np.zeros(n, dtype=np.int8)  # one cell: (y=1, g=0)
    layout = _Layout.build(scores, targets, protected, 0.5)
    block = next(draw_resamples(n, 200, seed=0, rows_per_chunk=200))
    counts, cum = _count_draws(block, layout)
    in_cell = cum[:, layout.starts[1:]] - cum[:, layout.starts[:4]]
    hist = _histograms(2, counts, cum, in_cell, layout)
    expected = np.stack([np.histogram(scores[idx], bins=50)[0] for idx in block])
    assert np.array_equal(hist, expected)
    # the full split itself (each sample drawn once) spans exactly [low, high]
    identity = np.arange(n)[None, :]
    counts, cum = _count_draws(identity, layout)
    in_cell = cum[:, layout.starts[1:]] - cum[:, layout.starts[:4]]
    assert np.array_equal(_histograms(2, counts, cum, in_cell, layout)[0], np.histogram(scores, bins=50)[0])


def test_bootstrap_warns_and_reports_nan_when_kl_is_undefined_in_some_resamples():
    scores = np.array([0.1, 0.5, 0.9, 0.7, 0.2, 0.3, 0.25, 0.35, 0.6, 0.4])
    targets = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    protected = np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
    with pytest.warns(RuntimeWarning, match="KL is NaN"):
        report = fairness_report(scores, targets, protected, 0.5, n_bootstrap=20)
    assert math.isnan(report["KL_median"])
    assert not math.isnan(report["AP_median"])


def test_resamples_do_not_depend_on_chunking_or_on_b():
    from facebias.metrics.bootstrap import draw_resamples

    whole = np.vstack(list(draw_resamples(101, 9, seed=4)))
    chunked = np.vstack(list(draw_resamples(101, 9, seed=4, rows_per_chunk=2)))
    longer = np.vstack(list(draw_resamples(101, 15, seed=4, rows_per_chunk=4)))
    assert whole.shape == (9, 101)
    assert np.array_equal(whole, chunked) and np.array_equal(whole, longer[:9])
    assert not np.array_equal(whole, np.vstack(list(draw_resamples(101, 9, seed=5))))


def test_report_keys_and_seeded_reproducibility():
    scores, targets, protected = planted_data(300, seed=8)
    point = fairness_report(scores, targets, protected, 0.5)
    assert set(point) == {"AP", "DEO", "BA", "BA_ref", "KL", "KL_pos_01", "KL_pos_10", "KL_neg_01", "KL_neg_10"}
    boot = fairness_report(scores, targets, protected, 0.5, n_bootstrap=10, seed=1)
    assert set(boot) == set(point) | {f"{m}_{s}" for m in ("AP", "DEO", "BA", "BA_ref", "KL")
                                      for s in ("median", "std")}
    assert boot == fairness_report(scores, targets, protected, 0.5, n_bootstrap=10, seed=1)
    assert boot["AP_median"] != fairness_report(scores, targets, protected, 0.5, n_bootstrap=10, seed=2)["AP_median"]
    assert all(isinstance(v, float) for v in boot.values())


# ---------------------------------------------------------------- bad inputs
GOOD = dict(scores=[0.1, 0.9, 0.4, 0.6], targets=[0, 1, 0, 1], protected=[0, 0, 1, 1])


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"scores": [0.1, 0.9, 0.4]}, ValueError, "length mismatch.*scores=3"),
    ({"targets": [0, 1, 2, 1]}, ValueError, r"targets must hold only 0 and 1.*row 2 \(2\)"),
    ({"protected": [0, -1, 1, 1]}, ValueError, r"protected must hold only 0 and 1.*row 1 \(-1\)"),
    ({"scores": [0.1, np.nan, 0.4, 0.6]}, ValueError, r"non-finite.*row 1 \(nan\)"),
    ({"scores": [0.1, 0.9, np.inf, 0.6]}, ValueError, r"non-finite.*row 2 \(inf\)"),
    ({"scores": [0.1, 3.2, 0.4, 0.6]}, ValueError, r"outside \[0, 1\].*row 1 \(3.2\).*look like logits"),
    ({"train_targets": [1, 0]}, ValueError, "train_targets was given without train_protected"),
    ({"targets": [1, 1, 1, 1]}, ValueError, "targets holds only the class 1"),
    ({"protected": [0, 0, 0, 0]}, ValueError, "protected holds only the class 0"),
    ({"scores": [], "targets": [], "protected": []}, ValueError, "scores is empty"),
    ({"scores": [[0.1, 0.9, 0.4, 0.6]]}, ValueError, "must be 1-D"),
    ({"scores": ["a", "b", "c", "d"]}, TypeError, "real numbers"),
])
def test_fairness_report_rejects_bad_input(change, error, match):
    with pytest.raises(error, match=match):
        fairness_report(**{**GOOD, **change}, threshold=0.5)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"threshold": float("nan")}, ValueError, "threshold must be finite"),
    ({"threshold": "high"}, TypeError, "threshold must be a number"),
    ({"threshold": 0.5, "n_bootstrap": -1}, ValueError, "n_bootstrap"),
    ({"threshold": 0.5, "n_bootstrap": 2.5}, ValueError, "n_bootstrap"),
    ({"threshold": 0.5, "n_bootstrap": 3, "seed": -1}, ValueError, "seed must be"),
])
def test_fairness_report_rejects_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        fairness_report(**GOOD, **kwargs)


def test_calibrated_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="val_targets holds only the class 0"):
        calibrated_threshold([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="val_targets holds only the class 1"):
        calibrated_threshold([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="length mismatch"):
        calibrated_threshold([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="val_scores is empty"):
        calibrated_threshold([], [])
    with pytest.raises(ValueError, match="non-finite"):
        calibrated_threshold([0.1, float("nan")], [0, 1])
    with pytest.raises(MetricInputError, match=r"val_scores has 1 value outside \[0, 1\].*look like logits"):
        calibrated_threshold([-2.5, 0.2], [0, 1])


# Every public metric function validates first, and every error it raises is a MetricInputError.
NAN_SCORES = [0.1, np.nan, 0.4, np.nan, 0.6, 0.5]  # 2 NaN, at rows 1 and 3
LOGIT_SCORES = [0.1, 3.2, 0.4, -1.0, 0.6, 0.5]  # 2 outside [0, 1], at rows 1 and 3
TARGETS_6 = [0, 1, 0, 1, 1, 0]
PROTECTED_6 = [0, 0, 1, 1, 0, 1]
SCORE_FUNCTIONS = {
    "fairness_report": lambda s: fairness_report(s, TARGETS_6, PROTECTED_6, 0.5),
    "average_precision": lambda s: average_precision(s, TARGETS_6),
    "score_kl_divergences": lambda s: score_kl_divergences(s, TARGETS_6, PROTECTED_6),
    "calibrated_threshold": lambda s: calibrated_threshold(s, TARGETS_6),
    "predict": lambda s: predict(s, 0.5),
}


@pytest.mark.parametrize("function", SCORE_FUNCTIONS)
def test_nan_scores_are_refused_with_the_count_and_first_rows(function):
    with pytest.raises(MetricInputError, match=r"scores has 2 non-finite value\(s\) \(2 NaN values\), the first at "
                       r"rows 1 \(nan\), 3 \(nan\): the model produced NaN outputs") as caught:
        SCORE_FUNCTIONS[function](NAN_SCORES)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.problem, error.count, error.rows, error.detail) == ("non_finite", 2, (1, 3), "2 NaN values")


@pytest.mark.parametrize("function", SCORE_FUNCTIONS)
def test_logits_are_refused_as_not_probabilities(function):
    with pytest.raises(MetricInputError, match=r"scores has 2 values outside \[0, 1\] \(min -1, max 3.2\), the first "
                       r"at rows 1 \(3.2\), 3 \(-1.0\): these look like logits.*pass sigmoid scores") as caught:
        SCORE_FUNCTIONS[function](LOGIT_SCORES)
    assert (caught.value.problem, caught.value.count, caught.value.rows) == ("out_of_range", 2, (1, 3))


@pytest.mark.filterwarnings("ignore:KL")
def test_scores_exactly_0_and_1_are_probabilities():
    report = fairness_report([0.0, 1.0, 0.0, 1.0], [0, 1, 0, 1], [0, 0, 1, 1], 0.5)
    assert report["AP"] == 1.0


@pytest.mark.parametrize("call", [
    lambda: fairness_report([0.1, 0.9, 0.4, 0.6], [0, 1, 2, 1], [0, 0, 1, 1], 0.5),
    lambda: equal_opportunity_difference([0, 1, 0, 1], [0, 1, 2, 1], [0, 0, 1, 1]),
    lambda: bias_amplification([0, 1, 0, 1], [0, 1, 2, 1], [0, 0, 1, 1]),
    lambda: average_precision([0.1, 0.9, 0.4, 0.6], [0, 1, 2, 1]),
    lambda: calibrated_threshold([0.1, 0.9, 0.4, 0.6], [0, 1, 2, 1]),
])
def test_targets_of_2_are_refused(call):
    with pytest.raises(MetricInputError, match=r"targets must hold only 0 and 1 but has 1 other value\(s\), the first "
                       r"at row 2 \(2\)") as caught:
        call()
    assert (caught.value.problem, caught.value.count, caught.value.rows) == ("not_binary", 1, (2,))


def test_many_bad_rows_show_the_first_five_and_the_total():
    scores = np.full(100, 0.5)
    scores[10:40] = np.nan
    scores[50] = np.inf
    with pytest.raises(MetricInputError, match=r"31 non-finite value\(s\) \(30 NaN and 1 inf values\), the first at "
                       r"rows 10 \(nan\), 11 \(nan\), 12 \(nan\), 13 \(nan\), 14 \(nan\), \.\.\.: the model "
                       r"produced NaN and infinite outputs"):
        average_precision(scores, np.arange(100) % 2)


def test_length_mismatch_and_type_errors_are_metric_input_errors():
    with pytest.raises(MetricInputError, match=r"length mismatch \(predictions=3, targets=4, protected=4\)"):
        equal_opportunity_difference([0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1])
    with pytest.raises(MetricInputError, match="real numbers") as caught:
        average_precision(["a", "b"], [0, 1])
    assert isinstance(caught.value, TypeError)  # still a TypeError for callers catching that


def test_accepts_bool_and_float_labels_and_float32_scores():
    report = fairness_report(np.array([0.1, 0.9, 0.4, 0.6], dtype=np.float32), [0.0, 1.0, 0.0, 1.0],
                             [False, False, True, True], threshold=0.5)
    assert report["AP"] == 1.0 and report["DEO"] == 0.0


# ---------------------------------------------------------------- cells
def test_cell_accuracy_and_stereotype_gap_hand_computed():
    # y1_c1: 4 samples, 4 right -> 1.0 | y1_c0: 4 samples, 1 right -> 0.25
    # y0_c1: 2 samples, 0 right -> 0.0 | y0_c0: 2 samples, 2 right -> 1.0
    targets = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    concept = [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0]
    predictions = [1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]
    cells = cell_accuracy(predictions, targets, concept)
    assert cells == {"y1_c1": {"accuracy": 1.0, "count": 4}, "y1_c0": {"accuracy": 0.25, "count": 4},
                     "y0_c1": {"accuracy": 0.0, "count": 2}, "y0_c0": {"accuracy": 1.0, "count": 2}}
    # stereotypical (y1_c1, y0_c0): (1 + 1) / 2 = 1; counter (y1_c0, y0_c1): (0.25 + 0) / 2 = 0.125
    gap = stereotype_gap(cells)
    assert gap == {"stereotypical": 1.0, "counter_stereotypical": 0.125, "gap": 0.875}
    assert stereotype_gap(cells, stereotype="negative")["gap"] == -0.875


def test_cells_bad_input():
    with pytest.raises(ValueError, match="stereotype must be one of"):
        stereotype_gap({}, stereotype="male")
    with pytest.raises(KeyError, match="lacks the cells"):
        stereotype_gap({"y1_c1": {"accuracy": 1.0, "count": 1}})
    with pytest.raises(ValueError, match="concept must hold only 0 and 1"):
        cell_accuracy([1, 0], [1, 0], [1, 3])
    with pytest.warns(RuntimeWarning, match="no samples"):
        cells = cell_accuracy([1, 0], [1, 0], [1, 1])
    assert math.isnan(cells["y0_c0"]["accuracy"]) and cells["y0_c0"]["count"] == 0


# ---------------------------------------------------------------- evaluation.heads: BA's direction, named errors
def head_split(scores, targets, protected):
    return {"score": np.asarray(scores, dtype=np.float32)[:, None], "target": np.asarray(targets)[:, None],
            "protected": np.asarray(protected), "concept": np.asarray(protected)}


def test_evaluate_heads_takes_ba_direction_from_the_training_split():
    from facebias.evaluation.heads import evaluate_head, evaluate_heads

    val = head_split([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0], [1, 0, 1, 0])  # 2 positives -> threshold 0.8
    scores, targets, protected = concept_detector_split(10, seed=1)  # yhat = [s > 0.8]: within g1 only
    test = head_split(scores, targets, protected)
    train_targets = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]])  # head 0: y = g, head 1: y = 1 - g (+ a 0)
    train_protected = np.array([1, 1, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        heads = evaluate_heads(["A", "B"], {**val, "target": np.c_[val["target"], val["target"]],
                                            "score": np.c_[val["score"], val["score"]]},
                               {**test, "target": np.c_[test["target"], test["target"]],
                                "score": np.c_[test["score"], test["score"]]},
                               train_targets, train_protected, "concept", 0, 0, "Male", train_protected=train_protected)
        plain = evaluate_head("A", 0, val, test, "concept", "positive", 0, 0, "Male")
    predicted_g1 = float(np.mean(test["score"][protected == 1, 0] > np.float32(0.8)))  # P(yhat=1|g1); g0: 0
    # head A: training direction g1 +1, g0 -1 (P_D(y=1) = 2/5); Delta_g1 = predicted_g1 - 1/2, Delta_g0 = 0 - 1/2
    assert heads["A"]["ba_direction"] == {"source": "train", "sign_g0": -1, "sign_g1": 1}
    assert heads["A"]["test"]["BA"] == pytest.approx(0.5 * ((predicted_g1 - 0.5) + 0.5), abs=1e-12)
    # head B: y = 1 - g in training (P_D(y=1|g1) = 0, P_D(y=1|g0) = 2/3, P_D(y=1) = 2/5): direction g1 -1, g0 +1
    assert heads["B"]["ba_direction"] == {"source": "train", "sign_g0": 1, "sign_g1": -1}
    assert heads["B"]["test"]["BA"] == pytest.approx(-heads["A"]["test"]["BA"], abs=1e-12)
    assert heads["A"]["test"]["BA_ref"] == heads["B"]["test"]["BA_ref"] == 0.0  # balanced test split
    # without train_protected: BA's direction from the test split, BA = BA_ref
    assert plain["ba_direction"]["source"] == "test"
    assert plain["test"]["BA"] == plain["test"]["BA_ref"] == 0.0


def test_evaluate_head_names_the_head_and_split_of_bad_scores():
    from facebias.evaluation.heads import EvaluationInputError, evaluate_head

    val = head_split([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0], [1, 0, 1, 0])
    scores = np.linspace(0.05, 0.95, 24)
    scores[[17, 19, 20]] = np.nan
    test = head_split(scores, np.arange(24) % 2, (np.arange(24) // 2) % 2)
    with pytest.raises(EvaluationInputError, match=r"^head 'Male': the test scores contain 3 NaN values "
                       r"\(first at row 17\) — the model produced NaN outputs$"):
        evaluate_head("Male", 0, val, test, "concept", "positive", 0, 0, "Eyeglasses")
    logits = head_split([3.2, 0.8, -1.0, 0.2], [1, 1, 0, 0], [1, 0, 1, 0])
    with pytest.raises(EvaluationInputError, match=r"^head 'Smiling': the val scores contain 2 values outside "
                       r"\[0, 1\] \(first at row 0\) — they look like logits"):
        evaluate_head("Smiling", 0, logits, test, "concept", "positive", 0, 0, "Male")
    good_test = head_split(np.linspace(0.05, 0.95, 24), np.arange(24) % 2, (np.arange(24) // 2) % 2)
    with pytest.raises(EvaluationInputError, match=r"^head 'Smiling', train split: train_protected holds only the "
                       "class 0"):
        evaluate_head("Smiling", 0, val, good_test, "concept", "positive", 0, 0, "Male",
                      train_target=np.array([1, 0, 1]), train_protected=np.array([0, 0, 0]))
    with pytest.raises(EvaluationInputError, match=r"^head 'Smiling', train split: train_targets must hold only 0 "
                       r"and 1.*row 1 \(-1\)"):
        evaluate_head("Smiling", 0, val, good_test, "concept", "positive", 0, 0, "Male",
                      train_target=np.array([1, -1, 0]), train_protected=np.array([0, 1, 1]))
