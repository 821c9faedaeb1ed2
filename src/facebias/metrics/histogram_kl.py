"""Smoothed-histogram KL divergence between two score distributions, as Ramaswamy et al. compute it.

Shared by the point estimate (one histogram pair) and the bootstrap (one histogram pair per
resample), so both smooth, normalise and compare histograms with the very same arithmetic.

The reference smooths the *integer* counts of ``np.histogram`` with
``scipy.ndimage.gaussian_filter``; on an integer array scipy returns integers, i.e. the smoothed
values are truncated towards zero. That truncation is part of the metric (a bin holding fewer than
three samples contributes nothing on its own), so it is kept on purpose.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

N_BINS = 50
SIGMA = 1.0
TRUNCATE = 4.0
EPSILON = 1e-6


def smooth_counts(counts: np.ndarray) -> np.ndarray:
    """Gaussian-smooth integer histogram counts along the last axis, with integer (truncated) output.

    sigma 1, reflect mode, truncate 4: scipy's defaults, which the reference relies on. Each row
    goes through the same scipy routine as ``gaussian_filter`` on that row alone.
    """
    counts = np.asarray(counts)
    if not np.issubdtype(counts.dtype, np.integer):
        raise TypeError(
            f"smooth_counts needs integer histogram counts (got dtype {counts.dtype}): the reference "
            "smooths np.histogram's integer counts and truncates the result"
        )
    return gaussian_filter1d(counts, SIGMA, axis=-1, mode="reflect", truncate=TRUNCATE)


def to_distribution(smoothed: np.ndarray) -> np.ndarray:
    """Normalise smoothed counts to sum 1 per row, then add EPSILON (the result is not renormalised).

    A row whose smoothed counts are all zero (an empty group, or too few samples to survive the
    truncation) becomes NaN, as 0/0 does in the reference.
    """
    smoothed = np.asarray(smoothed, dtype=np.float64)
    total = smoothed.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return smoothed / total + EPSILON


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) = sum over bins with p != 0 of p * ln(p / q), along the last axis.

    ``p != 0`` (not ``p > 0``) so that a NaN distribution propagates to a NaN divergence.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p != 0, p * np.log(p / q), 0.0)
    return terms.sum(axis=-1)


def score_histogram(values: np.ndarray) -> np.ndarray:
    """``np.histogram(values, bins=50)`` counts: 50 equal bins over the values' own min-max range.

    numpy widens a constant range by 0.5 each way and gives all-zero counts for no values. Where
    the range is only a few float steps wide numpy cannot make 50 distinct edges and raises (so
    does the reference); here the histogram is then undefined: a row of -1, which
    ``distributions_from_counts`` turns into NaN.
    """
    try:
        return np.histogram(values, bins=N_BINS)[0]
    except ValueError:  # "Too many bins for data range": the inputs are validated finite
        return np.full(N_BINS, -1, dtype=np.int64)


def distributions_from_counts(counts: np.ndarray) -> np.ndarray:
    """Histogram counts -> the smoothed, normalised, EPSILON-shifted distribution the KL compares.

    Rows holding a negative count (an undefined histogram, see ``score_histogram``) become NaN.
    """
    counts = np.asarray(counts)
    distributions = to_distribution(smooth_counts(counts))
    distributions[(counts < 0).any(axis=-1)] = np.nan
    return distributions
