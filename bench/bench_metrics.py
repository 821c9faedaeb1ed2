"""Bootstrap speed: vectorised fairness_report vs a per-resample loop in the reference's style, one core.

    .venv/bin/python bench/bench_metrics.py [--n 20000] [--resamples 500]

Both sides see the same resamples (``draw_resamples``), so their medians/stds must agree; the
script prints both timings, the ratio and the largest disagreement.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, set before numpy loads its thread pools

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402
from sklearn.metrics import average_precision_score, recall_score  # noqa: E402

from facebias.metrics import calibrated_threshold, fairness_report  # noqa: E402
from facebias.metrics.bootstrap import draw_resamples  # noqa: E402


def planted_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Men (g=1) score higher than women at equal target: a model with a planted group shortcut."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, n)
    protected = (rng.random(n) < np.where(targets == 1, 0.7, 0.3)).astype(int)
    logits = 2.0 * (2 * targets - 1) + 1.2 * (2 * protected - 1) + rng.normal(0, 1.5, n)
    return (1 / (1 + np.exp(-logits))).astype(np.float32).astype(np.float64), targets, protected


def loop_kl(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    pa = gaussian_filter(np.histogram(a, bins=50)[0], sigma=1)
    pb = gaussian_filter(np.histogram(b, bins=50)[0], sigma=1)
    pa = pa / pa.sum() + 1e-6
    pb = pb / pb.sum() + 1e-6
    return float(np.sum(pa * np.log(pa / pb))), float(np.sum(pb * np.log(pb / pa)))


def loop_ba(pred: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    terms = []
    for a in (0, 1):
        members = g == a
        p_y_a, p_hat_a = y[members].mean(), pred[members].mean()
        terms.append(np.sign(p_y_a - y.mean()) * (p_hat_a - p_y_a))
    return float(np.mean(terms))


def looped_report(scores, targets, protected, threshold, resamples, seed) -> dict[str, float]:
    """The reference's way: one resample at a time through scikit-learn, np.histogram and scipy."""
    values: dict[str, list[float]] = {"AP": [], "DEO": [], "BA": [], "KL": []}
    pred_all = (scores > threshold).astype(int)
    for block in draw_resamples(len(scores), resamples, seed):
        for idx in block:
            s, y, g, pred = scores[idx], targets[idx], protected[idx], pred_all[idx]
            values["AP"].append(average_precision_score(y, s))
            values["DEO"].append(abs(recall_score(y[g == 0], pred[g == 0]) - recall_score(y[g == 1], pred[g == 1])))
            values["BA"].append(loop_ba(pred, y, g))
            for label in (1, 0):
                values["KL"] += loop_kl(s[(g == 0) & (y == label)], s[(g == 1) & (y == label)])
    summary = {}
    for name, vals in values.items():
        summary[f"{name}_median"], summary[f"{name}_std"] = float(np.median(vals)), float(np.std(vals))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    val_scores, val_targets, _ = planted_split(args.n, seed=args.seed + 1)
    scores, targets, protected = planted_split(args.n, seed=args.seed)
    threshold = calibrated_threshold(val_scores, val_targets)
    fairness_report(scores[:500], targets[:500], protected[:500], threshold, n_bootstrap=2)  # warm-up

    start = time.perf_counter()
    fast = fairness_report(scores, targets, protected, threshold, n_bootstrap=args.resamples, seed=args.seed)
    fast_s = time.perf_counter() - start

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slow = looped_report(scores, targets, protected, threshold, args.resamples, args.seed)
    slow_s = time.perf_counter() - start

    print(f"n={args.n} resamples={args.resamples} threshold={threshold:.4f} (one core)")
    for name in ("AP", "DEO", "BA", "KL"):
        print(f"  {name:3s} point {fast[name]:.5f}  median {fast[name + '_median']:.5f}  "
              f"std {fast[name + '_std']:.5f}")
    worst = max(abs(fast[key] - slow[key]) for key in slow)
    print(f"vectorised fairness_report: {fast_s:.3f} s   (target < 2 s)")
    print(f"per-resample loop:          {slow_s:.3f} s")
    print(f"speed-up: {slow_s / fast_s:.1f}x   largest |median/std difference|: {worst:.2e}")


if __name__ == "__main__":
    main()
