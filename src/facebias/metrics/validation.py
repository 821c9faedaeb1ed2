"""Input checks for the metrics: turn arrays, lists or tensors into clean 1-D numpy arrays or fail clearly.

Every error names the argument at fault, how many values are wrong, the first offending rows and
what would fix it (in the spirit of sklearn.metrics' checks), so a bad evaluation dump is found at
the metric call and not as a NaN in a results table. All of them are ``MetricInputError`` (a
``ValueError``; the dtype errors are also ``TypeError``), which carries the details as attributes
so a caller can re-word the message for its own context (e.g. naming the model head and split).
"""

from __future__ import annotations

import numpy as np

FIRST_ROWS_SHOWN = 5


class MetricInputError(ValueError):
    """Bad input to a metric function.

    Attributes (``None`` / empty when they do not apply):

    * ``argument``: the argument at fault (``"scores"``, ``"targets"``, ``"train_protected"``...);
    * ``problem``: ``"non_finite"``, ``"out_of_range"``, ``"not_binary"``, ``"length_mismatch"``,
      ``"empty"``, ``"shape"``, ``"dtype"``, ``"one_class"``, ``"option"``;
    * ``count``: how many values are wrong; ``rows``: the first offending rows (positions);
    * ``detail``: the problem in a few words (e.g. ``"3 NaN values"``), for re-worded messages.
    """

    def __init__(self, message: str, *, argument: str | None = None, problem: str | None = None,
                 count: int | None = None, rows: tuple[int, ...] = (), detail: str | None = None) -> None:
        super().__init__(message)
        self.argument, self.problem, self.count, self.rows, self.detail = argument, problem, count, rows, detail


class MetricInputTypeError(MetricInputError, TypeError):
    """An argument of the wrong type or dtype: both a ``MetricInputError`` and a ``TypeError``."""


def _rows(positions: np.ndarray) -> tuple[int, ...]:
    return tuple(int(p) for p in positions[:FIRST_ROWS_SHOWN])


def _listed(array: np.ndarray, positions: np.ndarray) -> str:
    """'rows 1 (nan), 4 (inf)' for the first offending positions, '...' when there are more."""
    shown = ", ".join(f"{int(p)} ({array[p].item()!r})" for p in positions[:FIRST_ROWS_SHOWN])
    more = ", ..." if positions.size > FIRST_ROWS_SHOWN else ""
    return f"row{'s' if positions.size > 1 else ''} {shown}{more}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def as_vector(name: str, values) -> np.ndarray:
    """A non-empty 1-D numpy array (lists, numpy arrays and CPU tensors are accepted)."""
    if hasattr(values, "detach"):  # a torch tensor: no grad, on the CPU, as numpy
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricInputError(
            f"{name} must be 1-D (one value per sample) but has shape {array.shape}; "
            "flatten it (e.g. .ravel()) or pick the column you mean", argument=name, problem="shape")
    if array.size == 0:
        raise MetricInputError(f"{name} is empty: the metrics need at least one sample", argument=name,
                               problem="empty")
    return array


def as_scores(name: str, values) -> np.ndarray:
    """Finite probabilities in [0, 1] as float64 (float32 sigmoid outputs are widened, never rounded).

    NaN or inf -> ``MetricInputError`` (problem ``non_finite``) with the count of each and the first
    rows; values below 0 or above 1 -> ``out_of_range``: they look like logits, pass sigmoid scores.
    """
    array = as_vector(name, values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise MetricInputTypeError(f"{name} must hold real numbers (got dtype {array.dtype})", argument=name,
                                   problem="dtype")
    array = array.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        n_nan = int(np.count_nonzero(np.isnan(array[bad])))
        n_inf = bad.size - n_nan
        parts = [_plural(n, kind + " value") for n, kind in ((n_nan, "NaN"), (n_inf, "inf")) if n]
        detail = " and ".join(parts) if len(parts) == 1 else f"{n_nan} NaN and {n_inf} inf values"
        cause = {(True, False): "NaN outputs", (False, True): "infinite outputs"}.get(
            (n_nan > 0, n_inf > 0), "NaN and infinite outputs")
        raise MetricInputError(
            f"{name} has {bad.size} non-finite value(s) ({detail}), the first at {_listed(array, bad)}: "
            f"the model produced {cause}; fix the model output or remove those samples before computing metrics",
            argument=name, problem="non_finite", count=int(bad.size), rows=_rows(bad), detail=detail)
    outside = np.flatnonzero((array < 0) | (array > 1))
    if outside.size:
        detail = _plural(int(outside.size), "value") + " outside [0, 1]"
        raise MetricInputError(
            f"{name} has {detail} (min {array.min():g}, max {array.max():g}), the first at "
            f"{_listed(array, outside)}: these look like logits, not probabilities; pass sigmoid scores "
            "(e.g. torch.sigmoid(logits)) to the metrics",
            argument=name, problem="out_of_range", count=int(outside.size), rows=_rows(outside), detail=detail)
    return array


def as_binary(name: str, values) -> np.ndarray:
    """Labels in {0, 1} (bool, int or float 0./1.) as int8."""
    array = as_vector(name, values)
    if array.dtype == bool:
        return array.astype(np.int8)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise MetricInputTypeError(f"{name} must hold 0/1 labels (got dtype {array.dtype})", argument=name,
                                   problem="dtype")
    bad = np.flatnonzero((array != 0) & (array != 1))
    if bad.size:
        detail = _plural(int(bad.size), "value") + " other than 0 and 1"
        raise MetricInputError(
            f"{name} must hold only 0 and 1 but has {bad.size} other value(s), the first at "
            f"{_listed(array, bad)}; map the labels to {{0, 1}} first (CelebA's -1 -> 0)",
            argument=name, problem="not_binary", count=int(bad.size), rows=_rows(bad), detail=detail)
    return array.astype(np.int8)


def check_same_length(**arrays: np.ndarray) -> int:
    """The common length of the named arrays; a mismatch lists every length."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise MetricInputError(f"length mismatch ({listed}): pass one value per sample in every argument",
                               argument=", ".join(lengths), problem="length_mismatch", detail=listed)
    return next(iter(lengths.values()))


def require_both_classes(name: str, labels: np.ndarray, why: str) -> None:
    """Fail when a 0/1 label vector holds only one of the two classes."""
    n_positive = int(labels.sum())
    if n_positive == 0 or n_positive == len(labels):
        only = "1" if n_positive else "0"
        raise MetricInputError(
            f"{name} holds only the class {only} ({len(labels)} samples): {why}; "
            "evaluate on a split that contains both classes",
            argument=name, problem="one_class", detail=f"only the class {only} ({len(labels)} samples)")
