"""Controlled bias: exact cell counts at every P, the same N across a sweep, clear failures."""

from pathlib import Path

import numpy as np
import pytest

from facebias.data.bias import BiasRequestError, cell_sizes, controlled_splits
from facebias.data.table import FaceTable

SWEEP = (50, 60, 70, 80, 90, 100)


def make_table(counts_by_split: dict[str, dict[tuple[int, int], int]]) -> FaceTable:
    """A table with exactly the given number of rows per split and (Male, Eyeglasses) cell."""
    male, glasses, split = [], [], []
    for split_id, name in enumerate(("train", "val", "test")):
        for (t, c), n in counts_by_split[name].items():
            male += [t] * n
            glasses += [c] * n
            split += [split_id] * n
    n = len(male)
    attrs = np.stack([male, glasses, np.zeros(n)], axis=1).astype(np.uint8)
    return FaceTable("celeba", Path("/nowhere"), tuple(f"{i:06d}.jpg" for i in range(n)),
                     ("Male", "Eyeglasses", "Smiling"), attrs, np.array(split, dtype=np.int8))


TABLE = make_table({
    "train": {(1, 1): 300, (1, 0): 900, (0, 1): 250, (0, 0): 1100},
    "val": {(1, 1): 40, (1, 0): 100, (0, 1): 30, (0, 0): 120},
    "test": {(1, 1): 35, (1, 0): 100, (0, 1): 50, (0, 0): 120},
})


def counts(table, split_rows):
    t = table.attr("Male")[split_rows.rows]
    c = split_rows.concept
    return {(a, b): int(np.sum((t == a) & (c == b))) for a in (1, 0) for b in (1, 0)}


@pytest.mark.parametrize("p", SWEEP)
def test_exact_cell_counts_and_same_n_for_every_p(p):
    splits = controlled_splits(TABLE, "Male", "Eyeglasses", p, sweep=SWEEP, seed=0)
    # P=100 needs m men with glasses (300 exist) and m women without (1100); P=50 needs m/2 of every
    # cell (smallest: women with glasses, 250 -> m <= 500): the binding cell is men with glasses -> m = 300.
    assert splits.n_train == 600
    m = 300
    got = counts(TABLE, splits.train)
    want = {(1, 1): round(p / 100 * m), (1, 0): m - round(p / 100 * m),
            (0, 1): round((100 - p) / 100 * m), (0, 0): m - round((100 - p) / 100 * m)}
    assert got == want
    # concept flags are the real attribute values of the chosen rows
    assert np.array_equal(splits.train.concept, TABLE.attr("Eyeglasses")[splits.train.rows])
    # test balanced over the four cells: the smallest test cell has 35 rows
    assert counts(TABLE, splits.test) == {cell: 35 for cell in ((1, 1), (1, 0), (0, 1), (0, 0))}
    # validation follows the training distribution (same P)
    val = counts(TABLE, splits.val)
    mv = val[(1, 1)] + val[(1, 0)]
    assert val[(0, 1)] + val[(0, 0)] == mv
    assert val[(1, 1)] == round(p / 100 * mv)
    # rows unique and from their own split
    for name, rows in (("train", splits.train.rows), ("val", splits.val.rows), ("test", splits.test.rows)):
        assert len(np.unique(rows)) == len(rows)
        assert set(TABLE.split[rows]) == {("train", "val", "test").index(name)}


def test_deterministic_per_seed():
    a = controlled_splits(TABLE, "Male", "Eyeglasses", 80, sweep=SWEEP, seed=3)
    b = controlled_splits(TABLE, "Male", "Eyeglasses", 80, sweep=SWEEP, seed=3)
    c = controlled_splits(TABLE, "Male", "Eyeglasses", 80, sweep=SWEEP, seed=4)
    assert np.array_equal(a.train.rows, b.train.rows) and np.array_equal(a.test.rows, b.test.rows)
    assert not np.array_equal(a.train.rows, c.train.rows)


def test_too_large_request_names_the_short_cell():
    with pytest.raises(BiasRequestError, match=r"Male=1 & Eyeglasses=1 has 300 images, 501 are needed"):
        controlled_splits(TABLE, "Male", "Eyeglasses", 100, sweep=SWEEP, n_train=1002)
    with pytest.raises(BiasRequestError, match=r"largest N every P .* supplies: 600"):
        controlled_splits(TABLE, "Male", "Eyeglasses", 50, sweep=SWEEP, n_train=1002)


def test_p_outside_range_and_unknown_attribute():
    with pytest.raises(BiasRequestError, match=r"P=40.*outside \[50, 100\]"):
        controlled_splits(TABLE, "Male", "Eyeglasses", 40)
    with pytest.raises(KeyError, match="unknown attribute 'Eyeglases'.*Eyeglasses"):
        controlled_splits(TABLE, "Male", "Eyeglases", 80)


@pytest.mark.parametrize("p", (50, 80, 100))
def test_grayscale_assigned_at_p(p):
    splits = controlled_splits(TABLE, "Male", "grayscale", p, sweep=SWEEP, seed=0)
    men, women = 1200, 1350
    m = min(men, women)
    assert splits.n_train == 2 * m
    got = counts(TABLE, splits.train)
    assert got[(1, 1)] == round(p / 100 * m) and got[(0, 1)] == round((100 - p) / 100 * m)
    test = counts(TABLE, splits.test)
    assert len(set(test.values())) == 1  # balanced over the four cells


def test_cell_sizes_sum_to_group_size():
    for m in (1, 7, 500):
        for p in SWEEP:
            s = cell_sizes(m, p)
            assert s[(1, 1)] + s[(1, 0)] == m == s[(0, 1)] + s[(0, 0)]
