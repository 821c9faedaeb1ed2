"""The controlled experiments in one command: `python dissect.py analysis=sweep sweep=<multirun dir(s)>`.

Every training run under the sweep dirs (found as evaluate.py finds them) is dissected into
``<run>/dissect/`` unless a current dissection is there (same checkpoint file and settings). Then, per
run and layer: detectors, eye-region detectors (concepts eyes, brows, Eyeglasses) and the units biased
for each non-local group, grayscale included where the run planted it. The figure shows each family's
seed measure against P, one line per layer: eye-region detectors for a local concept such as
Eyeglasses, grayscale-biased units for grayscale. Spearman's rho of each measure against P (per family
and layer, and for the sum over layers) goes to the table and the console; DESIGN §7 expects it to rise
with P. Outputs: dissect_sweep.csv (one row per run and layer), dissect_sweep_totals.csv (one per run, summed
over its layers: layer 'all'), dissect_spearman.csv, dissect_vs_p.png, dissect_sweep.json and W&B.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig

from facebias.data.bias import GRAYSCALE
from facebias.evaluation.runs import RunNotFoundError, locate_run, resolve_path
from facebias.evaluation.sweep import find_training_runs, is_current

ALL_LAYERS = "all"  # the row of a run's totals over its dissected layers
EYE_REGION = "eye"
MEASURES = {"eye_detectors": "eye-region detectors", "grayscale_biased": "grayscale-biased units"}
ROW_COLUMNS = ("family", "concept", "P", "experiment", "train_seed", "layer", "units", "detectors",
               "eye_detectors", "eye_share", "grayscale_biased", "grayscale_biased_toward_gray", "Male_biased",
               "measure", "run_dir", "dissect_dir")


def sweep_roots(cfg: DictConfig) -> list[Path]:
    """The sweep= dirs (one path or a list), resolved and checked to be directories."""
    from facebias.evaluation.task import search_dirs

    value = cfg.get("sweep")
    if not value:
        raise ValueError("analysis=sweep needs sweep=<multirun/train/...> (or 'sweep=[dir1,dir2]' for several)")
    names = [str(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else [str(value)]
    roots = []
    for name in names:
        root = resolve_path(name, "sweep", search_dirs(cfg))
        if not root.is_dir():
            raise RunNotFoundError(f"sweep={name}: {root} is not a directory; pass a multirun dir of train.py")
        roots.append(root)
    return roots


def family_measure(concept: str | None) -> str:
    """The seed experiment's measure of a family: grayscale-biased units for grayscale, else eye-region detectors."""
    return "grayscale_biased" if concept == GRAYSCALE else "eye_detectors"


def collect_dissections(cfg: DictConfig, roots: Sequence[Path]) -> tuple[list[tuple[Path, dict]], list[dict]]:
    """(dissect dir, dissect.json) of every run under the roots, dissecting those without a current one."""
    from facebias.dissect.task import DISSECT_SUBDIR, dissect_run, dissect_settings

    settings = dissect_settings(cfg)
    entries, skipped, seen = [], [], set()
    runs = [run_dir for root in roots for run_dir in find_training_runs(root)]
    if not runs:
        raise RunNotFoundError(
            f"sweep={', '.join(map(str, roots))}: found no training run (a dir with config.yaml and checkpoints/, "
            "written by train.py); point sweep= at a multirun dir such as multirun/train/<date>_<pid>")
    for run_dir in runs:
        if run_dir in seen:
            continue
        seen.add(run_dir)
        try:
            run = locate_run(run=str(run_dir), checkpoint=settings["checkpoint"])
        except (RunNotFoundError, ValueError) as error:
            skipped.append({"run_dir": str(run_dir), "reason": str(error)})
            warnings.warn(f"skipping {run_dir}: {error}", RuntimeWarning, stacklevel=2)
            continue
        out = run.run_dir / DISSECT_SUBDIR
        previous = out / "dissect.json"
        if previous.is_file() and not cfg.get("force", False):
            recorded = json.loads(previous.read_text())
            if recorded.get("job") == "dissect" and is_current(recorded, run, settings):
                entries.append((out, recorded))
                continue
        entries.append((out, dissect_run(run, cfg, out)))
    return entries, skipped


def sweep_rows(entries: Sequence[tuple[Path, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (run, layer), plus a row per run with its totals over the layers (layer = 'all')."""
    rows = []
    for dissect_dir, d in entries:
        base = {"family": d["family"], "concept": d["concept"], "P": d["P"], "experiment": d["experiment"],
                "train_seed": d.get("train_seed"), "measure": family_measure(d["concept"]),
                "run_dir": d["source"]["run_dir"], "dissect_dir": str(dissect_dir)}
        per_layer = []
        for name, layer in d["layers"].items():
            biased = layer.get("biased") or {}
            gray = biased.get(GRAYSCALE)
            per_layer.append({
                **base, "layer": name, "units": layer["units"], "detectors": layer["detectors"],
                "eye_detectors": layer["by_region"].get(EYE_REGION, 0),
                "grayscale_biased": None if gray is None else gray["biased"],
                "grayscale_biased_toward_gray": None if gray is None else gray["toward_1"],
                "Male_biased": (biased.get("Male") or {}).get("biased"),
            })
        total = {**base, "layer": ALL_LAYERS}
        for key in ("units", "detectors", "eye_detectors", "grayscale_biased", "grayscale_biased_toward_gray",
                    "Male_biased"):
            values = [r[key] for r in per_layer]
            total[key] = None if any(v is None for v in values) else sum(values)
        for row in [*per_layer, total]:
            row["eye_share"] = row["eye_detectors"] / row["units"] if row["units"] else None
            rows.append(row)
    layer_order = {}
    for row in rows:
        layer_order.setdefault(row["layer"], len(layer_order))
    return sorted(rows, key=lambda r: (str(r["family"]), -1 if r["P"] is None else r["P"],
                                       r["train_seed"] if r["train_seed"] is not None else -1,
                                       r["layer"] == ALL_LAYERS, layer_order[r["layer"]]))


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """Spearman's rho (ties get average ranks) and its two-sided p-value; rho is None when undefined (fewer
    than two points or a constant variable), the p-value None where scipy gives none (two points)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    return rho, (p if np.isfinite(p) else None)


def spearman_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """rho(measure, P) per family, measure and layer over the runs (each run one point: seeds count)."""
    out = []
    families = list(dict.fromkeys(str(r["family"]) for r in rows if r["P"] is not None))
    for family in families:
        mine = [r for r in rows if str(r["family"]) == family and r["P"] is not None]
        for measure in MEASURES:
            for layer in dict.fromkeys(r["layer"] for r in mine):
                points = [(float(r["P"]), float(r[measure])) for r in mine
                          if r["layer"] == layer and r[measure] is not None]
                if not points:
                    continue
                rho, p = spearman([p for p, _ in points], [v for _, v in points])
                out.append({"family": family, "measure": measure, "seed_measure": measure == mine[0]["measure"],
                            "layer": layer, "runs": len(points), "P_values": len({p for p, _ in points}),
                            "rho": rho, "p_value": p})
    return out


def sweep_figure(path: Path, rows: Sequence[Mapping[str, Any]], correlations: Sequence[Mapping[str, Any]]) -> Path:
    """One panel per family: its seed measure vs P, one line per layer (mean over seeds, each run a dot)."""
    from facebias.evaluation.plots import FAMILY_COLOURS, _pyplot, _save

    plt = _pyplot()
    families = list(dict.fromkeys(str(r["family"]) for r in rows if r["P"] is not None))
    if not families:
        raise ValueError("no run of the sweep has a P (a planted concept): nothing to plot against P")
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.8), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        mine = [r for r in rows if str(r["family"]) == family and r["P"] is not None]
        measure = mine[0]["measure"]
        layers = [layer for layer in dict.fromkeys(r["layer"] for r in mine) if layer != ALL_LAYERS]
        for k, layer in enumerate(layers):
            points = [(float(r["P"]), r[measure]) for r in mine if r["layer"] == layer and r[measure] is not None]
            if not points:
                continue
            colour = FAMILY_COLOURS[k % len(FAMILY_COLOURS)]
            ps = sorted({p for p, _ in points})
            means = [float(np.mean([v for q, v in points if q == p])) for p in ps]
            ax.plot(ps, means, marker="o", color=colour, label=f"layer {layer}")
            ax.scatter([p for p, _ in points], [v for _, v in points], color=colour, s=10, alpha=0.5)
        total = next((c for c in correlations if c["family"] == family and c["measure"] == measure
                      and c["layer"] == ALL_LAYERS), None)
        rho = "n/a" if total is None or total["rho"] is None else f"{total['rho']:.2f}"
        ax.set_title(f"{family}: {MEASURES[measure]} vs P\n(Spearman rho, all layers: {rho})", fontsize=10)
        ax.set_xlabel("P (% of men with the concept)")
        ax.set_ylabel(MEASURES[measure])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def dissect_sweep(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Dissect what is missing under the sweep dirs, then write and log the table, correlations and figure."""
    from facebias.dissect.report import log_wandb
    from facebias.evaluation.sweep import sweep_identity
    from facebias.evaluation.tables import json_safe, write_csv
    from facebias.evaluation.wandb_log import start_run
    from facebias.training.loggers import finish_wandb
    from facebias.training.task import write_json_atomic

    started = time.time()
    roots = sweep_roots(cfg)
    entries, skipped = collect_dissections(cfg, roots)
    if not entries:
        raise RunNotFoundError("no run of the sweep could be dissected; skipped: "
                               + "; ".join(f"{s['run_dir']}: {s['reason']}" for s in skipped))
    rows = sweep_rows(entries)
    correlations = spearman_rows(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "dissect_sweep.csv", [r for r in rows if r["layer"] != ALL_LAYERS], ROW_COLUMNS)
    write_csv(out / "dissect_sweep_totals.csv", [r for r in rows if r["layer"] == ALL_LAYERS], ROW_COLUMNS)
    write_csv(out / "dissect_spearman.csv", correlations,
              ["family", "measure", "seed_measure", "layer", "runs", "P_values", "rho", "p_value"])
    images = {}
    if any(r["P"] is not None for r in rows):
        images["vs_p"] = sweep_figure(out / "dissect_vs_p.png", rows, correlations)
    name = roots[0] if len(roots) == 1 else Path("+".join(root.name for root in roots))
    identity = {**sweep_identity(name, entries), "name": f"dissect summary {name.name}"}
    summary = json_safe({"job": "dissect-sweep", "sweep_dirs": [str(r) for r in roots], "runs": len(entries),
                         "rows": rows, "spearman": correlations, "skipped": skipped, "wandb": identity,
                         "measures": {k: v for k, v in MEASURES.items()},
                         "files": ["dissect_sweep.csv", "dissect_sweep_totals.csv", "dissect_spearman.csv", *(p.name for p in images.values()),
                                   "dissect_sweep.json"],
                         "seconds": round(time.time() - started, 1)})
    write_json_atomic(out / "dissect_sweep.json", summary)
    sync_command = None
    try:
        run = start_run(cfg, out, identity, {"sweep_dirs": summary["sweep_dirs"], "runs": len(entries)},
                        job_type="dissect")
        headline = {f"dissect_sweep/rho/{c['family']}/{c['measure']}": c["rho"] for c in correlations
                    if c["layer"] == ALL_LAYERS and c["seed_measure"]}
        log_wandb(run, {"sweep": [{c: r.get(c) for c in ROW_COLUMNS} for r in rows], "spearman": correlations},
                  {f"sweep/{k}": p for k, p in images.items()}, None, headline)
    finally:
        sync_command = finish_wandb()
    print_sweep(out, summary, sync_command)
    return summary


def print_sweep(out: Path, summary: Mapping[str, Any], sync_command: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 110))
    table = Table(title="facebias dissection sweep (layer 'all': sum over layers)")
    for column in ("family", "P", "seed", "layer", "units", "detectors", "eye det.", "gray-biased", "Male-biased"):
        table.add_column(column, justify="left" if column in ("family", "layer") else "right")
    for r in summary["rows"]:
        table.add_row(str(r["family"]), "" if r["P"] is None else f"{r['P']:g}", str(r["train_seed"]), str(r["layer"]),
                      str(r["units"]), str(r["detectors"]), str(r["eye_detectors"]),
                      "" if r["grayscale_biased"] is None else str(r["grayscale_biased"]),
                      "" if r["Male_biased"] is None else str(r["Male_biased"]))
    console.print(table)
    for c in summary["spearman"]:
        if c["seed_measure"]:
            rho = "undefined (constant or too few P)" if c["rho"] is None else f"{c['rho']:+.2f}"
            console.print(f"Spearman rho({MEASURES[c['measure']]}, P), {c['family']}, layer {c['layer']}: {rho} "
                          f"over {c['runs']} runs at {c['P_values']} P values")
    for s in summary["skipped"]:
        console.print(f"skipped {s['run_dir']}: {s['reason']}")
    console.print(f"table: {out / 'dissect_sweep.csv'}, figure: {out / 'dissect_vs_p.png'}")
    if sync_command:
        console.print(f"W&B ran offline; upload with: {sync_command}")
