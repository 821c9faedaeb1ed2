"""evaluate.py: the audit of a trained run, checked against numbers recomputed here from its checkpoint.

Unit tests cover the pieces with known answers (categories, thresholds, errors); the end-to-end tests
train tiny runs once per module and compare evaluate.py's threshold, AP, cell accuracies and gap with an
independent recomputation (model forward pass here, each definition by hand). That a P=100 model is more
biased than a P=50 one is tested in test_known_answers.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY, compose
from wandb_records import find_runs, read_run

from facebias.evaluation.attributes import (
    CATEGORIES,
    REFERENCE_ATTRIBUTES,
    category_averages,
    category_coverage,
    category_of,
)
from facebias.evaluation.heads import EvaluationInputError, evaluate_head, stereotype_direction
from facebias.evaluation.plots import reliability_curve
from facebias.evaluation.tables import attribute_row
from facebias.reporting.files import json_safe, read_csv
from facebias.runs import RunNotFoundError, RunRecord, locate_run
from facebias.runs import find_runs as find_run_dirs

# ---------------------------------------------------------------------------------------------- units


def test_categories_partition_the_reference_attributes():
    members = [a for group in CATEGORIES.values() for a in group]
    assert len(members) == len(set(members)) == 26
    assert set(members) == set(REFERENCE_ATTRIBUTES)
    assert category_of("Young") == "gender_dependent" and category_of("Smiling") == "gender_independent"
    assert category_of("Male") is None


def test_category_averages_use_only_the_heads_present():
    per_head = {
        "Smiling": {"AP": 0.8, "AP_median": 0.7, "AP_std": 0.02},
        "Eyeglasses": {"AP": 0.6, "AP_median": 0.5, "AP_std": 0.04},
        "Young": {"AP": 0.9, "AP_median": 0.9, "AP_std": 0.01},
        "Mustache": {"AP": 0.1, "AP_median": 0.1, "AP_std": 0.1},
    }
    result = category_averages(per_head, metrics=("AP",))
    independent = result["gender_independent"]
    assert independent["attributes"] == ["Eyeglasses", "Smiling"] and independent["n"] == 2
    assert independent["AP"] == pytest.approx(0.7) and independent["AP_median"] == pytest.approx(0.6)
    assert independent["AP_std"] == pytest.approx(0.03)
    assert result["gender_dependent"]["AP"] == pytest.approx(0.9)
    assert result["inconsistently_labelled"]["n"] == 0 and result["inconsistently_labelled"]["AP"] is None
    assert "Big_Lips" in result["inconsistently_labelled"]["missing"]
    assert result["uncategorised"]["attributes"] == ["Mustache"]
    assert "Young" not in category_coverage(["Smiling"])["gender_dependent"]["present"]


def _split(scores, targets, protected, concept=None):
    scores = np.asarray(scores, dtype=np.float32)[:, None]
    return {"score": scores, "target": np.asarray(targets, dtype=np.float32)[:, None],
            "protected": np.asarray(protected), "concept": np.asarray(concept if concept is not None else protected)}


def test_evaluate_head_threshold_and_cells_by_hand():
    val = _split([0.9, 0.8, 0.3, 0.2, 0.7], [1, 1, 0, 0, 0], [1, 0, 1, 0, 1])
    # 2 val positives -> threshold = 2nd largest val score = 0.8; predictions s > 0.8 (strict)
    test = _split([0.95, 0.85, 0.5, 0.81, 0.1, 0.9, 0.2, 0.3], [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 1, 1, 0, 0])
    head = evaluate_head("Male", 0, val, test, "concept", "positive", n_bootstrap=0, seed=0,
                         protected_name="Eyeglasses")
    assert head["threshold"] == pytest.approx(0.8)
    # predictions: 1 1 0 1 | 0 1 0 0 -> cells y1_c1: 2/2, y1_c0: 1/2, y0_c1: 1/2, y0_c0: 2/2
    assert {k: v["accuracy"] for k, v in head["cells"].items()} == {"y1_c1": 1.0, "y1_c0": 0.5, "y0_c1": 0.5,
                                                                    "y0_c0": 1.0}
    assert head["gap"]["gap"] == pytest.approx(0.5)
    assert head["test"]["accuracy"] == pytest.approx(6 / 8)
    assert head["test"]["DEO"] == pytest.approx(0.5)  # TPR g=1: 2/2, g=0: 1/2


def test_one_class_head_names_head_and_split():
    val = _split([0.9, 0.8, 0.3], [0, 0, 0], [1, 0, 1])
    test = _split([0.9, 0.1], [1, 0], [1, 0])
    with pytest.raises(EvaluationInputError, match=r"head 'Smiling': the val split holds only the value 0"):
        evaluate_head("Smiling", 0, val, test, "concept", "positive", 0, 0, "Male")
    val = _split([0.9, 0.1], [1, 0], [1, 0])
    test = _split([0.9, 0.1, 0.5], [1, 0, 1], [1, 1, 1])
    with pytest.raises(EvaluationInputError, match=r"protected attribute 'Male': the test split holds only"):
        evaluate_head("Smiling", 0, val, test, "concept", "positive", 0, 0, "Male")


def test_run_without_protected_attribute_is_refused():
    from types import SimpleNamespace

    from facebias.analyses.fairness import analyse

    run = SimpleNamespace(run_dir=Path("/runs/x"), targets=["Male", "Smiling"], concept=None)
    with pytest.raises(EvaluationInputError, match=r"no protected attribute.*data.protected=<attribute>"):
        analyse(run, SimpleNamespace(protected=None), {}, n_bootstrap=0, seed=0)


def test_stereotype_direction_follows_the_training_correlation():
    target = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    concept = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    out = stereotype_direction(target, concept)
    assert out["direction"] == "positive" and out["train_p_y1_given_c1"] == pytest.approx(0.75)
    assert stereotype_direction(target, 1 - concept)["direction"] == "negative"


def test_reliability_curve_by_hand():
    scores = np.array([0.05, 0.15, 0.12, 0.95, 0.91])
    targets = np.array([0, 1, 0, 1, 1], dtype=float)
    x, y, n = reliability_curve(scores, targets, n_bins=10)
    assert np.allclose(x, [0.05, 0.135, 0.93]) and np.allclose(y, [0, 0.5, 1]) and list(n) == [1, 2, 2]


def test_attribute_row_scales_and_json_safe():
    head = {"threshold": 0.5, "test": {"n": 10, "accuracy": 0.9, "AP": 0.8, "DEO": 0.1, "BA": -0.02, "KL": 1.5,
                                       "AP_median": 0.75, "KL_median": float("nan")},
            "gap": {"stereotypical": 1.0, "counter_stereotypical": 0.4, "gap": 0.6},
            "stereotype": {"direction": "positive"}}
    row = attribute_row("Smiling", head)
    assert row["AP"] == pytest.approx(80) and row["BA"] == pytest.approx(-2) and row["KL"] == 1.5
    assert row["AP_median"] == pytest.approx(75) and row["gap"] == pytest.approx(60)
    assert row["category"] == "gender_independent" and row["DEO_std"] is None
    assert json_safe({"a": [float("nan"), 1.0, np.float32(2.0)]}) == {"a": [None, 1.0, 2.0]}


def test_missing_run_parts_are_named(tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(RunNotFoundError, match=r"run/run.json is missing.*checkpoints/best.ckpt"):
        locate_run(run=str(empty))
    RunRecord(kind="train", config={"data": {"targets": ["Male"]}}).write(empty)
    with pytest.raises(RunNotFoundError, match=r"no checkpoint; expected .*checkpoints/best.ckpt"):
        locate_run(run=str(empty))
    stray = tmp_path / "elsewhere" / "model.ckpt"
    stray.parent.mkdir()
    stray.write_bytes(b"")
    with pytest.raises(RunNotFoundError, match=r"no training run manifest next to the checkpoint.*elsewhere/run.json"):
        locate_run(ckpt=str(stray))
    with pytest.raises(RunNotFoundError, match=r"run=nowhere: no such file or directory"):
        locate_run(run="nowhere")
    sweep = tmp_path / "sweep"
    (sweep / "0_p50").mkdir(parents=True)
    shutil.copy(empty / "run.json", sweep / "0_p50" / "run.json")
    with pytest.raises(RunNotFoundError, match=r"multirun dir, use sweep="):
        locate_run(run=str(sweep))
    RunRecord(kind="eval", parent={"run_dir": str(empty)}).write(tmp_path / "an_eval")
    with pytest.raises(RunNotFoundError, match=r"holds a 'eval' run, not a training run"):
        locate_run(run=str(tmp_path / "an_eval"))
    with pytest.raises(ValueError, match=r"run=<training run dir>"):
        locate_run()


# ------------------------------------------------------------------------------------------ end to end


def run_script(script: str, *args: str, env: dict | None = None, timeout: int = 300, check: bool = True):
    cmd = [sys.executable, script, *args]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def train_tiny(root: Path, data_dir: Path, *overrides: str) -> Path:
    run_script("train.py", *TINY, f"paths.root_dir={root}", f"paths.data_dir={data_dir}", *overrides)
    (run_dir,) = find_run_dirs(root, "train")
    return run_dir


def recompute_scores(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Scores of the best checkpoint on val and test, without evaluate.py's code: datamodule + forward pass here."""
    import torch
    from omegaconf import OmegaConf

    from facebias.data.datamodule import FaceDataModule
    from facebias.models.classifier import AttributeClassifier

    data = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml").data, resolve=True)
    data.pop("_target_")
    datamodule = FaceDataModule(**data)
    datamodule.setup()
    model = AttributeClassifier.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=True,
                                                     map_location="cpu").eval()
    result = {}
    for split in ("val", "test"):
        scores, targets, concepts = [], [], []
        with torch.no_grad():
            for batch in getattr(datamodule, f"{split}_dataloader")():
                batch = model.preprocess(batch)
                scores.append(torch.sigmoid(model(batch["image"]).float()))
                targets.append(batch["target"])
                concepts.append(batch["concept"])
        result[split] = {"score": torch.cat(scores).numpy(), "target": torch.cat(targets).numpy().astype(int),
                         "concept": torch.cat(concepts).numpy().astype(int)}
    return result


def average_precision_by_hand(targets: np.ndarray, scores: np.ndarray) -> float:
    """AP = sum over the distinct scores t, from the highest down, of (R(t) - R(previous t)) * P(t), where
    R and P are the recall and precision of predicting s >= t (tied scores enter together)."""
    ap, previous_recall = 0.0, 0.0
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        true_positives = int(np.sum(predicted & (targets == 1)))
        recall = true_positives / int(np.sum(targets == 1))
        ap += (recall - previous_recall) * true_positives / int(np.sum(predicted))
        previous_recall = recall
    return ap


def shared_sweep(data_dir: Path) -> Path:
    """A tiny train multirun (P=50 and P=100), trained once per session and shared by the evaluation tests.

    Kept beside the session's data dir, so test_sweep_summary.py and this module train it only once.
    """
    root = data_dir.parent / "shared_train_sweep"
    done = root / "trained"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        run_script("train.py", "-m", "+experiment=p50,p100", *TINY, f"paths.root_dir={root}",
                   f"paths.data_dir={data_dir}")
        done.write_text("ok\n")
    (sweep,) = (root / "multirun" / "train").iterdir()
    return sweep


@pytest.fixture(scope="module")
def p100_run(data_dir) -> Path:
    (run_dir,) = [p for p in find_run_dirs(shared_sweep(data_dir), "train") if "p100" in p.name]
    return run_dir


@pytest.fixture(scope="module")
def evaluated(p100_run, tmp_path_factory):
    """evaluate.py on the P=100 run, with W&B offline in a temp dir (the one offline W&B check)."""
    root = tmp_path_factory.mktemp("eval_p100")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb_dir"), "WANDB_SILENT": "true"}
    result = run_script("evaluate.py", f"run={p100_run}", f"paths.root_dir={root}", "logger=wandb", env=env)
    (out,) = [p.parent for p in (root / "outputs" / "evaluate").rglob("metrics.json")]
    return out, json.loads((out / "metrics.json").read_text()), result


def test_evaluate_writes_metrics_tables_and_plots(evaluated):
    out, metrics, result = evaluated
    assert metrics["job"] == "evaluate" and metrics["targets"] == ["Male"]
    assert metrics["protected"] == "Eyeglasses" and metrics["cell_by"] == "Eyeglasses" and metrics["P"] == 100
    for name in ("metrics.csv", "cells.csv", "scores.npz", "plots/score_hist_Male.png", "plots/reliability_Male.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    (row,) = read_csv(out / "metrics.csv")
    test = metrics["heads"]["Male"]["test"]
    assert metrics["settings"]["n_bootstrap"] == 500  # the default
    for metric in ("AP", "DEO", "BA"):  # bootstrap median and std present, tables in percent
        assert isinstance(test[f"{metric}_median"], float) and test[f"{metric}_std"] > 0
        assert float(row[f"{metric}_median"]) == pytest.approx(100 * test[f"{metric}_median"])
    assert "KL_median" in test and "KL_std" in test
    cells = read_csv(out / "cells.csv")
    assert [c["cell"] for c in cells] == ["y1_c1", "y1_c0", "y0_c1", "y0_c0"]
    assert len({c["count"] for c in cells}) == 1  # the balanced test split
    assert "wandb sync" in result.stdout  # ran offline, says how to upload


def test_threshold_ap_cells_and_gap_match_an_independent_recomputation(evaluated, p100_run):
    _, metrics, _ = evaluated
    head = metrics["heads"]["Male"]
    recomputed = recompute_scores(p100_run)
    val, test = recomputed["val"], recomputed["test"]
    n_pos = int(val["target"][:, 0].sum())
    by_hand = float(np.sort(val["score"][:, 0])[::-1][n_pos - 1])  # the cp-th largest val score
    assert head["threshold"] == pytest.approx(by_hand, abs=1e-6)
    assert head["val"]["positives"] == n_pos
    scores, targets, concept = test["score"][:, 0], test["target"][:, 0], test["concept"]
    assert head["test"]["AP"] == pytest.approx(average_precision_by_hand(targets, scores), abs=1e-6)
    predicted = (scores > head["threshold"]).astype(int)  # strictly above the threshold
    assert head["test"]["accuracy"] == pytest.approx(np.mean(predicted == targets))
    # accuracy per (target y, concept c) cell; at P=100 the training data paired glasses with men, so the
    # stereotypical cells are men with glasses and women without
    accuracy = {(y, c): np.mean(predicted[(targets == y) & (concept == c)] == y) for y in (0, 1) for c in (0, 1)}
    for (y, c), value in accuracy.items():
        assert head["cells"][f"y{y}_c{c}"]["accuracy"] == pytest.approx(value)
    assert head["stereotype"]["direction"] == "positive"
    stereotypical = (accuracy[1, 1] + accuracy[0, 0]) / 2
    counter = (accuracy[1, 0] + accuracy[0, 1]) / 2
    assert head["gap"]["gap"] == pytest.approx(stereotypical - counter)


def test_eval_logs_to_the_training_runs_wandb_group(evaluated, p100_run):
    out, metrics, _ = evaluated
    (path,) = find_runs(out)
    record = read_run(path)
    train_group = json.loads((p100_run / "metrics.json").read_text())["wandb"]["group"]
    assert record["job_type"] == "eval" and record["group"] == train_group
    logged = {k: v for step in record["history"] for k, v in step.items()}  # media keys come flattened
    assert logged["eval/metrics/_type"] == "table-file" and logged["eval/metrics/nrows"] == 1
    assert logged["eval/cells/_type"] == "table-file" and logged["eval/cells/nrows"] == 4
    assert logged["eval/score_hist/Male/_type"] == logged["eval/reliability/Male/_type"] == "image-file"
    assert record["summary"]["eval/Male/AP"] == pytest.approx(metrics["heads"]["Male"]["test"]["AP"])
    assert "eval/Male/DEO_median" in record["summary"] and "eval/Male/gap" in record["summary"]


def test_cli_without_a_run_says_what_to_pass(tmp_path):
    result = run_script("evaluate.py", f"paths.root_dir={tmp_path}", "logger=none", check=False)
    assert result.returncode != 0
    assert "run=<training run dir>" in result.stderr + result.stdout


def test_ckpt_finds_its_config_and_evaluates(p100_run, tmp_path):
    from facebias.analyses.driver import analyse

    ckpt = p100_run / "checkpoints" / "last.ckpt"
    run = locate_run(ckpt=str(ckpt))
    assert run.run_dir == p100_run.resolve() and run.checkpoint.name == "last.ckpt"
    cfg = compose(["logger=none", "n_bootstrap=0", "plots=false", f"ckpt={ckpt}", f"paths.root_dir={tmp_path}"],
                  "evaluate")
    metrics = analyse(cfg, tmp_path / "out")
    assert metrics["source"]["checkpoint"].endswith("last.ckpt") and "AP_median" not in metrics["heads"]["Male"]["test"]
    assert not (tmp_path / "out" / "plots").exists()


def test_multi_attribute_model_gives_table_and_category_averages(tmp_path_factory, data_dir):
    from facebias.analyses.driver import analyse

    root = tmp_path_factory.mktemp("multi")
    run_dir = train_tiny(root, data_dir, "data.targets=[Smiling,Eyeglasses,Young]", "data.protected=Male",
                         "+trainer.limit_train_batches=4")
    cfg = compose(["logger=none", "n_bootstrap=50", f"run={run_dir}", f"paths.root_dir={root}"], "evaluate")
    out = root / "eval"
    metrics = analyse(cfg, out)
    assert metrics["protected"] == "Male" and metrics["cell_by"] == "Male"  # no planted concept: cells by gender
    rows = {r["attribute"]: r for r in read_csv(out / "metrics.csv")}
    assert list(rows) == ["Smiling", "Eyeglasses", "Young"]
    assert rows["Young"]["category"] == "gender_dependent"
    categories = {r["category"]: r for r in read_csv(out / "categories.csv")}
    heads = metrics["heads"]
    independent = categories["gender_independent"]
    assert independent["attributes"] == "Eyeglasses Smiling" and independent["n_attributes"] == "2"
    expected = 100 * (heads["Smiling"]["test"]["AP"] + heads["Eyeglasses"]["test"]["AP"]) / 2
    assert float(independent["AP"]) == pytest.approx(expected)
    assert float(categories["gender_dependent"]["DEO_median"]) == pytest.approx(
        100 * heads["Young"]["test"]["DEO_median"])
    assert categories["inconsistently_labelled"]["n_attributes"] == "0"
    assert categories["inconsistently_labelled"]["AP"] == ""
    assert "Big_Lips" in categories["inconsistently_labelled"]["missing"]
    assert metrics["categories"]["gender_dependent"]["missing"][0] == "Arched_Eyebrows"
    assert {p.name for p in (out / "plots").iterdir()} >= {"score_hist_Smiling.png", "reliability_Young.png"}
