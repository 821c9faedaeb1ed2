"""`evaluate.py sweep=<multirun dir>`: evaluate what is missing, then one table and one figure across P."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import compose
from test_evaluate import run_script, shared_sweep

from facebias.analyses.driver import analyse
from facebias.analyses.fairness import sweep_rows
from facebias.evaluation.plots import sweep_plot
from facebias.reporting.files import read_csv
from facebias.runs import RunNotFoundError, RunRecord, find_runs


def fake_evaluation(family: str, p: float, ap: float, seed: int = 0) -> dict:
    head = {"threshold": 0.5, "test": {"n": 8, "accuracy": 0.75, "AP": ap, "DEO": 0.1, "BA": 0.0, "KL": 1.0},
            "gap": {"stereotypical": 0.9, "counter_stereotypical": 0.5, "gap": 0.4},
            "stereotype": {"direction": "positive"}}
    return {"job": "evaluate", "family": family, "P": p, "experiment": f"{family}{p:g}", "train_seed": seed,
            "heads": {"Male": head}, "source": {"run_dir": f"/runs/{family}{p:g}"}}


def test_sweep_rows_are_sorted_by_family_and_p(tmp_path):
    entries = [(tmp_path / str(i), fake_evaluation(f, p, ap)) for i, (f, p, ap) in
               enumerate([("grayscale", 100, 0.6), ("eyeglasses", 100, 0.7), ("eyeglasses", 50, 0.9),
                          ("grayscale", 50, 0.95)])]
    rows = sweep_rows(entries)
    assert [(r["family"], r["P"]) for r in rows] == [("eyeglasses", 50), ("eyeglasses", 100), ("grayscale", 50),
                                                     ("grayscale", 100)]
    assert rows[0]["AP"] == pytest.approx(90) and rows[0]["gap"] == pytest.approx(40)
    path = sweep_plot(tmp_path / "sweep.png", rows)
    assert path.stat().st_size > 10_000


def test_sweep_of_an_empty_dir_says_what_it_looks_for(tmp_path):
    cfg = compose(["logger=none", f"sweep={tmp_path}", f"paths.root_dir={tmp_path}"], "evaluate")
    with pytest.raises(RunNotFoundError, match=r"found no training run .*run.json says kind 'train'"):
        analyse(cfg, tmp_path / "out")


def test_runs_that_cannot_be_evaluated_are_named(tmp_path):
    broken = tmp_path / "sweep" / "0_p50"
    (broken / "checkpoints").mkdir(parents=True)  # training died before its first checkpoint
    RunRecord(kind="train", config={"data": {"targets": ["Male"]}}).write(broken)
    cfg = compose(["logger=none", f"sweep={tmp_path / 'sweep'}", f"paths.root_dir={tmp_path}"], "evaluate")
    with pytest.warns(RuntimeWarning, match="skipping"), \
            pytest.raises(RunNotFoundError, match=r"no run could be analysed; skipped: .*0_p50.*no checkpoint"):
        analyse(cfg, tmp_path / "out")


@pytest.fixture(scope="module")
def sweep_dir(data_dir) -> Path:
    return shared_sweep(data_dir)  # P=50 and P=100, trained once per session


@pytest.fixture(scope="module")
def summarised(sweep_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("summary")
    result = run_script("evaluate.py", f"sweep={sweep_dir}", "n_bootstrap=50", "logger=none", f"paths.root_dir={root}")
    (out,) = [p.parent for p in root.rglob("sweep_summary.csv")]
    return out, result


def test_sweep_summary_has_one_row_per_p_sorted(summarised, sweep_dir):
    out, result = summarised
    rows = read_csv(out / "sweep_summary.csv")
    assert [float(r["P"]) for r in rows] == [50.0, 100.0]
    assert {r["family"] for r in rows} == {"eyeglasses"} and {r["attribute"] for r in rows} == {"Male"}
    for row in rows:  # numbers come from the evaluation each run got, in percent
        metrics = json.loads((Path(row["eval_dir"]) / "metrics.json").read_text())
        assert float(row["AP"]) == pytest.approx(100 * metrics["heads"]["Male"]["test"]["AP"])
        assert row["AP_median"] != "" and row["gap"] != ""
        assert Path(row["eval_dir"]).parent == Path(row["run_dir"])  # evaluated into <run>/eval
    assert (out / "sweep_vs_p.png").stat().st_size > 10_000
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["runs"] == 2 and summary["skipped"] == []
    assert len(find_runs(sweep_dir, "train")) == 2


def test_ba_ref_is_zero_on_the_balanced_test_split_and_ba_is_zero_at_p50(summarised):
    """Known answers of the definitions (docs/design.md §5.4), whatever the tiny models learned: on a test split
    balanced over the (target x concept) cells P(y=1 | c) = P(y=1), so BA_ref's signs are 0; at P=50 the training
    split carries no correlation, so BA's are too. (P=100 against P=50: test_known_answers.py.)"""
    out, _ = summarised
    rows = {float(r["P"]): r for r in read_csv(out / "sweep_summary.csv")}
    assert set(rows) == {50.0, 100.0}
    for p, row in rows.items():
        assert float(row["BA_ref"]) == 0.0, (p, row["BA_ref"])
    assert float(rows[50.0]["BA"]) == 0.0


def test_second_summary_reuses_current_evaluations(summarised, sweep_dir, tmp_path):
    out, _ = summarised
    evals = sorted(sweep_dir.rglob("eval/metrics.json"))
    assert len(evals) == 2
    before = {p: p.stat().st_mtime for p in evals}
    cfg = compose(["logger=none", "n_bootstrap=50", f"sweep={sweep_dir}", f"paths.root_dir={tmp_path}"], "evaluate")
    summary = analyse(cfg, tmp_path / "again")
    assert {p: p.stat().st_mtime for p in evals} == before  # nothing re-evaluated
    assert [r["P"] for r in summary["rows"]] == [50.0, 100.0]
    # evaluate.py outputs alone (e.g. a multirun of evaluate.py) are summarised as they are
    copies = tmp_path / "evals"
    for i, path in enumerate(evals):
        shutil.copytree(path.parent, copies / f"{i}_job")
    cfg = compose(["logger=none", f"sweep={copies}", f"paths.root_dir={tmp_path}"], "evaluate")
    summary = analyse(cfg, tmp_path / "from_evals")
    assert [r["P"] for r in summary["rows"]] == [50.0, 100.0]
    assert {Path(r["eval_dir"]).parent for r in summary["rows"]} == {Path("evals")}  # relative to paths.root_dir
