"""What a dissection writes: CSV tables, PNG figures, a self-contained HTML report, W&B and the console.

Tables (one CSV each): units (one row per unit: best concept, its region and IoU, detector flag, T_u),
detectors (long form: per layer, concept or region), detectors_by_region and detectors_by_concept (one
row per layer), nonlocal_units (Cohen's d per unit and group) and biased_units (counts per layer and
group), dictionary_quality (SynthFaces: ellipse vs exact mask IoU per concept).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facebias.evaluation.plots import FAMILY_COLOURS, _pyplot, _save
from facebias.evaluation.tables import write_csv
from facebias.faces.concepts import LOCAL_CONCEPT_REGION, REGIONS

REGION_COLOURS = dict(zip(REGIONS, ("tab:red", "tab:orange", "tab:pink", "tab:olive", "tab:brown", "tab:cyan",
                                    "tab:purple"), strict=True))


# ---------------------------------------------------------------------------------------------------- tables

def region_rows(result) -> list[dict[str, Any]]:
    """One row per layer: units, detectors and detectors per face region (every region, zeros included)."""
    rows = []
    for name, layer in result.layers.items():
        per_region = layer.detectors_per_region()
        rows.append({"layer": name, "units": layer.units, "detectors": int(layer.detector.sum()),
                     **{region: per_region.get(region, 0) for region in REGIONS}})
    return rows


def concept_rows(result) -> list[dict[str, Any]]:
    """One row per layer: units, detectors and detectors per concept."""
    return [{"layer": name, "units": layer.units, "detectors": int(layer.detector.sum()),
             **layer.detectors_per_concept()} for name, layer in result.layers.items()]


def quality_rows(quality: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not quality:
        return []
    return [{"concept": concept, "region": LOCAL_CONCEPT_REGION.get(concept, ""), "mean_iou": value,
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
    plt = _pyplot()
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
    return _save(fig, path)


def biased_plot(path: Path, rows: Sequence[Mapping[str, Any]], threshold: float) -> Path:
    """Biased units per non-local group, one group of bars per layer (hatched part: toward g=0)."""
    plt = _pyplot()
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
    return _save(fig, path)


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
    plt = _pyplot()
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
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------ HTML

def _cell(value: Any) -> str:
    """Floats to 3 decimals without trailing zeros (NaN: empty), everything else escaped."""
    if isinstance(value, float):
        if not np.isfinite(value):
            return ""
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return html.escape("" if value is None else str(value))


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p><em>(empty)</em></p>"
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def inline_png(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}th,td{border:1px solid #ccc;padding:.2em .5em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
code{background:#f3f3f3;padding:0 .2em}.note{color:#555;font-size:.9em}"""


def write_html(path: Path, summary: Mapping[str, Any], tables: Mapping[str, list[dict[str, Any]]],
               images: Mapping[str, Path]) -> Path:
    """A self-contained report (figures inline as base64 PNG): settings, detector counts, biased units, patches."""
    d = summary["dictionary"]
    title = f"facebias dissection: {summary['experiment']}"
    p = "" if summary.get("P") is None else f", P={summary['P']:g}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>family <b>{html.escape(str(summary['family']))}</b>{p}; network {html.escape(summary['network'])} "
             f"at {summary['image_size']} px; checkpoint <code>{html.escape(summary['source']['checkpoint'])}</code></p>",
             "<h2>Face Dictionary</h2>",
             f"<p>{d['n_images']} faces of the <b>{d['split']}</b> split ({html.escape(d['selection'])}: "
             f"{html.escape(', '.join(f'{k} {v}' for k, v in d['cells'].items()))}); masks {d['mask_size']}x"
             f"{d['mask_size']} px of the face crop, ellipse confidence {d['confidence']:.3f}; concepts: "
             f"{html.escape(', '.join(d['concepts']))}; non-local groups: "
             f"{html.escape(', '.join(d['groups']) or 'none')}.</p>",
             f"<p class='note'>Pairing: {html.escape(summary['pairing']['rule'])} (quantile "
             f"{summary['pairing']['quantile']:g}, IoU threshold {summary['pairing']['iou_threshold']:g}).</p>",
             "<h2>Detectors per face region</h2>", html_table(tables["detectors_by_region"])]
    if "detectors_by_region" in images:
        parts.append(inline_png(images["detectors_by_region"], "detectors per region"))
    parts += ["<h2>Detectors per concept</h2>", html_table(tables["detectors_by_concept"])]
    parts += ["<h2>Units biased for non-local groups</h2>",
              f"<p class='note'>Rule: {html.escape(summary['nonlocal_rule'])}.</p>",
              html_table(tables.get("biased_units", []))]
    if "biased_units" in images:
        parts.append(inline_png(images["biased_units"], "biased units"))
    parts += ["<h2>Strongest detectors</h2>",
              html_table(tables.get("strongest_detectors", []),
                         ["layer", "unit", "concept", "region", "iou", "threshold"])]
    if "top_patches" in images:
        parts.append(inline_png(images["top_patches"], "top patches"))
    if tables.get("dictionary_quality"):
        quality = summary["dictionary_quality"]
        parts += ["<h2>Dictionary vs exact masks (SynthFaces)</h2>",
                  f"<p class='note'>{html.escape(quality['definition'])}; {quality['images']} faces.</p>",
                  html_table(tables["dictionary_quality"])]
    parts.append("<p class='note'>Tables: units.csv (one row per unit), detectors*.csv, biased_units.csv, "
                 "nonlocal_units.csv; numbers: dissect.json.</p></body></html>")
    path.write_text("\n".join(parts))
    return path


# -------------------------------------------------------------------------------------------- W&B, console

def log_wandb(run, tables: Mapping[str, list[dict[str, Any]]], images: Mapping[str, Path], report: Path | None,
              summary: Mapping[str, Any]) -> None:
    """Tables, figures and the HTML report in one step; the per-layer counts in the run summary."""
    if run is None:
        return
    from facebias.evaluation.wandb_log import log_evaluation

    log_evaluation(run, {f"dissect/{name}": rows for name, rows in tables.items()},
                   {f"dissect/plots/{name}": path for name, path in images.items()}, summary)
    if report is not None and report.is_file():
        import wandb

        run.log({"dissect/report": wandb.Html(report.read_text())})


def print_summary(out: Path, summary: Mapping[str, Any], sync_command: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    layers = summary["layers"]
    groups = list(dict.fromkeys(g for layer in layers.values() for g in layer["biased"]))
    table = Table(title=f"facebias dissect: {summary['experiment']} ({summary['dictionary']['n_images']} "
                        f"{summary['dictionary']['split']} faces)")
    for column in ("layer", "units", "detectors", *REGIONS, *(f"biased {g}" for g in groups)):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for name, layer in layers.items():
        table.add_row(name, str(layer["units"]), str(layer["detectors"]),
                      *(str(layer["by_region"].get(r, 0)) for r in REGIONS),
                      *(str(layer["biased"].get(g, {}).get("biased", "")) for g in groups))
    console.print(table)
    console.print(f"biased: {summary['nonlocal_rule']}")
    quality = summary.get("dictionary_quality")
    if quality:
        scores = ", ".join(f"{c} {v:.2f}" for c, v in quality["mean_iou"].items() if v is not None)
        console.print(f"ellipses vs exact masks (mean IoU, {quality['images']} faces): {scores}")
    console.print(f"output dir: {out}  (report.html, units.csv; {summary['seconds']} s)")
    if sync_command:
        console.print(f"W&B ran offline; upload with: {sync_command}")
