"""All four fairness metrics on B bootstrap resamples at once, vectorised across resamples.

The reference (Ramaswamy et al.) loops over 500 resamples and calls scikit-learn, np.histogram and
scipy for every one; that costs minutes per evaluation. Here a resample is represented by how many
times it draws each original sample (a (B, n) count matrix from one ``bincount``), with the samples
laid out once in a fixed order: blocks per (target, group) cell, scores descending inside a block.
One cumulative sum per resample row then answers every question the metrics ask by lookup:

* "how many drawn samples of cell c score >= v" is ``cum[start_c + p_c(v)] - cum[start_c]`` with
  ``p_c(v)``, the number of *original* members of c scoring >= v, known before any resampling;
* AP sums, over the distinct positive scores v, tp(v) * TP(>= v) / N(>= v), exactly the
  step-wise sum of ``average_precision_score`` (ties included);
* DEO and BA need cell sizes and predicted-positive counts ([s > thr] is a prefix of each block);
  BA's direction is either recomputed per resample (``BA_ref``, and ``BA`` without training
  labels) or the training split's, fixed across resamples (only the evaluated split is resampled);
* each KL histogram is "drawn samples >= each bin edge" differenced; its edges come from the
  row's own min and max, computed with np.histogram's formula.

The per-resample values are identical (to float rounding) to calling the point-estimate functions
in ``fairness`` on ``scores[idx]`` etc. for each row ``idx`` of ``draw_resamples``; the tests
check exactly that.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from facebias.metrics.histogram_kl import N_BINS, distributions_from_counts, kl_divergence

# Cell of a sample: 2 * target + protected. KL compares cell (y, g=0) with cell (y, g=1).
KL_DIRECTIONS = ("pos_01", "pos_10", "neg_01", "neg_10")
_CELLS_COMPARED = {"pos": (2, 3), "neg": (0, 1)}  # class -> (cell with g=0, cell with g=1)
_TARGET_ELEMENTS_PER_CHUNK = 1 << 20  # keeps the (rows, n) count matrix around 8 MB


def resample_generator(seed: int, resample: int) -> np.random.Generator:
    """The random stream of one resample: the same whatever B is or how the work is chunked."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(resample,)))


def draw_resamples(n: int, n_bootstrap: int, seed: int, rows_per_chunk: int | None = None) -> Iterator[np.ndarray]:
    """Index matrices of the bootstrap resamples, in order, ``rows_per_chunk`` resamples at a time.

    Resample b is ``resample_generator(seed, b).integers(0, n, size=n)``: n draws with replacement,
    the full size of the evaluated split.
    """
    rows_per_chunk = rows_per_chunk or max(1, _TARGET_ELEMENTS_PER_CHUNK // max(n, 1))
    for first in range(0, n_bootstrap, rows_per_chunk):
        rows = range(first, min(first + rows_per_chunk, n_bootstrap))
        block = np.empty((len(rows), n), dtype=np.int64)
        for row, resample in enumerate(rows):
            block[row] = resample_generator(seed, resample).integers(0, n, size=n)
        yield block


@dataclass(frozen=True)
class _Layout:
    """The evaluated split sorted once: blocks per cell, scores descending inside each block."""

    column_of_sample: np.ndarray  # (n,) layout column of each original sample
    starts: np.ndarray  # (5,) block boundaries of cells 0..3
    descending: tuple[np.ndarray, ...]  # per cell: its scores, descending
    ascending: tuple[np.ndarray, ...]  # per cell: its scores, ascending (for searchsorted)
    predicted_in_cell: np.ndarray  # (4,) members with score > threshold (a prefix of each block)
    ap_columns: np.ndarray  # (4, V): start_c + #members of c scoring >= v, v = distinct positive scores

    @classmethod
    def build(cls, scores: np.ndarray, targets: np.ndarray, protected: np.ndarray, threshold: float) -> _Layout:
        cell = 2 * targets.astype(np.int64) + protected
        order = np.lexsort((-scores, cell))
        column_of_sample = np.empty(len(scores), dtype=np.int64)
        column_of_sample[order] = np.arange(len(scores))
        starts = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=4))])
        descending = tuple(scores[order[starts[c]:starts[c + 1]]] for c in range(4))
        ascending = tuple(values[::-1].copy() for values in descending)
        predicted = np.array([np.count_nonzero(values > threshold) for values in descending])
        positive_values = np.unique(scores[targets == 1])[::-1]
        ap_columns = np.stack([
            starts[c] + len(ascending[c]) - np.searchsorted(ascending[c], positive_values, side="left")
            for c in range(4)
        ])
        return cls(column_of_sample, starts, descending, ascending, predicted, ap_columns)


def bootstrap_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    protected: np.ndarray,
    threshold: float,
    n_bootstrap: int,
    seed: int = 0,
    train_direction: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-resample AP, DEO, BA, BA_ref (each (B,)) and KL ((B, 4), columns in KL_DIRECTIONS order).

    ``BA_ref`` takes its direction sign(P(y=1|g=a) - P(y=1)) from each resample itself (the
    reference). ``BA`` uses ``train_direction``, the (2,) signs for g = 0, 1 from the training split
    (``fairness.bias_direction``), the same for every resample; without it ``BA`` equals ``BA_ref``.

    Inputs must already be validated (1-D, same length, float64 scores, 0/1 int labels): call this
    through ``fairness_report``. Resamples where a metric is undefined behave like the reference:
    DEO uses TPR 0 for a group without positives, AP is 0 without positives (scikit-learn's
    value), KL is NaN when a histogram smooths to all zeros; each case is warned about once.
    """
    n = len(scores)
    layout = _Layout.build(scores, targets, protected, threshold)
    direction = None if train_direction is None else np.asarray(train_direction, dtype=np.int64).reshape(1, 2)
    parts: dict[str, list[np.ndarray]] = {"AP": [], "DEO": [], "BA": [], "BA_ref": [], "KL": [], "_no_pos": [],
                                          "_no_tp": []}
    for index_block in draw_resamples(n, n_bootstrap, seed):
        for key, value in _metrics_of_block(index_block, layout, direction).items():
            parts[key].append(value)
    result = {key: np.concatenate(values) for key, values in parts.items()}
    _warn_about_undefined(result.pop("_no_pos"), result.pop("_no_tp"), result["KL"])
    return result


def _count_draws(index_block: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """(rows, n) times each layout column is drawn, and its (rows, n + 1) running sum from 0."""
    rows, n = index_block.shape
    flat = layout.column_of_sample[index_block]
    flat += (np.arange(rows, dtype=np.int64) * n)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * n).reshape(rows, n)
    cum = np.zeros((rows, n + 1), dtype=np.int64)
    np.cumsum(counts, axis=1, out=cum[:, 1:])
    return counts, cum


def _metrics_of_block(index_block: np.ndarray, layout: _Layout, direction: np.ndarray | None,
                      ) -> dict[str, np.ndarray]:
    n = index_block.shape[1]
    counts, cum = _count_draws(index_block, layout)
    starts = layout.starts
    base = cum[:, starts[:4]]  # (rows, 4) drawn samples before each block
    in_cell = cum[:, starts[1:]] - base  # (rows, 4) drawn samples per cell
    predicted = cum[:, starts[:4] + layout.predicted_in_cell] - base  # (rows, 4) with s > thr

    deo, no_positives = _deo(in_cell, predicted)
    ba_ref = _bias_amplification(in_cell, predicted, n)
    return {
        "AP": _average_precision(cum, base, in_cell, layout),
        "DEO": deo,
        "BA": ba_ref if direction is None else _bias_amplification(in_cell, predicted, n, direction),
        "BA_ref": ba_ref,
        "KL": _kl(counts, cum, in_cell, layout),
        "_no_pos": no_positives,
        "_no_tp": in_cell[:, 2] + in_cell[:, 3] == 0,
    }


def _average_precision(cum: np.ndarray, base: np.ndarray, in_cell: np.ndarray, layout: _Layout) -> np.ndarray:
    """sum_v tp(v) * TP(>= v) / N(>= v) / TP over distinct positive scores v (descending)."""
    at_least = cum[:, layout.ap_columns] - base[:, :, None]  # (rows, 4, V): drawn per cell with s >= v
    true_pos = at_least[:, 2] + at_least[:, 3]
    all_pos = at_least.sum(axis=1)
    tp_at_v = np.diff(true_pos, axis=1, prepend=0)
    precision = true_pos / np.maximum(all_pos, 1)
    n_pos = in_cell[:, 2] + in_cell[:, 3]
    weighted = (tp_at_v * precision).sum(axis=1)
    return np.divide(weighted, n_pos, out=np.zeros(len(n_pos)), where=n_pos > 0)


def _deo(in_cell: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|TPR(g=0) - TPR(g=1)|; a group without positives has TPR 0 (recall_score's zero_division)."""
    positives = in_cell[:, 2:4]
    tpr = np.divide(predicted[:, 2:4], positives, out=np.zeros(positives.shape), where=positives > 0)
    return np.abs(tpr[:, 0] - tpr[:, 1]), (positives == 0).any(axis=1)


def _bias_amplification(in_cell: np.ndarray, predicted: np.ndarray, n: int,
                        direction: np.ndarray | None = None) -> np.ndarray:
    """Mean over present groups a of direction_a * (P(yhat=1|a) - P(y=1|a)).

    ``direction`` is the fixed (1, 2) training direction; None: sign(P(y=1|a) - P(y=1)) of each
    resample (BA_ref).
    """
    group_size = in_cell[:, 0:2] + in_cell[:, 2:4]  # (rows, 2): g = 0, 1
    group_pos = in_cell[:, 2:4]
    group_pred = predicted[:, 0:2] + predicted[:, 2:4]
    if direction is None:
        n_pos = group_pos.sum(axis=1, keepdims=True)
        # sign of P(y=1|a) - P(y=1) in exact integer arithmetic: n_pos_a * n - n_pos * n_a
        direction = np.sign(group_pos * n - n_pos * group_size)
    present = group_size > 0
    safe_size = np.maximum(group_size, 1)
    terms = np.where(present, direction * (group_pred / safe_size - group_pos / safe_size), 0.0)
    return terms.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _kl(counts: np.ndarray, cum: np.ndarray, in_cell: np.ndarray, layout: _Layout) -> np.ndarray:
    """(rows, 4) KL values: positives g0||g1, g1||g0, negatives g0||g1, g1||g0."""
    distributions = {cell: distributions_from_counts(_histograms(cell, counts, cum, in_cell, layout))
                     for pair in _CELLS_COMPARED.values() for cell in pair}
    columns = []
    for cell_g0, cell_g1 in _CELLS_COMPARED.values():
        p, q = distributions[cell_g0], distributions[cell_g1]
        columns += [kl_divergence(p, q), kl_divergence(q, p)]
    return np.stack(columns, axis=1)


def _histograms(cell: int, counts: np.ndarray, cum: np.ndarray, in_cell: np.ndarray, layout: _Layout) -> np.ndarray:
    """``score_histogram`` of the cell's drawn scores for every resample row, as (rows, 50) int64.

    Where numpy's edges are strictly increasing its index arithmetic lands each value in the bin
    with e_k <= x < e_k+1 (the last bin closed), which is what the edge lookup computes.
    """
    rows = len(counts)
    start, stop = layout.starts[cell], layout.starts[cell + 1]
    descending, ascending = layout.descending[cell], layout.ascending[cell]
    hist = np.zeros((rows, N_BINS), dtype=np.int64)
    drawn = in_cell[:, cell] > 0
    if not drawn.any():
        return hist  # np.histogram of an empty array: all zeros (the KL becomes NaN)
    block = counts[:, start:stop] > 0
    highest = descending[np.argmax(block, axis=1)]
    lowest = descending[len(descending) - 1 - np.argmax(block[:, ::-1], axis=1)]
    edges = _bin_edges(lowest, highest)
    # drawn samples scoring >= each left edge; the last bin also holds its right edge (the max)
    members_at_least = len(ascending) - np.searchsorted(ascending, edges[:, :N_BINS].ravel(), side="left")
    block_cum = cum[:, start:stop + 1]
    at_least = np.take_along_axis(block_cum, members_at_least.reshape(rows, N_BINS), axis=1) - block_cum[:, :1]
    hist[:, :-1] = at_least[:, :-1] - at_least[:, 1:]
    hist[:, -1] = at_least[:, -1]
    hist[~drawn] = 0
    # np.histogram refuses a range too narrow for 50 distinct edges (a few float steps): undefined.
    hist[drawn & ~np.all(edges[:, 1:] > edges[:, :-1], axis=1)] = -1
    return hist


def _bin_edges(lowest: np.ndarray, highest: np.ndarray) -> np.ndarray:
    """np.histogram's edges for data spanning [lowest, highest], one row per resample.

    Same arithmetic as numpy (a constant range is widened by 0.5 each way; edge k is
    k * step + first, the last edge is exactly the max), so every edge is bit-identical.
    """
    constant = lowest == highest
    first = np.where(constant, lowest - 0.5, lowest)
    last = np.where(constant, highest + 0.5, highest)
    step = (last - first) / N_BINS
    edges = np.arange(N_BINS + 1, dtype=np.float64) * step[:, None] + first[:, None]
    edges[:, -1] = last
    return edges


def _warn_about_undefined(no_positives: np.ndarray, no_true: np.ndarray, kl: np.ndarray) -> None:
    total = len(no_positives)
    if no_positives.any():
        warnings.warn(
            f"{int(no_positives.sum())} of {total} bootstrap resamples have a group without positives; "
            "its TPR is taken as 0 there (as recall_score's zero_division does in the reference)",
            RuntimeWarning, stacklevel=4,
        )
    if no_true.any():
        warnings.warn(f"{int(no_true.sum())} of {total} bootstrap resamples have no positives; AP is 0 there",
                      RuntimeWarning, stacklevel=4)
    nan_rows = np.isnan(kl).any(axis=1)
    if nan_rows.any():
        warnings.warn(
            f"KL is NaN in {int(nan_rows.sum())} of {total} bootstrap resamples: a (class, group) cell is empty, "
            "too small for its integer-smoothed histogram to keep any mass, or its scores span only a few float "
            "steps; KL's median and std are NaN",
            RuntimeWarning, stacklevel=4,
        )
