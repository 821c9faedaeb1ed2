"""Network dissection (``dissect.py analysis=units``): which units of a trained run detect which facial concepts.

One run (or a model the user brings, ``model.file=``, on the data of the ``data`` group): the classifier is
dissected at the requested layers on a Face Dictionary built from its own test split (balanced over the
target x concept cells), with the non-local groups Male, Young, Pale_Skin and, where the run planted it,
grayscale (docs/design.md §7). Outputs: units.csv (one row per unit), detector
counts per concept and region per layer, biased units per group, plots, the top patches of the strongest
detectors, report.html and dissect.json (``results.DissectionResult``); W&B job_type=dissect. On
SynthFaces the dictionary's ellipses are scored against the exact masks too.

A sweep (``sweep=<dir>`` or a list): per run and layer, detectors, eye-region detectors and the units
biased for each non-local group; each family's seed measure (eye-region detectors for a local concept
such as Eyeglasses, grayscale-biased units for grayscale) against P with Spearman's rho. Outputs:
dissect_sweep.csv, dissect_sweep_totals.csv (layer 'all'), dissect_spearman.csv, dissect_vs_p.png,
dissect_sweep.json.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig

from facebias.analyses.base import Analysis, Context, Result, count_option
from facebias.reporting.console import print_summary
from facebias.reporting.files import files_under, json_safe, portable_path, write_csv, write_json_atomic
from facebias.results import SCHEMA_VERSION
from facebias.runs import TrainedRun, UserModelRun, build_datamodule, load_model

SPLITS = ("train", "val", "test")
DATA_OVERRIDES = ("data_dir", "num_workers", "progress")
GRAYSCALE = "grayscale"  # the planted non-local concept (facebias.data.bias.GRAYSCALE)
ALL_LAYERS = "all"  # the row of a run's totals over its dissected layers
EYE_REGION = "eye"
MEASURES = {"eye_detectors": "eye-region detectors", "grayscale_biased": "grayscale-biased units"}
ROW_COLUMNS = ("family", "concept", "P", "experiment", "train_seed", "layer", "units", "detectors",
               "concept_detectors", "region_detectors", "eye_detectors", "eye_share", "grayscale_biased",
               "grayscale_biased_toward_gray", "Male_biased", "measure", "run_dir", "dissect_dir")


class UnitDissection(Analysis):
    name = "units"
    kind = "dissect"
    result_file = "dissect.json"
    subdir = "dissect"
    summary_file = "dissect_sweep.json"
    job_type = "dissect"
    user_model = True

    def settings(self, cfg: DictConfig) -> dict[str, Any]:
        """The options that change the numbers; a sweep reuses a dissection only when they are all the same."""
        split = cfg.get("split", "test")
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: use one of {', '.join(SPLITS)}")
        from facebias.dissect.selection import landmarks_option

        concepts = cfg.get("concepts")
        confidence = cfg.get("confidence")
        return {
            "checkpoint": str(cfg.get("checkpoint", "best")),
            "layers": requested_layers(cfg),
            "split": split,
            "max_images": count_option(cfg, "max_images", 2000, 1, allow_none=True),
            "seed": int(cfg.get("seed", 0)),
            "mask_size": count_option(cfg, "mask_size", None, 1, allow_none=True),
            "confidence": None if confidence is None else float(confidence),
            "concepts": None if concepts is None else [str(c) for c in concepts],
            "quantile": float(cfg.get("quantile", 0.005)),
            "iou_threshold": float(cfg.get("iou_threshold", 0.04)),
            "bias_threshold": float(cfg.get("bias_threshold", 0.8)),
            "landmarks": landmarks_option(cfg),  # dictionary.landmarks: 68 | 5
            "region_margin": float(cfg.get("region_margin", 0.5)),  # concept- vs region-level detectors
            "grayscale_probe": bool(cfg.get("grayscale_probe", True)),  # gray-biased units of every model
        }

    def run(self, run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return dissect_run(run, settings, ctx)

    def print_run(self, summary: Mapping[str, Any], ctx: Context) -> None:
        from facebias.faces.concepts import REGIONS

        layers = summary["layers"]
        groups = list(dict.fromkeys(g for layer in layers.values() for g in layer["biased"]))
        rows = [[name, str(layer["units"]), str(layer["detectors"]), str(layer.get("concept_detectors", "")),
                 str(layer.get("region_detectors", "")), *(str(layer["by_region"].get(r, 0)) for r in REGIONS),
                 *(str(layer["biased"].get(g, {}).get("biased", "")) for g in groups)] for name, layer in layers.items()]
        notes = [f"biased: {summary['nonlocal_rule']}"]
        quality = summary.get("dictionary_quality")
        if quality:
            scores = ", ".join(f"{c} {v:.2f}" for c, v in quality["mean_iou"].items() if v is not None)
            notes.append(f"ellipses vs exact masks (mean IoU, {quality['images']} faces): {scores}")
        notes.append(f"output dir: {ctx.out}  (report.html, units.csv; {summary['seconds']} s)")
        title = (f"facebias dissect: {summary['experiment']} ({summary['dictionary']['n_images']} "
                 f"{summary['dictionary']['split']} faces)")
        notes.insert(1, f"levels: {summary['pairing'].get('levels', '')}")
        print_summary(title, ["layer", "units", "detectors", "concept-level", "region-level", *REGIONS,
                              *(f"biased {g}" for g in groups)], rows, notes,
                      sync_command=ctx.wandb.sync_command, min_width=120)

    def summarize(self, results: Sequence[Result], skipped: Sequence[Mapping[str, str]],
                  settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        started = time.time()
        out = ctx.out
        rows = sweep_rows([(r.dir, r.payload) for r in results], ctx.option("paths.root_dir"))
        correlations = spearman_rows(rows)
        write_csv(out / "dissect_sweep.csv", [r for r in rows if r["layer"] != ALL_LAYERS], ROW_COLUMNS)
        write_csv(out / "dissect_sweep_totals.csv", [r for r in rows if r["layer"] == ALL_LAYERS], ROW_COLUMNS)
        write_csv(out / "dissect_spearman.csv", correlations,
                  ["family", "measure", "seed_measure", "layer", "runs", "P_values", "rho", "p_value"])
        images = {}
        if any(r["P"] is not None for r in rows):
            images["vs_p"] = sweep_figure(out / "dissect_vs_p.png", rows, correlations)
        summary = json_safe({"schema": SCHEMA_VERSION, "job": "dissect-sweep", "sweep_dirs": [str(r) for r in ctx.roots],
                             "runs": len(results), "rows": rows, "spearman": correlations, "skipped": list(skipped),
                             "wandb": ctx.identity, "measures": dict(MEASURES),
                             "files": ["dissect_sweep.csv", "dissect_sweep_totals.csv", "dissect_spearman.csv",
                                       *(p.name for p in images.values()), "dissect_sweep.json"],
                             "seconds": round(time.time() - started, 1)})
        write_json_atomic(out / "dissect_sweep.json", summary)
        headline = {f"dissect_sweep/rho/{c['family']}/{c['measure']}": c["rho"] for c in correlations
                    if c["layer"] == ALL_LAYERS and c["seed_measure"]}
        ctx.wandb.log({"dissect/sweep": [{c: r.get(c) for c in ROW_COLUMNS} for r in rows],
                       "dissect/spearman": correlations},
                      {f"dissect/plots/sweep/{k}": p for k, p in images.items()}, headline)
        return summary

    def print_sweep(self, summary: Mapping[str, Any], ctx: Context) -> None:
        rows = [[str(r["family"]), "" if r["P"] is None else f"{r['P']:g}", str(r["train_seed"]), str(r["layer"]),
                 str(r["units"]), str(r["detectors"]), _count(r.get("concept_detectors")),
                 _count(r.get("region_detectors")), str(r["eye_detectors"]),
                 "" if r["grayscale_biased"] is None else str(r["grayscale_biased"]),
                 "" if r["Male_biased"] is None else str(r["Male_biased"])] for r in summary["rows"]]
        notes = []
        for c in summary["spearman"]:
            if c["seed_measure"]:
                rho = "undefined (constant or too few P)" if c["rho"] is None else f"{c['rho']:+.2f}"
                notes.append(f"Spearman rho({MEASURES[c['measure']]}, P), {c['family']}, layer {c['layer']}: {rho} "
                             f"over {c['runs']} runs at {c['P_values']} P values")
        notes += [f"skipped {s['run_dir']}: {s['reason']}" for s in summary["skipped"]]
        notes.append(f"table: {ctx.out / 'dissect_sweep.csv'}, figure: {ctx.out / 'dissect_vs_p.png'}")
        print_summary("facebias dissection sweep (layer 'all': sum over layers)",
                      ["family", "P", "seed", "layer", "units", "detectors", "concept-lvl", "region-lvl", "eye det.",
                       "gray-biased", "Male-biased"],
                      rows, notes, sync_command=ctx.wandb.sync_command, left=("family", "layer"), min_width=110)


# ------------------------------------------------------------------------------------------------- options

def _count(value: Any) -> str:
    return "" if value is None else str(value)


def requested_layers(cfg: DictConfig) -> list[str] | None:
    """layers= as a list of names (layers=layer4, layers=[layer3,layer4] and small_cnn's layers=[2,3] all work)."""
    layers = cfg.get("layers")
    if layers is None:
        return None
    names = [str(name) for name in layers] if isinstance(layers, (list, tuple, ListConfig)) else [str(layers)]
    if not names:
        raise ValueError("layers=[] names no layer; give module names (analysis=layers lists them) or null")
    return names


def resolve_device(name: str | None):
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name}: no CUDA device is visible here; use device=cpu or device=auto")
    return torch.device(str(name))


# ------------------------------------------------------------------------------------------------- the run

def nonlocal_rule(threshold: float) -> str:
    return (f"a unit's response to an image is its activation map averaged over space; the unit is biased for a "
            f"group g (0/1 per image) when |Cohen's d| of that response between g=1 and g=0 images exceeds "
            f"{threshold:g} (pooled sample SD; d > 0: the g=1 images drive it)")


def layer_summaries(result, maps: dict[str, tuple], bias_threshold: float) -> dict[str, dict[str, Any]]:
    """Per layer: map shape, units, detectors, detectors per region and concept, biased units per group."""
    biased: dict[str, dict[str, Any]] = {}
    for row in result.biased_unit_counts(bias_threshold) if result.group_stats else []:
        biased.setdefault(row["layer"], {})[row["group"]] = {
            "biased": row["biased"], "toward_1": row["biased_toward_1"], "toward_0": row["biased_toward_0"]}
    return {name: {"shape": list(maps[name][1:]), "units": layer.units, "detectors": int(layer.detector.sum()),
                   "by_region": layer.detectors_per_region(), "by_concept": layer.detectors_per_concept(),
                   "concept_detectors": layer.detectors_per_level()["concept"],
                   "region_detectors": layer.detectors_per_level()["region"],
                   "region_level_by_region": layer.region_level_per_region(),
                   "biased": biased.get(name, {})}
            for name, layer in result.layers.items()}


def add_grayscale_probe(result, net, layers: Sequence[str], faces, model, seed: int, batch_size: int,
                        device) -> dict[str, Any]:
    """The grayscale group of a run that planted no grayscale, from a second pass over its dissected faces with a
    seeded random half shown in grayscale (``selection.grayscale_probe``), joined to the dissection's groups."""
    from facebias.dissect.nonlocal_units import probe_group_stats
    from facebias.dissect.selection import grayscale_probe

    inputs, flags = grayscale_probe(faces, model, seed, batch_size)
    extra = probe_group_stats(net, layers, inputs, flags, (GRAYSCALE,), batch_size, device)
    result.group_stats = {name: result.group_stats[name].joined(stats) if name in result.group_stats else stats
                          for name, stats in extra.items()}
    return {"images": len(faces), "gray": int(flags.sum()), "seed": seed,
            "rule": "the dissected faces again, a seeded random half in grayscale (independent of the labels); the "
                    "grayscale group's biased units are counted by the non-local rule on this pass"}


def dissect_run(run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Dissect one trained run into ``ctx.out``; returns what dissect.json holds."""
    from facebias.dissect import report
    from facebias.dissect.layers import network_of, resolve_layers
    from facebias.dissect.patches import UnitMaxima, strongest_detectors, top_patches
    from facebias.dissect.selection import (
        available_concepts,
        build_dictionary,
        dictionary_options,
        dictionary_quality,
        select_faces,
    )
    from facebias.dissect.units import DictionaryBatches, dissect, level_rule

    started = time.time()
    cfg, out = ctx.cfg, ctx.out
    batch_size = count_option(cfg, "batch_size", 128, 1)
    top_detectors = count_option(cfg, "top_detectors", 8, 0)
    top_images = count_option(cfg, "top_images", 6, 1)
    exact_images = count_option(cfg, "exact_check_images", 256, 0)
    device = resolve_device(cfg.get("device", "auto"))

    model = load_model(run)
    net = network_of(model)
    image_size = int(run.config.data.image_size)
    layers, maps = resolve_layers(net, settings["layers"], image_size)  # a wrong name fails before the data loads
    datamodule = build_datamodule(run, ctx.data_overrides(DATA_OVERRIDES))
    faces = select_faces(datamodule, model, settings["split"], settings["max_images"], settings["seed"], batch_size)
    mask_size = settings["mask_size"] or image_size
    concepts = available_concepts(datamodule.table, settings["concepts"], settings["landmarks"])
    options = dictionary_options(settings, mask_size, concepts)
    # crop=none (folder images of any size): the landmarks are mapped into the frame the model sees
    dictionary = build_dictionary(datamodule, faces, {**options, "crop": getattr(datamodule, "crop", "celeba")})
    if dictionary.left_out:  # folder images dlib places no face on (no five landmarks): named, then left out
        faces = faces.subset(dictionary.kept)
    maxima = UnitMaxima(net, layers, len(faces))  # filled by the dissection's pass, read by the patches
    with maxima.attached():
        result = dissect(net, layers, DictionaryBatches(faces.inputs, dictionary, batch_size),
                         quantile=settings["quantile"], iou_threshold=settings["iou_threshold"],
                         region_margin=settings["region_margin"], device=device,
                         cache_bytes=int(cfg.get("cache_bytes", 1 << 30)))
    probe = None
    if settings.get("grayscale_probe") and getattr(datamodule, "concept", None) != GRAYSCALE:
        probe = add_grayscale_probe(result, net, layers, faces, model, settings["seed"], batch_size, device)
    quality = dictionary_quality(datamodule.table, faces.rows, options, min(exact_images, len(faces)))
    strongest = strongest_detectors(result, top_detectors)

    tables = report.write_tables(out, result, settings["bias_threshold"], quality)
    tables["strongest_detectors"] = strongest
    images: dict[str, Path] = {}
    if cfg.get("plots", True):
        images = report.write_plots(out, tables, settings["bias_threshold"])
        if strongest:
            patches = top_patches(net, faces.inputs, strongest, top_images, batch_size, device, maxima)
            images["top_patches"] = report.patch_figure(out / "plots" / "top_patches.png", strongest, patches,
                                                        faces.pixels)
    summary: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "job": "dissect", **run.provenance(), "settings": dict(settings),
        "network": type(net).__name__, "image_size": image_size, "device": str(device),
        "dictionary": {"split": faces.split, "n_images": len(faces), "mask_size": mask_size,
                       "confidence": dictionary.confidence, "concepts": list(dictionary.concepts),
                       "regions": list(dictionary.regions), "groups": list(dictionary.groups),
                       "landmarks": dictionary.describe_landmarks(), "left_out": dictionary.describe_left_out(),
                       "cells": _cell_counts(faces.cells), "gray_images": int(faces.gray.sum()),
                       "selection": "balanced over (target, concept) cells, seeded"},
        "pairing": {"quantile": settings["quantile"], "iou_threshold": settings["iou_threshold"],
                    "rule": "T_u = top-quantile activation over the dictionary; map upsampled bilinearly to the mask "
                            "size and thresholded; IoU summed over all images; detector when best IoU > threshold",
                    "region_margin": settings["region_margin"], "levels": level_rule(settings["region_margin"])},
        "nonlocal_rule": nonlocal_rule(settings["bias_threshold"]),
        "grayscale_probe": probe,
        "layers": layer_summaries(result, maps, settings["bias_threshold"]),
        "strongest_detectors": strongest,
        "dictionary_quality": quality,
        "wandb": ctx.identity,
    }
    report.write_html(out / "report.html", summary, tables, images)
    summary["files"] = files_under(out, "dissect.json", "run.json")
    summary["seconds"] = round(time.time() - started, 1)
    summary = json_safe(summary)
    write_json_atomic(out / "dissect.json", summary)
    ctx.wandb.log({f"dissect/{name}": rows for name, rows in tables.items()},
                  {f"dissect/plots/{name}": path for name, path in images.items()}, wandb_summary(summary),
                  html={"dissect/report": out / "report.html"})
    return summary


def _cell_counts(cells: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(cells, axis=0, return_counts=True)
    return {f"y{int(v[0])}_c{int(v[1])}": int(c) for v, c in zip(values, counts, strict=True)}


def wandb_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, layer in summary["layers"].items():
        values[f"dissect/{name}/detectors"] = layer["detectors"]
        values[f"dissect/{name}/concept_detectors"] = layer.get("concept_detectors")
        values[f"dissect/{name}/region_detectors"] = layer.get("region_detectors")
        for region, count in layer["by_region"].items():
            values[f"dissect/{name}/{region}_detectors"] = count
        for group, counts in layer["biased"].items():
            values[f"dissect/{name}/biased_{group}"] = counts["biased"]
    for concept, iou in ((summary.get("dictionary_quality") or {}).get("mean_iou") or {}).items():
        values[f"dissect/dictionary_iou/{concept}"] = iou
    return values


# ----------------------------------------------------------------------------------------------- the sweep

def family_measure(concept: str | None) -> str:
    """The seed experiment's measure of a family: grayscale-biased units for grayscale, else eye-region detectors."""
    return "grayscale_biased" if concept == GRAYSCALE else "eye_detectors"


def sweep_rows(entries: Sequence[tuple[Path, Mapping[str, Any]]], root: str | None = None) -> list[dict[str, Any]]:
    """One row per (run, layer), plus a row per run with its totals over the layers (layer = 'all')."""
    rows = []
    for dissect_dir, d in entries:
        base = {"family": d["family"], "concept": d["concept"], "P": d["P"], "experiment": d["experiment"],
                "train_seed": d.get("train_seed"), "measure": family_measure(d["concept"]),
                "run_dir": portable_path(d["source"]["run_dir"], root), "dissect_dir": portable_path(dissect_dir, root)}
        per_layer = []
        for name, layer in d["layers"].items():
            biased = layer.get("biased") or {}
            gray = biased.get(GRAYSCALE)
            per_layer.append({
                **base, "layer": name, "units": layer["units"], "detectors": layer["detectors"],
                "concept_detectors": layer.get("concept_detectors"), "region_detectors": layer.get("region_detectors"),
                "eye_detectors": layer["by_region"].get(EYE_REGION, 0),
                "grayscale_biased": None if gray is None else gray["biased"],
                "grayscale_biased_toward_gray": None if gray is None else gray["toward_1"],
                "Male_biased": (biased.get("Male") or {}).get("biased"),
            })
        total = {**base, "layer": ALL_LAYERS}
        for key in ("units", "detectors", "concept_detectors", "region_detectors", "eye_detectors", "grayscale_biased",
                    "grayscale_biased_toward_gray", "Male_biased"):
            values = [r[key] for r in per_layer]
            total[key] = None if any(v is None for v in values) else sum(values)
        for row in [*per_layer, total]:
            row["eye_share"] = row["eye_detectors"] / row["units"] if row["units"] else None
            rows.append(row)
    layer_order: dict[str, int] = {}
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


def spearman_of_means(points: Sequence[tuple[float, float]]) -> tuple[float | None, float | None]:
    """Spearman's rho (and p) between P and the mean of the values at each P: with several seeds per P, the
    statistic a known answer such as "rises with P" is read from (over the runs, seed noise at one P counts as
    disagreement); with one run per P it equals the rho over the runs."""
    values: dict[float, list[float]] = {}
    for p, value in points:
        values.setdefault(float(p), []).append(float(value))
    return spearman(list(values), [float(np.mean(v)) for v in values.values()])


def trend(points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The columns of a sweep's rho table for (P, value) points: runs, distinct P, rho and p over the runs and
    over the per-P means."""
    rho, p = spearman([p for p, _ in points], [v for _, v in points])
    rho_means, p_means = spearman_of_means(points)
    return {"runs": len(points), "P_values": len({p for p, _ in points}), "rho": rho, "p_value": p,
            "rho_means": rho_means, "p_value_means": p_means}


def spearman_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """rho(measure, P) per family, measure and layer over the runs (each run one point: seeds count), and over
    the per-P means (rho_means)."""
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
                out.append({"family": family, "measure": measure, "seed_measure": measure == mine[0]["measure"],
                            "layer": layer, **trend(points)})
    return out


def sweep_figure(path: Path, rows: Sequence[Mapping[str, Any]], correlations: Sequence[Mapping[str, Any]]) -> Path:
    """One panel per family: its seed measure vs P, one line per layer (mean over seeds, each run a dot)."""
    from facebias.reporting.plots import FAMILY_COLOURS, pyplot, save_figure

    plt = pyplot()
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
    return save_figure(fig, path)
