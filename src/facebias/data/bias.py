"""Controlled-bias samplers (docs/design.md §4): P % of the target's positives carry the concept.

For target t (e.g. Male) and a binary concept c (an attribute such as Eyeglasses, or `grayscale`, which is
assigned here and applied later as a transform), the training set holds N/2 images with t=1 and N/2 with
t=0; round(P/100 · N/2) of the t=1 images have c=1, and round((100-P)/100 · N/2) of the t=0 images have c=1.
N is the same for every P of the sweep: the largest N that every requested P can supply from the source,
so that a P sweep changes the correlation and nothing else. Validation follows the training distribution
(from the source's validation split); test is balanced over the four (t, c) cells, so the
counter-stereotypical cells can be scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facebias.data.table import FaceTable

GRAYSCALE = "grayscale"
CELLS = ((1, 1), (1, 0), (0, 1), (0, 0))  # (target, concept)


class BiasRequestError(ValueError):
    """A controlled-bias request the source cannot supply (names the short cell and its count)."""


@dataclass(frozen=True)
class SplitRows:
    """Rows of the source table for one split, with the concept value each row carries."""

    rows: np.ndarray  # (m,) int64 indices into the FaceTable
    concept: np.ndarray  # (m,) uint8: the bias concept per row (0 when there is no concept)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class BiasedSplits:
    train: SplitRows
    val: SplitRows
    test: SplitRows
    target: str
    concept: str | None
    p: float | None
    n_train: int
    n_val: int
    n_test_per_cell: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.concept is None:
            return (f"no planted bias: {len(self.train)} train, {len(self.val)} val, "
                    f"{len(self.test)} test images")
        return (f"{self.target} x {self.concept} at P={self.p:g}: N={self.n_train} train, {self.n_val} val "
                f"(same N for every P of the sweep), test {self.n_test_per_cell} per cell")


def validate_p(p: float, name: str = "P") -> float:
    if not 50 <= float(p) <= 100:
        raise BiasRequestError(f"{name}={p} is outside [50, 100]: the bias level is the share (in %) of "
                               f"the target's positives that carry the concept; choose 50 (unbiased) to 100")
    return float(p)


def cell_sizes(m: int, p: float) -> dict[tuple[int, int], int]:
    """Images per (target, concept) cell when each target group holds m images at bias P."""
    k = int(round(p / 100 * m))
    k_neg = int(round((100 - p) / 100 * m))
    return {(1, 1): k, (1, 0): m - k, (0, 1): k_neg, (0, 0): m - k_neg}


def largest_group_size(available: dict[tuple[int, int], int], ps: Sequence[float]) -> int:
    """The largest m (images per target group) every P in `ps` can supply from the cell counts."""
    bound = min(available[(1, 1)] + available[(1, 0)], available[(0, 1)] + available[(0, 0)])
    for p in ps:
        frac = p / 100
        for (t, c), count in available.items():
            share = frac if (t, c) in ((1, 1), (0, 0)) else 1 - frac
            if share > 0:
                bound = min(bound, int(count / share) + 1)
    m = bound
    while m > 0 and not all(cell_sizes(m, p)[cell] <= available[cell] for p in ps for cell in available):
        m -= 1
    return m


def _cell_rows(target: np.ndarray, concept: np.ndarray, rows: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    return {(t, c): rows[(target[rows] == t) & (concept[rows] == c)] for t, c in CELLS}


def _draw(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(pool, size=k, replace=False)) if k else np.empty(0, dtype=np.int64)


def _attribute_split(table, split, target_col, concept_col, target, concept, p, ps, m_requested, rng):
    """Rows of one split at bias p, m per target group (largest every P supplies when m_requested is None)."""
    cells = _cell_rows(target_col, concept_col, table.indices(split))
    available = {cell: len(r) for cell, r in cells.items()}
    m_max = largest_group_size(available, ps)
    m = m_max if m_requested is None else m_requested
    short = [(q, cell, need) for q in ps for cell, need in cell_sizes(max(m, 1), q).items()
             if need > available[cell]]
    if m == 0 or short:
        q, (t, c), need = max(short, key=lambda s: s[2] - available[s[1]])  # the worst shortfall
        raise BiasRequestError(
            f"the {split} split cannot supply P={q:g}: cell {target}={t} & {concept}={c} has "
            f"{available[(t, c)]} images, {need} are needed (largest N every P of {list(ps)} supplies: "
            f"{2 * m_max}); lower n_train, leave it null to use that largest N, or narrow the sweep")
    picked = np.concatenate([_draw(cells[cell], n, rng) for cell, n in cell_sizes(m, p).items()])
    return SplitRows(picked, concept_col[picked].astype(np.uint8)), m, m_max


def _balanced_test(rows_by_cell, rng, per_cell):
    picked = np.concatenate([_draw(rows_by_cell[cell], per_cell, rng) for cell in CELLS])
    return picked


def controlled_splits(table: FaceTable, target: str, concept: str | None, p: float = 50,
                      sweep: Sequence[float] | None = None, n_train: int | None = None,
                      seed: int = 0) -> BiasedSplits:
    """Train/val/test rows of `table` with the planted bias; deterministic for a seed.

    `sweep` lists every P the experiment family uses (default: just `p`); N is sized so each of them can be
    supplied. `concept=None` keeps the source's splits as they are (no planted bias).
    """
    target_col = table.attr(target)
    if concept is None:
        zeros = lambda r: SplitRows(r, np.zeros(len(r), dtype=np.uint8))  # noqa: E731
        tr, va, te = (table.indices(s) for s in ("train", "val", "test"))
        return BiasedSplits(zeros(tr), zeros(va), zeros(te), target, None, None, len(tr), len(va), 0)
    p = validate_p(p)
    ps = sorted({p, *(validate_p(q, "sweep P") for q in (sweep or []))})
    if n_train is not None and (n_train < 2 or n_train % 2):
        raise BiasRequestError(f"n_train={n_train} must be an even number >= 2 (half each target value)")
    rng = np.random.default_rng(seed)
    if concept == GRAYSCALE:
        return _grayscale_splits(table, target, target_col, p, ps, n_train, rng)
    concept_col = table.attr(concept)
    m_req = None if n_train is None else n_train // 2
    train, m, m_max = _attribute_split(table, "train", target_col, concept_col, target, concept, p, ps, m_req,
                                       rng)
    val_rows = table.indices("val")
    val_avail = {cell: len(r) for cell, r in _cell_rows(target_col, concept_col, val_rows).items()}
    m_val = min(largest_group_size(val_avail, ps), max(1, round(m * len(val_rows) / max(1, len(table.indices("train"))))))
    val, _, _ = _attribute_split(table, "val", target_col, concept_col, target, concept, p, ps, m_val, rng)
    test_cells = _cell_rows(target_col, concept_col, table.indices("test"))
    per_cell = min(len(r) for r in test_cells.values())
    if per_cell == 0:
        short = min(CELLS, key=lambda c: len(test_cells[c]))
        raise BiasRequestError(f"the test split has no image in cell {target}={short[0]} & {concept}={short[1]}; "
                               "a balanced test set needs every (target, concept) cell")
    test_rows = _balanced_test(test_cells, rng, per_cell)
    test = SplitRows(test_rows, concept_col[test_rows].astype(np.uint8))
    notes = [f"largest N every P in {ps} supplies: {2 * m_max}; using N={2 * m}"]
    return BiasedSplits(train, val, test, target, concept, p, 2 * m, len(val), per_cell, notes)


def _assign_grayscale(target_col, rows, p, rng):
    """Gray flags for `rows`: round(P%) of the t=1 rows and round((100-P)%) of the t=0 rows, seeded."""
    flags = np.zeros(len(rows), dtype=np.uint8)
    for t, share in ((1, p / 100), (0, 1 - p / 100)):
        where = np.flatnonzero(target_col[rows] == t)
        k = int(round(share * len(where)))
        flags[rng.choice(where, size=k, replace=False)] = 1
    return flags


def _balanced_target_rows(table, split, target_col, m, rng):
    rows = table.indices(split)
    pos, neg = rows[target_col[rows] == 1], rows[target_col[rows] == 0]
    if m is None:
        m = min(len(pos), len(neg))
    if m > min(len(pos), len(neg)) or m == 0:
        t, have = (1, len(pos)) if len(pos) < len(neg) else (0, len(neg))
        raise BiasRequestError(f"the {split} split has {have} images with target={t}, {max(m, 1)} needed; "
                               "lower n_train or use a larger source")
    return np.sort(np.concatenate([_draw(pos, m, rng), _draw(neg, m, rng)])), m


def _grayscale_splits(table, target, target_col, p, ps, n_train, rng):
    """Grayscale is a transform, so any image can carry it: N is limited only by the target balance."""
    train_rows, m = _balanced_target_rows(table, "train", target_col, None if n_train is None else n_train // 2, rng)
    train = SplitRows(train_rows, _assign_grayscale(target_col, train_rows, p, rng))
    val_share = len(table.indices("val")) / max(1, len(table.indices("train")))
    val_rows, _ = _balanced_target_rows(table, "val", target_col, None, rng)
    m_val = min(len(val_rows) // 2, max(1, round(m * val_share)))
    val_rows, _ = _balanced_target_rows(table, "val", target_col, m_val, rng)
    val = SplitRows(val_rows, _assign_grayscale(target_col, val_rows, p, rng))
    test_rows, m_test = _balanced_target_rows(table, "test", target_col, None, rng)
    m_test -= m_test % 2
    test_rows, _ = _balanced_target_rows(table, "test", target_col, m_test, rng)
    test = SplitRows(test_rows, _assign_grayscale(target_col, test_rows, 50, rng))
    notes = [f"grayscale is applied as a transform: N is limited only by {target} balance ({2 * m})"]
    return BiasedSplits(train, val, test, target, GRAYSCALE, p, 2 * m, len(val_rows), m_test // 2, notes)
