"""What a dissection writes: CSV tables, PNG figures and a self-contained HTML report.

Tables (one CSV each): units (one row per unit: best concept, its region and IoU, detector flag, its level
(concept or region, ``units.level_rule``) with the best other concept of the region and its IoU, T_u),
detectors (long form: per layer, concept or region), detectors_by_region and detectors_by_concept (one
row per layer), nonlocal_units (Cohen's d per unit and group) and biased_units (counts per layer and
group), dictionary_quality (SynthFaces: ellipse vs exact mask IoU per concept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facebias.faces.concepts import CONCEPT_REGION, REGIONS
from facebias.reporting.files import write_csv
from facebias.reporting.plots import FAMILY_COLOURS, pyplot, save_figure

REGION_COLOURS = dict(zip(REGIONS, ("tab:red", "tab:orange", "tab:pink", "tab:olive", "tab:brown", "tab:cyan",
                                    "tab:purple"), strict=True))


# ---------------------------------------------------------------------------------------------------- tables

def region_rows(result) -> list[dict[str, Any]]:
    """One row per layer: units, detectors, concept- and region-level detectors and detectors per face region
    (every region, zeros included)."""
    rows = []
    for name, layer in result.layers.items():
        per_region = layer.detectors_per_region()
        levels = layer.detectors_per_level()
        rows.append({"layer": name, "units": layer.units, "detectors": int(layer.detector.sum()),
                     "concept_level": levels["concept"], "region_level": levels["region"],
                     **{region: per_region.get(region, 0) for region in REGIONS}})
    return rows


def concept_rows(result) -> list[dict[str, Any]]:
    """One row per layer: units, detectors and detectors per concept."""
    return [{"layer": name, "units": layer.units, "detectors": int(layer.detector.sum()),
             **layer.detectors_per_concept()} for name, layer in result.layers.items()]


def quality_rows(quality: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not quality:
        return []
    return [{"concept": concept, "region": CONCEPT_REGION.get(concept, ""), "mean_iou": value,
             "images": quality["images"]} for concept, value in quality["mean_iou"].items()]


def write_tables(out: Path, result, bias_threshold: float, quality: Mapping[str, Any] | None,
                 ) -> dict[str, list[dict[str, Any]]]:
    """Write every table as <name>.csv in out; returns the rows by name."""
    tables = {"units": result.rows(), "detectors": result.count_rows(), "detectors_by_region": region_rows(result),
              "detectors_by_concept": concept_rows(result)}
    if result.group_stats:
        tables["nonlocal_units"] = result.biased_units(bias_threshold)
        tables["biased_units"] = result.biased_unit_counts(bias_threshold)
    if quality:
        tables["dictionary_quality"] = quality_rows(quality)
    for name, rows in tables.items():
        write_csv(out / f"{name}.csv", rows)
    return tables


# --------------------------------------------------------------------------------------------------- figures

def region_plot(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Detectors per face region, one group of bars per layer."""
    plt = pyplot()
    layers = [str(r["layer"]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(layers) + 2), 3.6))
    width = 0.8 / len(REGIONS)
    x = np.arange(len(layers))
    for k, region in enumerate(REGIONS):
        ax.bar(x + (k - (len(REGIONS) - 1) / 2) * width, [r[region] for r in rows], width, label=region,
               color=REGION_COLOURS[region])
    ax.set_xticks(x, [f"{r['layer']}\n({r['detectors']}/{r['units']} units)" for r in rows], fontsize=8)
    ax.set_ylabel("detectors")
    ax.set_title("detectors per face region and layer")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def biased_plot(path: Path, rows: Sequence[Mapping[str, Any]], threshold: float) -> Path:
    """Biased units per non-local group, one group of bars per layer (hatched part: toward g=0)."""
    plt = pyplot()
    layers = list(dict.fromkeys(str(r["layer"]) for r in rows))
    groups = list(dict.fromkeys(str(r["group"]) for r in rows))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(layers) + 2), 3.6))
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(layers))
    for k, group in enumerate(groups):
        by_layer = {str(r["layer"]): r for r in rows if str(r["group"]) == group}
        toward_1 = [by_layer[layer]["biased_toward_1"] for layer in layers]
        toward_0 = [by_layer[layer]["biased_toward_0"] for layer in layers]
        offset = x + (k - (len(groups) - 1) / 2) * width
        colour = FAMILY_COLOURS[k % len(FAMILY_COLOURS)]
        ax.bar(offset, toward_1, width, color=colour, label=f"{group} (g=1 higher)")
        ax.bar(offset, toward_0, width, bottom=toward_1, color=colour, alpha=0.45, hatch="//",
               label=f"{group} (g=0 higher)")
    ax.set_xticks(x, layers)
    ax.set_ylabel(f"units with |Cohen's d| > {threshold:g}")
    ax.set_title("units biased for non-local groups")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def write_plots(out: Path, tables: Mapping[str, list[dict[str, Any]]], bias_threshold: float) -> dict[str, Path]:
    images = {"detectors_by_region": region_plot(out / "plots" / "detectors_by_region.png",
                                                 tables["detectors_by_region"])}
    if tables.get("biased_units"):
        images["biased_units"] = biased_plot(out / "plots" / "biased_units.png", tables["biased_units"],
                                             bias_threshold)
    return images


def patch_figure(path: Path, detectors: Sequence[Mapping[str, Any]], patches: Sequence[Sequence[Any]],
                 pixels) -> Path:
    """One row per detector: its top patches (crops of the faces where the unit's map exceeds T_u)."""
    plt = pyplot()
    columns = max(1, max((len(p) for p in patches), default=1))
    fig, axes = plt.subplots(len(detectors), columns, figsize=(1.3 * columns + 1.6, 1.35 * len(detectors)),
                             squeeze=False)
    for r, (row, mine) in enumerate(zip(detectors, patches, strict=True)):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(c < len(mine))
            if c < len(mine):
                top, left, bottom, right = mine[c].box
                ax.imshow(pixels[mine[c].image, top:bottom, left:right].numpy(), interpolation="nearest")
        axes[r, 0].set_ylabel(f"{row['layer']}:{row['unit']}\n{row['concept']}\nIoU {row['iou']:.3f}",
                              rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle("top patches of the strongest detectors (crop: upsampled map > T_u)", fontsize=9)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------------ HTML

def write_html(path: Path, summary: Mapping[str, Any], tables: Mapping[str, list[dict[str, Any]]],
               images: Mapping[str, Path]) -> Path:
    """A self-contained report (figures inline as base64 PNG): settings, detector counts, biased units, patches."""
    from facebias.reporting.html import render_html

    return render_html("dissect.html.j2", path, title=f"facebias dissection: {summary['experiment']}",
                       summary=summary, tables=tables, images=images)
