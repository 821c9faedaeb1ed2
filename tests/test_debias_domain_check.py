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


def test_pairs_table_names_runs_from_their_configs_and_keeps_p80(tmp_path):
    """scripts/debias_pairs_figure.py table: generator/arm/pairs/seed come from each run's config.yaml, P = 90 runs
    are left out, rows follow the comparison's order, and a run outside it is refused by name."""
    import csv
    import subprocess
    import sys

    import yaml

    def run(name: str, seed: int, debias: dict | None) -> str:
        run_dir = tmp_path / "multirun" / name
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "debias": debias}))
        return str(run_dir)

    figures = {"AP": "90.0", "DEO": "20.04", "DEO_std": "2.5", "BA": "10", "KL": "1.234", "gap": "25.06"}
    rows = [{"P": "80", "run_dir": run("gan_debiased", 1, {"arm": "debiased", "pairs": "agreed",
                                                           "generator": {"kind": "gan", "run": "x/gan_w64"}})},
            {"P": "80", "run_dir": run("base", 0, None)},
            {"P": "90", "run_dir": run("base90", 0, None)},
            {"P": "80", "run_dir": run("renderer", 2, {"arm": "control", "pairs": "all",
                                                       "generator": {"kind": "synthfaces"}})}]
    summary = tmp_path / "summary.csv"
    with open(summary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["P", "run_dir", *figures])
        writer.writeheader()
        writer.writerows({**row, **figures} for row in rows)
    script = [sys.executable, str(REPO / "scripts" / "debias_pairs_figure.py")]
    subprocess.run([*script, "table", str(summary), "--out", str(tmp_path / "t.csv")], check=True, capture_output=True)
    table = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [(r["generator"], r["arm"], r["pairs"], r["seed"]) for r in table] == [
        ("—", "baseline", "—", "0"), ("renderer", "control", "all", "2"), ("gan_w64", "debiased", "agreed", "1")]
    assert table[0]["gap"] == "25.1" and table[0]["KL"] == "1.23" and table[0]["run_dir"] == "multirun/base"
    run("other", 0, {"arm": "debiased", "pairs": "all", "generator": {"kind": "gan", "run": "x/gan_p80"}})
    with open(summary, "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=["P", "run_dir", *figures]).writerow(
            {"P": "80", "run_dir": str(tmp_path / "multirun" / "other"), **figures})
    refused = subprocess.run([*script, "table", str(summary), "--out", str(tmp_path / "u.csv")], capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "gan_p80" in refused.stderr
