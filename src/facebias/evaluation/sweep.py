"""One command for a whole sweep: `python evaluate.py sweep=multirun/train/<dir>`.

Under the given dir it finds training runs (a dir with config.yaml and checkpoints/) and evaluate.py
outputs (a metrics.json with ``"job": "evaluate"``). A training run without a current evaluation
(same checkpoint file, n_bootstrap, seed, precision) is evaluated into ``<run>/eval/``, which the next
summary finds and reuses. The summary (one row per run and head, sorted by family, attribute and P)
goes to sweep_summary.csv/.json, the figure of AP, DEO, BA, KL and the cell gap vs P (one line per
family) to sweep_vs_p.png, and both to W&B (the sweep's group, job_type=eval).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from facebias.evaluation.runs import RunNotFoundError, TrainedRun, locate_run, resolve_path

EVAL_SUBDIR = "eval"
LEADING_COLUMNS = ("family", "P", "attribute", "experiment", "train_seed")


def find_training_runs(root: Path) -> list[Path]:
    """Dirs written by train.py under root: config.yaml beside checkpoints/ or train.log (a run that died early
    is found too, and reported as skipped, rather than silently missing from the table)."""
    return sorted(p.parent for p in root.rglob("config.yaml")
                  if ((p.parent / "checkpoints").is_dir() or (p.parent / "train.log").is_file())
                  and ".hydra" not in p.parts)


def find_evaluations(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(dir, metrics) of every evaluate.py output under root."""
    found = []
    for path in sorted(root.rglob("metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(metrics, dict) and metrics.get("job") == "evaluate" and "source" in metrics:
            found.append((path.parent, metrics))
    return found


def is_current(metrics: dict[str, Any], run: TrainedRun, settings: dict[str, Any]) -> bool:
    """An evaluation still describes `run`: same checkpoint file (path, size, mtime) and the same settings."""
    source, stat = metrics["source"], run.checkpoint.stat()
    same_checkpoint = (Path(source["checkpoint"]) == run.checkpoint and source.get("checkpoint_size") == stat.st_size
                       and source.get("checkpoint_mtime") == stat.st_mtime)
    recorded = metrics.get("settings") or {}
    return same_checkpoint and all(recorded.get(key) == value for key, value in settings.items())


def collect_entries(cfg: DictConfig, root: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[dict[str, str]]]:
    """Evaluations of every run under root (evaluating the runs that lack a current one), and the skipped runs."""
    from facebias.evaluation.task import eval_settings, evaluate_run

    settings = eval_settings(cfg)
    evaluations = find_evaluations(root)
    training = find_training_runs(root)
    if not training and not evaluations:
        raise RunNotFoundError(
            f"sweep={root}: found no training run (a dir with config.yaml and checkpoints/, written by train.py) "
            "and no evaluate.py output (metrics.json with \"job\": \"evaluate\") under it; point sweep= at a "
            "multirun dir such as multirun/train/<date>_<pid>")
    entries, skipped, covered = [], [], set()
    for run_dir in training:
        try:
            run = locate_run(run=str(run_dir), checkpoint=settings["checkpoint"])
        except (RunNotFoundError, ValueError) as error:
            skipped.append({"run_dir": str(run_dir), "reason": str(error)})
            warnings.warn(f"skipping {run_dir}: {error}", RuntimeWarning, stacklevel=2)
            continue
        covered.add(str(run.run_dir))
        current = [(d, m) for d, m in evaluations
                   if Path(m["source"]["run_dir"]) == run.run_dir and is_current(m, run, settings)]
        if current and not cfg.get("force", False):
            entries.append(max(current, key=lambda e: (e[0] / "metrics.json").stat().st_mtime))
            continue
        out = run.run_dir / EVAL_SUBDIR
        entries.append((out, evaluate_run(run, cfg, out)))
    newest: dict[str, tuple[Path, dict[str, Any]]] = {}
    for eval_dir, metrics in evaluations:  # outputs of evaluate.py runs whose training run is elsewhere
        source = metrics["source"]["run_dir"]
        if source in covered:
            continue
        if source not in newest or (eval_dir / "metrics.json").stat().st_mtime > \
                (newest[source][0] / "metrics.json").stat().st_mtime:
            newest[source] = (eval_dir, metrics)
    entries.extend(newest.values())
    return entries, skipped


def sweep_rows(entries: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (run, head): family, P, attribute, the per-attribute table's columns, where it came from."""
    from facebias.evaluation.tables import attribute_row

    rows = []
    for eval_dir, metrics in entries:
        for name, head in metrics["heads"].items():
            row = {"family": metrics["family"], "P": metrics["P"], "attribute": name,
                   "experiment": metrics["experiment"], "train_seed": metrics.get("train_seed")}
            row.update({k: v for k, v in attribute_row(name, head).items() if k != "attribute"})
            row.update({"run_dir": metrics["source"]["run_dir"], "eval_dir": str(eval_dir)})
            rows.append(row)
    return sorted(rows, key=lambda r: (str(r["family"]), r["attribute"], -1 if r["P"] is None else r["P"],
                                       r["train_seed"] if r["train_seed"] is not None else -1))


def sweep_identity(root: Path, entries: list[tuple[Path, dict[str, Any]]]) -> dict[str, str]:
    """The sweep's W&B group when all its runs share one (a train multirun does), else one named after the dir."""
    groups = {m["wandb"]["group"] for _, m in entries if m.get("wandb")}
    group = groups.pop() if len(groups) == 1 else f"sweep-{root.name}"
    return {"group": group, "name": f"summary {root.name}"}


def summarise_sweep(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Evaluate what is missing under cfg.sweep, then write and log the summary table and figure."""
    from facebias.evaluation.plots import sweep_plot
    from facebias.evaluation.tables import json_safe, metric_columns, write_csv
    from facebias.evaluation.task import search_dirs
    from facebias.evaluation.wandb_log import log_evaluation, start_run
    from facebias.training.loggers import finish_wandb
    from facebias.training.task import write_json_atomic

    started = time.time()
    root = resolve_path(str(cfg.sweep), "sweep", search_dirs(cfg))
    if not root.is_dir():
        raise RunNotFoundError(f"sweep={cfg.sweep}: {root} is not a directory; pass a multirun dir")
    entries, skipped = collect_entries(cfg, root)
    if not entries:
        raise RunNotFoundError(f"sweep={root}: no run could be evaluated; skipped: "
                               + "; ".join(f"{s['run_dir']}: {s['reason']}" for s in skipped))
    rows = sweep_rows(entries)
    out.mkdir(parents=True, exist_ok=True)
    columns = [*LEADING_COLUMNS, "threshold", "n_test", *metric_columns(), "accuracy", "stereotypical_acc",
               "counter_stereotypical_acc", "gap", "stereotype", "category", "run_dir", "eval_dir"]
    csv_path = write_csv(out / "sweep_summary.csv", rows, columns)
    figure = sweep_plot(out / "sweep_vs_p.png", rows, title=f"{root.name}: test metrics vs P")
    summary = {"job": "evaluate-sweep", "sweep_dir": str(root), "runs": len(entries), "rows": rows,
               "skipped": skipped, "files": [csv_path.name, figure.name, "sweep_summary.json"],
               "wandb": sweep_identity(root, entries), "seconds": round(time.time() - started, 1)}
    summary = json_safe(summary)
    write_json_atomic(out / "sweep_summary.json", summary)
    sync_command = None
    try:
        run = start_run(cfg, out, summary["wandb"], {"sweep_dir": str(root), "runs": len(entries)})
        log_evaluation(run, {"sweep/summary": [{c: r.get(c) for c in columns} for r in rows]},
                       {"sweep/metrics_vs_p": figure}, {"sweep/runs": len(entries)})
    finally:
        sync_command = finish_wandb()
    print_sweep(out, rows, skipped, sync_command)
    return summary


def print_sweep(out: Path, rows: list[dict[str, Any]], skipped: list[dict[str, str]], sync_command: str | None,
                ) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="facebias sweep summary (test; x100 except KL)")
    for column in ("family", "attribute", "P", "AP", "DEO", "BA", "KL", "gap"):
        table.add_column(column, justify="left" if column in ("family", "attribute") else "right")
    for row in rows:
        table.add_row(str(row["family"]), row["attribute"], "" if row["P"] is None else f"{row['P']:g}",
                      *(_fmt(_central(row, m)) for m in ("AP", "DEO", "BA", "KL")), _fmt(row["gap"]))
    console.print(table)
    for s in skipped:
        console.print(f"skipped {s['run_dir']}: {s['reason']}")
    console.print(f"summary: {out / 'sweep_summary.csv'}, figure: {out / 'sweep_vs_p.png'}")
    if sync_command:
        console.print(f"W&B ran offline; upload with: {sync_command}")


def _central(row: dict[str, Any], metric: str) -> Any:
    """The bootstrap median when there is one, else the point estimate."""
    median = row.get(f"{metric}_median")
    return row[metric] if median is None else median


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.2f}"
