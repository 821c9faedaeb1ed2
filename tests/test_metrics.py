"""Fairness metrics: hand-computed answers, agreement with the reference-style computation, bad inputs."""

import math
import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.metrics import average_precision_score, recall_score

from facebias.metrics import (
    average_precision,
    bias_amplification,
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


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_average_precision_matches_sklearn_on_random_data(decimals):
    scores, targets, _ = planted_data(2000, seed=3, decimals=decimals)
    assert average_precision(scores, targets) == average_precision_score(targets, scores)


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
def looped_bootstrap(scores, targets, protected, threshold, n_bootstrap, seed):
    """The straightforward way: one resample at a time through the point-estimate functions."""
    from facebias.metrics.bootstrap import draw_resamples

    rows = {"AP": [], "DEO": [], "BA": [], "KL": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for block in draw_resamples(len(scores), n_bootstrap, seed, rows_per_chunk=7):
            for idx in block:
                s, y, g = scores[idx], targets[idx], protected[idx]
                yhat = predict(s, threshold)
                rows["AP"].append(average_precision(s, y))
                rows["DEO"].append(equal_opportunity_difference(yhat, y, g))
                rows["BA"].append(bias_amplification(yhat, y, g))
                kl = score_kl_divergences(s, y, g)
                rows["KL"].append([kl["pos_01"], kl["pos_10"], kl["neg_01"], kl["neg_10"]])
    return {key: np.array(values) for key, values in rows.items()}


@pytest.mark.parametrize(("n", "decimals", "seed"), [(600, None, 0), (500, 2, 1), (300, 1, 2)])
def test_vectorised_bootstrap_equals_the_loop(n, decimals, seed):
    from facebias.metrics.bootstrap import bootstrap_metrics

    scores, targets, protected = planted_data(n, seed=seed, decimals=decimals)
    thr = float(np.median(scores))  # rounded scores: some equal the threshold exactly
    fast = bootstrap_metrics(scores, targets.astype(np.int8), protected.astype(np.int8), thr, 40, seed)
    slow = looped_bootstrap(scores, targets, protected, thr, 40, seed)
    for key in ("AP", "DEO", "BA", "KL"):
        np.testing.assert_allclose(fast[key], slow[key], rtol=1e-12, atol=1e-14, err_msg=key)
    report = fairness_report(scores, targets, protected, thr, n_bootstrap=40, seed=seed)
    for key in ("AP", "DEO", "BA", "KL"):
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
    for key in ("AP", "DEO", "BA", "KL"):
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
    assert set(point) == {"AP", "DEO", "BA", "KL", "KL_pos_01", "KL_pos_10", "KL_neg_01", "KL_neg_10"}
    boot = fairness_report(scores, targets, protected, 0.5, n_bootstrap=10, seed=1)
    assert set(boot) == set(point) | {f"{m}_{s}" for m in ("AP", "DEO", "BA", "KL") for s in ("median", "std")}
    assert boot == fairness_report(scores, targets, protected, 0.5, n_bootstrap=10, seed=1)
    assert boot["AP_median"] != fairness_report(scores, targets, protected, 0.5, n_bootstrap=10, seed=2)["AP_median"]
    assert all(isinstance(v, float) for v in boot.values())


# ---------------------------------------------------------------- bad inputs
GOOD = dict(scores=[0.1, 0.9, 0.4, 0.6], targets=[0, 1, 0, 1], protected=[0, 0, 1, 1])


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"scores": [0.1, 0.9, 0.4]}, ValueError, "length mismatch.*scores=3"),
    ({"targets": [0, 1, 2, 1]}, ValueError, "targets must hold only 0 and 1.*position 2"),
    ({"protected": [0, -1, 1, 1]}, ValueError, "protected must hold only 0 and 1.*position 1"),
    ({"scores": [0.1, np.nan, 0.4, 0.6]}, ValueError, "non-finite.*position 1"),
    ({"scores": [0.1, 0.9, np.inf, 0.6]}, ValueError, "non-finite.*position 2"),
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
