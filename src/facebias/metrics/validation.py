"""Input checks for the metrics: turn arrays, lists or tensors into clean 1-D numpy arrays or fail clearly.

Every error names the argument at fault, the first offending position and what would fix it, so a
bad evaluation dump is found at the metric call and not as a NaN in a results table.
"""

from __future__ import annotations

import numpy as np


def as_vector(name: str, values) -> np.ndarray:
    """A non-empty 1-D numpy array (lists, numpy arrays and CPU tensors are accepted)."""
    if hasattr(values, "detach"):  # a torch tensor: no grad, on the CPU, as numpy
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one value per sample) but has shape {array.shape}; "
            "flatten it (e.g. .ravel()) or pick the column you mean"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty: the metrics need at least one sample")
    return array


def as_scores(name: str, values) -> np.ndarray:
    """Finite real scores as float64 (float32 sigmoid outputs are widened, never rounded)."""
    array = as_vector(name, values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name} must hold real numbers (got dtype {array.dtype})")
    array = array.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"{name} has {bad.size} non-finite value(s) (NaN or inf), the first at position {bad[0]} "
            f"({array[bad[0]]}); remove those samples or fix the model output before computing metrics"
        )
    return array


def as_binary(name: str, values) -> np.ndarray:
    """Labels in {0, 1} (bool, int or float 0./1.) as int8."""
    array = as_vector(name, values)
    if array.dtype == bool:
        return array.astype(np.int8)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name} must hold 0/1 labels (got dtype {array.dtype})")
    bad = np.flatnonzero((array != 0) & (array != 1))
    if bad.size:
        raise ValueError(
            f"{name} must hold only 0 and 1 but has {bad.size} other value(s), the first at position "
            f"{bad[0]} ({array[bad[0]]!r}); map the labels to {{0, 1}} first (CelebA's -1 -> 0)"
        )
    return array.astype(np.int8)


def check_same_length(**arrays: np.ndarray) -> int:
    """The common length of the named arrays; a mismatch lists every length."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"length mismatch ({listed}): pass one value per sample in every argument")
    return next(iter(lengths.values()))


def require_both_classes(name: str, labels: np.ndarray, why: str) -> None:
    """Fail when a 0/1 label vector holds only one of the two classes."""
    n_positive = int(labels.sum())
    if n_positive == 0 or n_positive == len(labels):
        only = "1" if n_positive else "0"
        raise ValueError(
            f"{name} holds only the class {only} ({len(labels)} samples): {why}; "
            "evaluate on a split that contains both classes"
        )
