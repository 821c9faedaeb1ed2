"""scripts/debias_domain_check.py: balanced cells, the shortcut figures and the pair check, on planted answers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import REPO

from facebias.generators.quality import ClassifierFeatures


def script():
    spec = importlib.util.spec_from_file_location("debias_domain_check", REPO / "scripts" / "debias_domain_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_balanced_cells_take_as_many_from_each_cell():
    rng = np.random.default_rng(0)
    male, glasses = rng.random(500) < 0.4, rng.random(500) < 0.25
    keep = script().balanced_cells(male.astype(np.uint8), glasses.astype(np.uint8), per_cell=30, seed=1)
    counts = [np.sum((male[keep] == m) & (glasses[keep] == g)) for m in (1, 0) for g in (1, 0)]
    assert counts == [30, 30, 30, 30] and len(set(keep)) == 120
    smallest = min(np.sum((male == m) & (glasses == g)) for m in (1, 0) for g in (1, 0))
    assert len(script().balanced_cells(male.astype(np.uint8), glasses.astype(np.uint8), 10_000, 1)) == 4 * smallest


def test_shortcut_figures_of_a_model_that_reads_the_glasses():
    """A 'classifier' that says male exactly when glasses are worn: 100 % on the stereotypical cells, 0 % on the
    others (gap 100), and TPR 1 for men with glasses, 0 without (DEO 100)."""
    male = np.array([1, 1, 0, 0] * 5, dtype=np.uint8)
    glasses = np.array([1, 0, 1, 0] * 5, dtype=np.uint8)
    row = script().shortcut_figures(glasses.astype(float), male, glasses)
    assert row["gap"] == pytest.approx(100.0) and row["DEO"] == pytest.approx(100.0)
    assert (row["acc_y1_c1"], row["acc_y1_c0"], row["acc_y0_c1"], row["acc_y0_c0"]) == (100, 0, 0, 100)
    fair = script().shortcut_figures(male.astype(float), male, glasses)  # reads the truth: no gap
    assert fair["gap"] == 0 and fair["DEO"] == 0


class PlantedLabeller(ClassifierFeatures):
    """Male = the red channel is bright, Eyeglasses = the blue channel is bright (no network)."""

    def __init__(self):
        self.heads = ["Male", "Eyeglasses"]

    def __call__(self, images, batch_size=256, device="cpu"):
        means = np.asarray(images, dtype=float).mean(axis=(1, 2)) / 255
        return np.zeros((len(images), 1)), np.stack([means[:, 0], means[:, 2]], axis=1)


def test_pair_figures_count_what_changes_within_pairs(tmp_path):
    """4 pairs; glasses flip in all, Male in one; f_t's labels (shared by each pair) agree where planted."""
    first = np.zeros((4, 4, 4, 3), np.uint8)
    first[:2, ..., 0] = 255  # pairs 0, 1: male
    second = first.copy()
    second[..., 2] = 255  # every G(z') gains the glasses
    second[3, ..., 0] = 255  # pair 3: G(z') also turns male
    np.save(tmp_path / "images.npy", np.concatenate([first, second]))
    target = np.array([1, 1, 0, 0], np.uint8)
    np.savez(tmp_path / "labels.npz", target=np.concatenate([target, target]), protected=np.zeros(8, np.uint8),
             part=np.array([0] * 4 + [1] * 4, np.uint8))
    row = script().pair_figures("planted", tmp_path, PlantedLabeller())
    assert row["pairs"] == 4 and row["male_changes"] == 0.25 and row["eyeglasses_changes"] == 1.0
    assert row["f_t_agrees_gz"] == 1.0 and row["f_t_agrees_gzprime"] == 0.75
    (tmp_path / "labels.npz").unlink()
    with pytest.raises(SystemExit, match="augment-<key>"):
        script().pair_figures("broken", tmp_path, PlantedLabeller())
