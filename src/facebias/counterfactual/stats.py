"""Searches against the null: Fisher's exact test per aggregate, corrected for the number of aggregates.

Each row of ``coding.aggregate`` is a 2x2 table (searches that changed / did not, null walks that changed / did
not); Fisher's exact test (two-sided, scipy) gives its p-value, and Holm's step-down (family-wise error) or
Benjamini–Hochberg (false discovery rate) adjusts them over every row that has one. A row is significant when
its adjusted p-value is below alpha; the model *prefers* the change when searches make it more often than
the null, and *avoids* it when less often.

A null walk starts from the same face as its search, so the two samples are positively correlated; Fisher's
test treats them as independent, which makes it conservative here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CORRECTIONS = ("holm", "bh")


def fisher(search_count: int, search_n: int, null_count: int, null_n: int) -> tuple[float | None, float | None]:
    """(odds ratio, two-sided p) of Fisher's exact test; (None, None) when a group is empty."""
    if search_n == 0 or null_n == 0:
        return None, None
    from scipy.stats import fisher_exact

    table = [[search_count, search_n - search_count], [null_count, null_n - null_count]]
    odds, p = fisher_exact(table, alternative="two-sided")
    return (float(odds) if np.isfinite(odds) else None), float(p)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (controls the family-wise error rate)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (controls the false discovery rate)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def compare(rows: list[dict], alpha: float = 0.05, correction: str = "holm") -> list[dict]:
    """Add odds_ratio, p_value, p_adjusted, significant and verdict (prefers / avoids / '') to every row."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r}: use one of {', '.join(CORRECTIONS)}")
    tested = []
    for row in rows:
        row["odds_ratio"], row["p_value"] = fisher(row["search_count"], row["search_n"], row["null_count"],
                                                   row["null_n"])
        row["p_adjusted"], row["significant"], row["verdict"] = None, False, ""
        if row["p_value"] is not None:
            tested.append(row)
    adjust = holm if correction == "holm" else benjamini_hochberg
    for row, p in zip(tested, adjust([r["p_value"] for r in tested]), strict=True):
        row["p_adjusted"] = float(p)
        row["significant"] = bool(p < alpha)
        if row["significant"]:
            row["verdict"] = "prefers" if row["search_rate"] > row["null_rate"] else "avoids"
    return rows


def method_note(correction: str, alpha: float, n_tests: int) -> str:
    name = "Holm's step-down" if correction == "holm" else "Benjamini–Hochberg"
    return (f"Fisher's exact test (two-sided) per row, searches vs null walks; p-values adjusted with {name} over "
            f"the {n_tests} rows that have one; significant where the adjusted p < {alpha:g}")
