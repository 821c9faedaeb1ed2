"""Facial-region explanations (``dissect.py analysis=regions``): which face regions a trained run (or a model the
user brings, ``model.file=``, on the data of the ``data`` group) looks at when it decides for one class, per
protected group (docs/design.md §8; FaceX's study with the Face Dictionary's
regions, batched Grad-CAM-family maps from the ``grad-cam`` package and a known answer).

One run: the faces of a split whose target (``head``, default the first) equals ``target_class``, balanced
over the protected attribute (the run's, or ``data.protected=``); one map per face at ``layer`` by ``method``;
per region the share of its mask above the map's high threshold (``facebias.explain.statistics``), per group,
group 1 - group 0, with bootstrap intervals over images; the same for the architecture with randomised weights
(Adebayo et al. 2018: a trustworthy explanation should not survive it). Outputs: region_scores.csv,
image_scores.csv, plots/heatmaps.png (the face template painted per group, the difference and the randomised
model), plots/patches.png, report.html and regions.json (``results.RegionsResult``); W&B job_type=explain.

A sweep: per run and region the score, the group difference and the sanity correlation; each region's score
against P with Spearman's rho (the eye region's is the known answer of the eyeglasses family). Outputs:
regions_sweep.csv, regions_spearman.csv, regions_vs_p.png, regions_sweep.json.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig

from facebias.analyses.base import Analysis, Context, Result, count_option
from facebias.reporting.console import get_logger, print_summary
from facebias.reporting.files import files_under, json_safe, portable_path, write_csv, write_json_atomic
from facebias.results import SCHEMA_VERSION
from facebias.runs import TrainedRun, UserModelRun, build_datamodule, load_model

log = get_logger(__name__)
SPLITS = ("train", "val", "test")
DATA_OVERRIDES = ("data_dir", "num_workers", "progress", "protected")
EYE_REGION = "eye"
SANITY_LIMIT = 0.5  # rank correlation with the randomised model below this: the explanation depends on the weights
TEMPLATE_SIZE, TEMPLATE_FACES = 128, 256
STATISTIC = ("per face, the map min-max normalised and thresholded at the mean of its non-zero pixels; a region's "
             "score is |above threshold ∩ region| / |region|, averaged over the faces where the region exists")
SWEEP_COLUMNS = ("family", "concept", "P", "experiment", "train_seed", "head", "target_class", "protected", "method",
                 "layer", "region", "score", "score_g0", "score_g1", "diff", "diff_low", "diff_high",
                 "random_weights", "sanity_rho", "run_dir", "regions_dir")


class RegionExplanation(Analysis):
    name = "regions"
    kind = "regions"
    result_file = "regions.json"
    subdir = "regions"
    summary_file = "regions_sweep.json"
    job_type = "explain"
    user_model = True

    def settings(self, cfg: DictConfig) -> dict[str, Any]:
        from omegaconf import OmegaConf

        from facebias.dissect.selection import landmarks_option
        from facebias.explain.cams import method_name

        split = cfg.get("split", "test")
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: use one of {', '.join(SPLITS)}")
        target_class = cfg.get("target_class", 1)
        if isinstance(target_class, bool) or not isinstance(target_class, int) or target_class not in (0, 1):
            raise ValueError(f"target_class={target_class!r} is out of range: the heads are binary, use 1 (attribute "
                             "present) or 0 (absent)")
        concepts, confidence, layer, head = (cfg.get(k) for k in ("concepts", "confidence", "layer", "head"))
        return {
            "checkpoint": str(cfg.get("checkpoint", "best")),
            "layer": None if layer is None else str(layer),
            "method": method_name(cfg.get("method", "GradCAM")),
            "head": None if head is None else str(head),
            "target_class": target_class,
            "protected_override": OmegaConf.select(cfg, "data.protected"),
            "split": split,
            "max_images": count_option(cfg, "max_images", 2000, 2, allow_none=True),
            "seed": int(cfg.get("seed", 0)),
            "n_bootstrap": count_option(cfg, "n_bootstrap", 1000, 0),
            "confidence": None if confidence is None else float(confidence),
            "concepts": None if concepts is None else [str(c) for c in concepts],
            "sanity": bool(cfg.get("sanity", True)),
            "sanity_seed": int(cfg.get("sanity_seed", 0)),
            "patch_size": count_option(cfg, "patch_size", 16, 1),
            "top_patches": count_option(cfg, "top_patches", 10, 0),
            "landmarks": landmarks_option(cfg),  # dictionary.landmarks: 68 | 5
        }

    def run(self, run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return explain_run(run, settings, ctx)

    def print_run(self, summary: Mapping[str, Any], ctx: Context) -> None:
        name = summary["protected"]
        rows = [[r["region"], str(r["n"]), _num(r["all"]), _num(r["g0"]), _num(r["g1"]),
                 f"{_num(r['diff'], True)} [{_num(r['diff_low'], True)}, {_num(r['diff_high'], True)}]",
                 _num(r.get("random_weights"))] for r in summary["regions"]]
        notes = [f"statistic: {summary['statistic']}", sanity_note(summary["sanity"]),
                 f"output dir: {ctx.out}  (report.html, region_scores.csv; {summary['seconds']} s)"]
        sel = summary["selection"]
        title = (f"facebias regions: {summary['experiment']}, {summary['head']}={summary['target_class']}, "
                 f"{summary['method']} at {summary['layer']} ({sel['n_images']} {sel['split']} faces)")
        print_summary(title, ["region", "faces", "all", f"{name}=0", f"{name}=1", "1 - 0 [95% CI]", "random weights"],
                      rows, notes, sync_command=ctx.wandb.sync_command, min_width=110)

    def summarize(self, results: Sequence[Result], skipped: Sequence[Mapping[str, str]],
                  settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        from facebias.analyses.units import trend

        started = time.time()
        rows = sweep_rows([(r.dir, r.payload) for r in results], ctx.option("paths.root_dir"))
        correlations = []
        for family in dict.fromkeys(str(r["family"]) for r in rows if r["P"] is not None):
            for region in dict.fromkeys(r["region"] for r in rows):
                points = [(float(r["P"]), r["score"]) for r in rows if str(r["family"]) == family
                          and r["region"] == region and r["P"] is not None and r["score"] is not None]
                correlations.append({"family": family, "region": region, **trend(points)})
        out = ctx.out
        write_csv(out / "regions_sweep.csv", rows, SWEEP_COLUMNS)
        write_csv(out / "regions_spearman.csv", correlations)
        images = {}
        if any(r["P"] is not None for r in rows):
            images["vs_p"] = sweep_figure(out / "regions_vs_p.png", rows, correlations)
        summary = json_safe({"schema": SCHEMA_VERSION, "job": "regions-sweep", "sweep_dirs": [str(r) for r in ctx.roots],
                             "runs": len(results), "rows": rows, "spearman": correlations, "skipped": list(skipped),
                             "wandb": ctx.identity, "files": ["regions_sweep.csv", "regions_spearman.csv",
                                                              *(p.name for p in images.values()), "regions_sweep.json"],
                             "seconds": round(time.time() - started, 1)})
        write_json_atomic(out / "regions_sweep.json", summary)
        ctx.wandb.log({"explain/sweep": rows, "explain/spearman": correlations},
                      {f"explain/plots/sweep/{k}": p for k, p in images.items()},
                      {f"explain_sweep/rho/{c['family']}/{c['region']}": c["rho"] for c in correlations})
        return summary

    def print_sweep(self, summary: Mapping[str, Any], ctx: Context) -> None:
        eye = [r for r in summary["rows"] if r["region"] == EYE_REGION]
        rows = [[str(r["family"]), "" if r["P"] is None else f"{r['P']:g}", str(r["train_seed"]), _num(r["score"]),
                 _num(r["diff"], True), _num(r["sanity_rho"], True)] for r in eye]
        notes = [f"Spearman rho(eye-region score, P), {c['family']}: "
                 f"{'undefined' if c['rho'] is None else format(c['rho'], '+.2f')} over {c['runs']} runs"
                 for c in summary["spearman"] if c["region"] == EYE_REGION]
        notes += [f"skipped {s['run_dir']}: {s['reason']}" for s in summary["skipped"]]
        notes.append(f"table: {ctx.out / 'regions_sweep.csv'}")
        print_summary("facebias region explanations, sweep (eye region)",
                      ["family", "P", "seed", "eye score", "eye 1 - 0", "sanity rho"], rows, notes,
                      sync_command=ctx.wandb.sync_command, left=("family",))


def _num(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def sanity_note(sanity: Mapping[str, Any] | None) -> str:
    if sanity is None:
        return "sanity check (randomised weights): not run (sanity=false)"
    rho = sanity["rho"]
    verdict = ("undefined (a constant score)" if rho is None else
               f"{rho:+.2f}: {'passes' if sanity['passed'] else 'FAILS'} (the trained model's region ranking "
               f"{'differs from' if sanity['passed'] else 'resembles'} a random network's; limit {SANITY_LIMIT})")
    return f"sanity check, Spearman rho(trained, randomised weights) over the regions: {verdict}"


# ------------------------------------------------------------------------------------------------- one run

def resolve_layer(net, requested: str | None, image_size: int) -> tuple[str, tuple]:
    """The layer to explain (default: the deepest block with a map larger than 1x1), as resolve_layers checks it."""
    from facebias.dissect.layers import resolve_layers

    try:
        layers, maps = resolve_layers(net, None if requested is None else [requested], image_size)
    except ValueError as error:
        message = str(error)
        if requested is not None and message.startswith("layers="):
            message = f"layer={requested}" + message[message.index(":"):]
        raise ValueError(message.replace("choose layers=", "choose layer=")) from None
    name = layers[-1]
    shape = maps[name]
    if shape[2] * shape[3] <= 1:
        listing = ", ".join(f"{n} {tuple(s[1:])}" for n, s in maps.items() if s[2] * s[3] > 1)
        raise ValueError(f"layer={name}: its map is 1x1 at {image_size} px, so a CAM has no spatial extent; "
                         f"choose among: {listing}")
    return name, tuple(shape[1:])


def explain_run(run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Explain one trained run into ``ctx.out``; returns what regions.json holds."""
    from facebias.analyses.units import resolve_device
    from facebias.dissect.layers import network_of
    from facebias.dissect.selection import available_concepts
    from facebias.explain.cams import compute_cams, output_index, randomised_copy
    from facebias.explain.faces import load_faces, region_dictionary
    from facebias.explain.statistics import (
        group_statistics,
        high_attention,
        region_masks,
        region_scores,
        score_table,
        select_images,
        spearman,
    )
    from facebias.faces.concepts import REGIONS

    started = time.time()
    cfg, out = ctx.cfg, ctx.out
    batch_size = count_option(cfg, "batch_size", 128, 1)
    device = resolve_device(cfg.get("device", "auto"))
    model = load_model(run)
    net = network_of(model)
    image_size = int(run.config.data.image_size)
    layer, layer_shape = resolve_layer(net, settings["layer"], image_size)  # bad options fail before the data loads
    head_name = settings["head"] or run.targets[0]
    if head_name not in run.targets:
        heads = "model.heads" if isinstance(run, UserModelRun) else "the run's data.targets"
        raise ValueError(f"head={head_name!r} is out of range: the model's heads ({heads}) are {run.targets}; "
                         f"choose one of them")
    head, target_class, method = run.targets.index(head_name), settings["target_class"], settings["method"]
    output_index(len(run.targets), head, target_class)
    datamodule = build_datamodule(run, ctx.data_overrides(DATA_OVERRIDES), setup=False)
    protected = datamodule.protected
    if protected is None:  # before the table is read and the images decoded
        raise ValueError(f"{run.label}: no protected attribute (data.protected and data.concept are null, and the "
                         "default, Male, is a target); name one with data.protected=<attribute>")
    datamodule.setup("predict")
    dataset = datamodule.dataset(settings["split"])
    picked = select_images(dataset.targets[:, head], dataset.protected, target_class, settings["max_images"],
                           settings["seed"], head_name, protected)
    groups = np.asarray(dataset.protected[picked]).astype(np.int64)
    faces = load_faces(datamodule, model, settings["split"], picked, batch_size)
    concepts = available_concepts(datamodule.table, settings["concepts"], settings.get("landmarks", 5))
    dictionary = region_dictionary(datamodule, faces.rows, image_size, concepts, settings["confidence"],
                                   settings.get("landmarks", 5))
    per_group = int((groups == 0).sum())  # as selected, before any face is left out
    if dictionary.left_out:  # folder images dlib places no face on (no five landmarks): named, then left out
        faces, groups = faces.subset(dictionary.kept), groups[dictionary.kept]
        empty = [g for g in (0, 1) if not (groups == g).any()]
        if empty:
            raise ValueError(f"no face with {protected}={empty[0]} is left once the {len(dictionary.left_out)} faces "
                             f"dlib could not place are left out ({', '.join(list(dictionary.left_out)[:5])}); the "
                             "comparison needs both groups: check those images, or give the folder CSV the five "
                             "landmark columns")
    masks = region_masks(dictionary.masks, dictionary.regions, REGIONS)
    log.info("%s maps of %d faces at layer %s (%s)", method, len(faces), layer, device)

    def scores_of(network) -> tuple[np.ndarray, np.ndarray]:
        cams = compute_cams(network, layer, faces.inputs, head, target_class, method, batch_size, device)
        return cams, region_scores(high_attention(cams), masks)

    cams, per_image = scores_of(net)
    rows = group_statistics(per_image, groups, REGIONS, settings["n_bootstrap"], settings["seed"])
    sanity = None
    if settings["sanity"]:
        _, random_per_image = scores_of(randomised_copy(net, settings["sanity_seed"]))
        with np.errstate(all="ignore"):
            random_scores = {region: float(np.nanmean(random_per_image[:, r])) if np.isfinite(random_per_image[:, r]).any()
                             else None for r, region in enumerate(REGIONS)}
        rho = spearman([r["all"] for r in rows], [random_scores[r["region"]] for r in rows])
        sanity = {"rho": rho, "passed": None if rho is None else rho < SANITY_LIMIT, "limit": SANITY_LIMIT,
                  "seed": settings["sanity_seed"], "random_scores": random_scores,
                  "rule": "the same architecture with every module's weights re-initialised (seeded); Spearman rho "
                          "between its region scores and the trained model's (all faces); below the limit passes"}
    table = score_table(rows, None if sanity is None else sanity["random_scores"])
    write_csv(out / "region_scores.csv", table)
    write_csv(out / "image_scores.csv", [{"row": int(faces.rows[i]), "protected": int(groups[i]),
                                          **{reg: per_image[i, r] for r, reg in enumerate(REGIONS)}}
                                         for i in range(len(faces))])
    summary: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "job": "explain-regions", **run.provenance(), "settings": dict(settings),
        "network": type(net).__name__, "image_size": image_size, "device": str(device), "layer": layer,
        "layer_shape": list(layer_shape), "method": method, "head": head_name, "target_class": target_class,
        "protected": protected,
        "selection": {"split": settings["split"], "n_images": len(faces), "per_group": per_group,
                      "rule": f"faces with {head_name}={target_class}, equal numbers with {protected}=0 and =1 "
                              "(seeded draw within each group)" + (f"; then {len(dictionary.left_out)} faces dlib "
                              "could not place left out (dictionary.left_out)" if dictionary.left_out else "")},
        "dictionary": {"mask_size": image_size, "confidence": dictionary.confidence, "concepts": list(concepts),
                       "landmarks": dictionary.describe_landmarks(), "left_out": dictionary.describe_left_out(),
                       "crop": getattr(datamodule, "crop", "celeba")},
        "statistic": STATISTIC, "n_bootstrap": settings["n_bootstrap"], "regions": table, "sanity": sanity,
        "wandb": ctx.identity,
    }
    images = write_figures(out, summary, datamodule, faces, cams, masks, groups, settings, concepts) \
        if cfg.get("plots", True) else {}
    from facebias.reporting.html import render_html

    render_html("regions.html.j2", out / "report.html", title=f"Region explanation: {summary['experiment']}",
                summary=summary, rows=table, images=images, sanity_note=sanity_note(sanity))
    summary["files"] = files_under(out, "regions.json", "run.json")
    summary["seconds"] = round(time.time() - started, 1)
    summary = json_safe(summary)
    write_json_atomic(out / "regions.json", summary)
    ctx.wandb.log({"explain/region_scores": table}, {f"explain/plots/{k}": p for k, p in images.items()},
                  wandb_summary(summary), html={"explain/report": out / "report.html"})
    return summary


def write_figures(out, summary, datamodule, faces, cams, masks, groups, settings, concepts) -> dict[str, Any]:
    """The template heat maps (all faces, each group, the difference, the randomised model) and the patches."""
    from facebias.explain.faces import region_dictionary
    from facebias.explain.figures import Panel, face_template, heatmap_figure, patch_figure
    from facebias.explain.statistics import region_masks, top_patches
    from facebias.faces.concepts import REGIONS

    rows = summary["regions"]
    some = faces.rows[:: max(1, len(faces) // TEMPLATE_FACES)][:TEMPLATE_FACES]
    fine = region_dictionary(datamodule, some, TEMPLATE_SIZE, concepts, settings["confidence"],
                             settings.get("landmarks", 5))
    template = face_template(region_masks(fine.masks, fine.regions, REGIONS), REGIONS)
    name = summary["protected"]
    values = {key: {r["region"]: r[key] for r in rows} for key in ("all", "g0", "g1", "diff")}
    finite = [v for key in ("all", "g0", "g1") for v in values[key].values() if v is not None and np.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    spread = max([abs(v) for v in values["diff"].values() if v is not None and np.isfinite(v)] or [1.0])
    label = "share of region above threshold"
    panels = [Panel("all faces", values["all"], low, high, label=label),
              Panel(f"{name}=0", values["g0"], low, high, label=label),
              Panel(f"{name}=1", values["g1"], low, high, label=label),
              Panel(f"difference ({name}=1) - ({name}=0)", values["diff"], -spread, spread, label="difference")]
    if summary["sanity"] is not None:
        random = summary["sanity"]["random_scores"]
        finite_random = [v for v in random.values() if v is not None]
        panels.append(Panel("randomised weights (sanity)", random, min(finite_random or [0.0]),
                            max(finite_random or [1.0]), label=label))
    title = (f"{summary['method']} at {summary['layer']}: {summary['head']}={summary['target_class']}, "
             f"{summary['selection']['n_images']} faces (red: much attention, blue: little)")
    images = {"heatmaps": heatmap_figure(out / "plots" / "heatmaps.png", template, panels, title)}
    if settings["top_patches"]:
        patches = top_patches(cams, masks, settings["top_patches"], settings["patch_size"])
        images["patches"] = patch_figure(out / "plots" / "patches.png", REGIONS, patches, faces.pixels, groups,
                                         settings["patch_size"], name)
    return images


def wandb_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for row in summary["regions"]:
        values[f"explain/{row['region']}/score"] = row["all"]
        values[f"explain/{row['region']}/diff"] = row["diff"]
    if summary["sanity"] is not None:
        values["explain/sanity_rho"] = summary["sanity"]["rho"]
    return values


# ----------------------------------------------------------------------------------------------- the sweep

def sweep_rows(entries: Sequence[tuple[Any, Mapping[str, Any]]], root: str | None = None) -> list[dict[str, Any]]:
    """One row per (run, region), sorted by family, P, seed and the region order."""
    rows = []
    for regions_dir, d in entries:
        sanity = d.get("sanity") or {}
        for row in d["regions"]:
            rows.append({"family": d["family"], "concept": d["concept"], "P": d["P"], "experiment": d["experiment"],
                         "train_seed": d.get("train_seed"), "head": d["head"], "target_class": d["target_class"],
                         "protected": d["protected"], "method": d["method"], "layer": d["layer"],
                         "region": row["region"], "score": row["all"], "score_g0": row["g0"], "score_g1": row["g1"],
                         "diff": row["diff"], "diff_low": row["diff_low"], "diff_high": row["diff_high"],
                         "random_weights": row.get("random_weights"), "sanity_rho": sanity.get("rho"),
                         "run_dir": portable_path(d["source"]["run_dir"], root),
                         "regions_dir": portable_path(regions_dir, root)})
    order = {region: k for k, region in enumerate(dict.fromkeys(r["region"] for r in rows))}
    return sorted(rows, key=lambda r: (str(r["family"]), -1 if r["P"] is None else r["P"],
                                       -1 if r["train_seed"] is None else r["train_seed"], order[r["region"]]))


def sweep_figure(path, rows: Sequence[Mapping[str, Any]], correlations: Sequence[Mapping[str, Any]]):
    """One panel per family: every region's score against P (mean over seeds), the eye region in bold."""
    from facebias.reporting.plots import FAMILY_COLOURS, pyplot, save_figure

    plt = pyplot()
    families = list(dict.fromkeys(str(r["family"]) for r in rows if r["P"] is not None))
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.8), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        mine = [r for r in rows if str(r["family"]) == family and r["P"] is not None and r["score"] is not None]
        for k, region in enumerate(dict.fromkeys(r["region"] for r in mine)):
            ps = sorted({float(r["P"]) for r in mine if r["region"] == region})
            means = [float(np.mean([r["score"] for r in mine if r["region"] == region and float(r["P"]) == p]))
                     for p in ps]
            rho = next((c["rho"] for c in correlations if c["family"] == family and c["region"] == region), None)
            ax.plot(ps, means, marker="o", color=FAMILY_COLOURS[k % len(FAMILY_COLOURS)] if region != EYE_REGION
                    else "black", linewidth=2.5 if region == EYE_REGION else 1,
                    label=f"{region} (rho {'n/a' if rho is None else format(rho, '.2f')})")
        ax.set_title(f"{family}: region scores vs P", fontsize=10)
        ax.set_xlabel("P (% of men with the concept)")
        ax.set_ylabel("share of region above threshold")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)
