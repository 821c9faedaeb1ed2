"""`dissect_task(cfg)`: network dissection of a trained run on its own test faces (DESIGN §7).

analysis=units: the run's classifier is dissected at the requested layers on a Face Dictionary built
from its test split (balanced over the target x concept cells), with the non-local groups Male, Young,
Pale_Skin and, where the run planted it, grayscale. Outputs: units.csv (one row per unit), detector
counts per concept and region per layer, biased units per group (the rule is in dissect.json and the
report), plots, the top patches of the strongest detectors, report.html and dissect.json, all in the
output dir and in W&B (the training run's group, job_type=dissect, finished in a `finally`). On
SynthFaces the dictionary's ellipses are scored against the exact masks as well.
analysis=layers: the layer names and output shapes of the run's network. analysis=sweep: see sweep.py.

Layers are named inside the classifier's network (``model.net``), so a ResNet's blocks are layer1..layer4
and small_cnn's are 0..3, whatever wraps them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from facebias.evaluation.runs import TrainedRun, build_datamodule, load_model, locate_run

ANALYSES = ("units", "layers", "sweep")
SPLITS = ("train", "val", "test")
DATA_OVERRIDES = ("data_dir", "num_workers", "progress")
DISSECT_SUBDIR = "dissect"  # where a sweep writes each run's dissection: <run>/dissect/


def dissect_task(cfg: DictConfig) -> dict[str, Any]:
    """Entry of dissect.py: one run (analysis=units | layers, run= / ckpt=) or P sweeps (analysis=sweep)."""
    from facebias.evaluation.task import search_dirs
    from facebias.training.task import output_dir

    analysis = cfg.get("analysis")
    if analysis not in ANALYSES:
        raise ValueError(f"analysis={analysis!r}: use one of {', '.join(ANALYSES)}")
    if analysis == "sweep":
        if cfg.get("run") or cfg.get("ckpt"):
            raise ValueError("analysis=sweep reads sweep=<multirun dir> (or a list of them), not run=/ckpt=")
        from facebias.dissect.sweep import dissect_sweep

        return dissect_sweep(cfg, output_dir())
    if cfg.get("sweep"):
        raise ValueError(f"sweep= is read by analysis=sweep, but analysis={analysis}: add analysis=sweep "
                         "(or drop sweep= and name one run with run=)")
    if cfg.get("run") is None and cfg.get("ckpt") is None:
        raise ValueError("name what to dissect: run=<training run dir> (outputs/train/...) or ckpt=<checkpoint "
                         "file>; for P sweeps: analysis=sweep sweep=<multirun/train/...>")
    run = locate_run(cfg.get("run"), cfg.get("ckpt"), cfg.get("checkpoint", "best"), search=search_dirs(cfg))
    out = output_dir()
    if analysis == "layers":
        return describe_layers(run, cfg, out)
    return dissect_run(run, cfg, out)


# ------------------------------------------------------------------------------------------------- options

def _count_option(cfg: DictConfig, key: str, default: int | None, minimum: int, allow_none: bool) -> int | None:
    value = cfg.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = " or null" if allow_none else ""
        raise ValueError(f"{key}={value!r}: use an integer >= {minimum}{allowed}")
    return value


def requested_layers(cfg: DictConfig) -> list[str] | None:
    """layers= as a list of names (layers=layer4, layers=[layer3,layer4] and small_cnn's layers=[2,3] all work)."""
    layers = cfg.get("layers")
    if layers is None:
        return None
    if isinstance(layers, (list, tuple, ListConfig)):
        names = [str(name) for name in layers]
    else:
        names = [str(layers)]
    if not names:
        raise ValueError("layers=[] names no layer; give module names (analysis=layers lists them) or null")
    return names


def dissect_settings(cfg: DictConfig) -> dict[str, Any]:
    """The options that change the numbers; a sweep reuses a dissection only when they are all the same."""
    split = cfg.get("split", "test")
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {', '.join(SPLITS)}")
    concepts = cfg.get("concepts")
    confidence = cfg.get("confidence")
    return {
        "checkpoint": str(cfg.get("checkpoint", "best")),
        "layers": requested_layers(cfg),
        "split": split,
        "max_images": _count_option(cfg, "max_images", 2000, 1, allow_none=True),
        "seed": int(cfg.get("seed", 0)),
        "mask_size": _count_option(cfg, "mask_size", None, 1, allow_none=True),
        "confidence": None if confidence is None else float(confidence),
        "concepts": None if concepts is None else [str(c) for c in concepts],
        "quantile": float(cfg.get("quantile", 0.005)),
        "iou_threshold": float(cfg.get("iou_threshold", 0.04)),
        "bias_threshold": float(cfg.get("bias_threshold", 0.8)),
    }


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name}: no CUDA device is visible here; use device=cpu or device=auto")
    return torch.device(str(name))


# -------------------------------------------------------------------------------------------------- layers

def network_of(model: nn.Module) -> nn.Module:
    """The network inside a classifier wrapper (AttributeClassifier.net), else the model itself."""
    net = getattr(model, "net", None)
    return net if isinstance(net, nn.Module) else model


def probe_input(image_size: int) -> torch.Tensor:
    return torch.zeros(1, 3, image_size, image_size)


def feature_map_layers(net: nn.Module, image_size: int) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(every layer's output shape, the layers whose output is a (1, units, h, w) map) at this input size."""
    from facebias.dissect.layers import layer_output_shapes

    shapes = layer_output_shapes(net, probe_input(image_size))
    return shapes, {name: shape for name, shape in shapes.items() if len(shape) == 4}


def default_blocks(net: nn.Module, maps: dict[str, tuple]) -> list[str]:
    """The network's blocks: top-level containers whose output is a feature map larger than 1x1."""
    return [name for name, module in net.named_children()
            if name in maps and next(module.children(), None) is not None and maps[name][2] * maps[name][3] > 1]


def resolve_layers(net: nn.Module, requested: list[str] | None, image_size: int) -> tuple[list[str], dict[str, tuple]]:
    """The layers to dissect (requested or the default blocks), checked; and the map shape of every candidate."""
    shapes, maps = feature_map_layers(net, image_size)
    listing = ", ".join(f"{name} {tuple(shape[1:])}" for name, shape in maps.items())
    if requested is None:
        layers = default_blocks(net, maps)
        if not layers:
            raise ValueError(f"{type(net).__name__} has no block with a feature map larger than 1x1 at "
                             f"{image_size} px; choose layers= among: {listing}")
        return layers, maps
    if len(set(requested)) != len(requested):
        raise ValueError(f"layers={requested}: a layer is named twice")
    unknown = [name for name in requested if name not in shapes]
    if unknown:
        raise ValueError(f"layers={requested}: {type(net).__name__} has no layer {', '.join(map(repr, unknown))}. "
                         f"Valid names (feature maps, as units x h x w at {image_size} px): {listing}")
    flat = [name for name in requested if name not in maps]
    if flat:
        raise ValueError(f"layers={requested}: {', '.join(f'{n} outputs {shapes[n]}' for n in flat)}, not a "
                         f"(batch, units, h, w) feature map; choose among: {listing}")
    return requested, maps


def describe_layers(run: TrainedRun, cfg: DictConfig, out: Path) -> dict[str, Any]:
    """analysis=layers: every module of the run's network with its output shape; the dissectable ones marked."""
    from rich.console import Console

    from facebias.training.task import write_json_atomic

    model = load_model(run)
    net = network_of(model)
    image_size = int(run.config.data.image_size)
    shapes, maps = feature_map_layers(net, image_size)
    blocks = default_blocks(net, maps)
    rows = [{"layer": name, "shape": list(shape[1:]), "feature_map": name in maps, "default": name in blocks}
            for name, shape in shapes.items()]  # shape per image: (units, h, w) for a feature map
    out.mkdir(parents=True, exist_ok=True)
    summary = {"job": "dissect-layers", "run_dir": str(run.run_dir), "checkpoint": str(run.checkpoint),
               "network": type(net).__name__, "image_size": image_size, "default_layers": blocks, "layers": rows}
    write_json_atomic(out / "layers.json", summary)
    console = Console()
    console.print(f"layers of {type(net).__name__} ({run.run_dir.name}) at {image_size} px, output per image "
                  "(units, h, w); * = dissected by default, - = not a feature map")
    for row in rows:
        mark = "*" if row["default"] else (" " if row["feature_map"] else "-")
        console.print(f" {mark} {row['layer']:<28} {tuple(row['shape'])}", highlight=False)
    console.print(f"written to {out / 'layers.json'}")
    return summary


# ------------------------------------------------------------------------------------------ dictionary faces

@dataclass
class DictionaryFaces:
    """The faces a run is dissected on, as the model sees them and as a person does."""

    split: str
    rows: np.ndarray  # (n,) FaceTable rows
    cells: np.ndarray  # (n, 2) target (first head) and bias concept of each face
    gray: np.ndarray  # (n,) bool: shown in grayscale (the planted grayscale concept)
    pixels: torch.Tensor  # (n, S, S, 3) uint8, grayscale applied: what the patches show
    inputs: torch.Tensor  # (n, 3, S, S) float model input

    def __len__(self) -> int:
        return len(self.rows)


def balanced_subset(cells: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` indices (ascending), spread evenly over the distinct rows of ``cells``.

    Quotas are water-filled from the smallest cell up: each cell gets an equal share of what is left,
    and a cell too small for its share gives the rest to the larger ones. Within a cell the draw is a
    seeded random choice. All indices when limit is None or not below the number of rows.
    """
    n = len(cells)
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(np.asarray(cells).reshape(n, -1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = [rng.permutation(np.flatnonzero(inverse == g)) for g in range(int(inverse.max()) + 1)]
    chosen, remaining = [], limit
    for i, g in enumerate(sorted(range(len(groups)), key=lambda g: len(groups[g]))):
        take = min(len(groups[g]), remaining // (len(groups) - i))
        chosen.append(groups[g][:take])
        remaining -= take
    return np.sort(np.concatenate(chosen))


def select_faces(datamodule, model: nn.Module, split: str, max_images: int | None, seed: int,
                 batch_size: int) -> DictionaryFaces:
    """The split's faces (a balanced subset of at most max_images), through the model's own input transform."""
    from facebias.data.transforms import to_grayscale, to_model_input

    dataset = datamodule.dataset(split)
    cells = np.stack([dataset.targets[:, 0], dataset.concept], axis=1).astype(np.int64)
    picked = balanced_subset(cells, max_images, seed)
    if len(picked) == 0:
        raise ValueError(f"the {split} split of the run is empty: nothing to dissect; choose split=val or train")
    pixels, inputs = [], []
    for start in range(0, len(picked), batch_size):
        batch = dataset.__getitems__(picked[start:start + batch_size])
        shown = to_grayscale(batch["image"], batch["gray"])
        x = model.on_after_batch_transfer(batch, 0)["image"]
        if not torch.is_floating_point(x):  # a model without the classifier's transform
            x = to_model_input(shown)
        pixels.append(shown)
        inputs.append(x.float().contiguous())
    return DictionaryFaces(split=split, rows=dataset.rows[picked].astype(np.int64), cells=cells[picked],
                           gray=np.asarray(dataset.gray[picked]).astype(bool), pixels=torch.cat(pixels),
                           inputs=torch.cat(inputs))


def available_concepts(table, requested: list[str] | None) -> tuple[str, ...]:
    """The requested local concepts, or every one whose conditioning attribute the table has."""
    from facebias.faces.concepts import ATTRIBUTE_OF_CONCEPT, LOCAL_CONCEPTS

    if requested is not None:
        unknown = [c for c in requested if c not in LOCAL_CONCEPTS]
        if unknown:
            raise ValueError(f"concepts={requested}: unknown {unknown}; the Face Dictionary knows "
                             f"{', '.join(LOCAL_CONCEPTS)}")
        return tuple(requested)
    return tuple(c for c in LOCAL_CONCEPTS
                 if c not in ATTRIBUTE_OF_CONCEPT or ATTRIBUTE_OF_CONCEPT[c][0] in table.attr_names)


def dictionary_options(settings: dict[str, Any], mask_size: int, concepts: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {"mask_size": mask_size, "concepts": concepts}
    if settings["confidence"] is not None:
        options["confidence"] = settings["confidence"]
    return options


def build_dictionary(datamodule, faces: DictionaryFaces, options: dict[str, Any]):
    """The Face Dictionary of the faces; groups Male, Young, Pale_Skin (where the data has them) and grayscale
    (where the run planted it: the per-image flags of the split)."""
    from facebias.data.bias import GRAYSCALE
    from facebias.faces.dictionary import dictionary_for_table

    grayscale = faces.gray.astype(np.int64) if datamodule.concept == GRAYSCALE else None
    return dictionary_for_table(datamodule.table, faces.rows, grayscale=grayscale, **options)


def dictionary_quality(table, rows: np.ndarray, options: dict[str, Any], n_images: int) -> dict[str, Any] | None:
    """SynthFaces only: mean per-image IoU of each ellipse concept against the exact masks (first n faces)."""
    if table.source != "synthfaces" or n_images == 0:
        return None
    from facebias.data.synthfaces import load_masks
    from facebias.faces.dictionary import dictionary_for_table, score_against_exact

    subset = rows[:n_images]
    faces = np.array([int(Path(table.filenames[r]).stem) - 1 for r in subset])  # 000001.jpg is face 0
    exact = load_masks(table.image_dir.parent, faces)
    scores = score_against_exact(dictionary_for_table(table, subset, **options), exact)
    return {"images": len(subset), "mean_iou": scores,
            "definition": "mean over faces of IoU(ellipse mask, exact mask) in the crop at mask_size; faces where "
                          "both are empty (absent attribute) are skipped"}


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
    summaries = {}
    for name, layer in result.layers.items():
        summaries[name] = {"shape": list(maps[name][1:]), "units": layer.units,
                           "detectors": int(layer.detector.sum()), "by_region": layer.detectors_per_region(),
                           "by_concept": layer.detectors_per_concept(), "biased": biased.get(name, {})}
    return summaries


def dissect_run(run: TrainedRun, cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Dissect one trained run into ``out``; returns what dissect.json holds."""
    from facebias.dissect import report
    from facebias.dissect.patches import UnitMaxima, strongest_detectors, top_patches
    from facebias.dissect.units import DictionaryBatches, dissect
    from facebias.evaluation.tables import json_safe
    from facebias.evaluation.wandb_log import start_run
    from facebias.training.loggers import finish_wandb, plain_config
    from facebias.training.task import write_json_atomic

    started = time.time()
    settings = dissect_settings(cfg)
    batch_size = _count_option(cfg, "batch_size", 128, 1, allow_none=False)
    top_detectors = _count_option(cfg, "top_detectors", 8, 0, allow_none=False)
    top_images = _count_option(cfg, "top_images", 6, 1, allow_none=False)
    exact_images = _count_option(cfg, "exact_check_images", 256, 0, allow_none=False)
    device = resolve_device(cfg.get("device", "auto"))
    out.mkdir(parents=True, exist_ok=True)

    model = load_model(run)
    net = network_of(model)
    image_size = int(run.config.data.image_size)
    layers, maps = resolve_layers(net, settings["layers"], image_size)  # a wrong name fails before the data loads
    datamodule = build_datamodule(run, {key: OmegaConf.select(cfg, f"data.{key}") for key in DATA_OVERRIDES})
    faces = select_faces(datamodule, model, settings["split"], settings["max_images"], settings["seed"], batch_size)
    mask_size = settings["mask_size"] or image_size
    options = dictionary_options(settings, mask_size, available_concepts(datamodule.table, settings["concepts"]))
    dictionary = build_dictionary(datamodule, faces, options)
    maxima = UnitMaxima(net, layers, len(faces))  # filled by the dissection's pass, read by the patches
    with maxima.attached():
        result = dissect(net, layers, DictionaryBatches(faces.inputs, dictionary, batch_size),
                         quantile=settings["quantile"], iou_threshold=settings["iou_threshold"], device=device,
                         cache_bytes=int(cfg.get("cache_bytes", 1 << 30)))
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
        "job": "dissect",
        **run.provenance(),
        "settings": settings,
        "network": type(net).__name__, "image_size": image_size, "device": str(device),
        "dictionary": {"split": faces.split, "n_images": len(faces), "mask_size": mask_size,
                       "confidence": dictionary.confidence, "concepts": list(dictionary.concepts),
                       "regions": list(dictionary.regions), "groups": list(dictionary.groups),
                       "cells": _cell_counts(faces.cells), "gray_images": int(faces.gray.sum()),
                       "selection": "balanced over (target, concept) cells, seeded"},
        "pairing": {"quantile": settings["quantile"], "iou_threshold": settings["iou_threshold"],
                    "rule": "T_u = top-quantile activation over the dictionary; map upsampled bilinearly to the mask "
                            "size and thresholded; IoU summed over all images; detector when best IoU > threshold"},
        "nonlocal_rule": nonlocal_rule(settings["bias_threshold"]),
        "layers": layer_summaries(result, maps, settings["bias_threshold"]),
        "strongest_detectors": strongest,
        "dictionary_quality": quality,
        "wandb": dissect_identity(run),
    }
    report.write_html(out / "report.html", summary, tables, images)
    summary["files"] = sorted({"dissect.json", *(str(p.relative_to(out)) for p in out.rglob("*")
                                                 if p.is_file() and "wandb" not in p.parts)})
    summary["seconds"] = round(time.time() - started, 1)
    summary = json_safe(summary)
    write_json_atomic(out / "dissect.json", summary)

    sync_command = None
    try:
        wandb_run = start_run(cfg, out, summary["wandb"], {"dissect": settings, "source": summary["source"],
                                                           "train": plain_config(run.config)}, job_type="dissect")
        report.log_wandb(wandb_run, tables, images, out / "report.html", wandb_summary(summary))
    finally:
        sync_command = finish_wandb()
    report.print_summary(out, summary, sync_command)
    return summary


def _cell_counts(cells: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(cells, axis=0, return_counts=True)
    return {f"y{int(v[0])}_c{int(v[1])}": int(c) for v, c in zip(values, counts, strict=True)}


def dissect_identity(run: TrainedRun) -> dict[str, str]:
    """The training run's W&B group, so the dissection sits beside its training and evaluation."""
    identity = run.wandb_identity()
    return {"group": identity["group"], "name": "dissect " + identity["name"].removeprefix("eval ")}


def wandb_summary(summary: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, layer in summary["layers"].items():
        values[f"dissect/{name}/detectors"] = layer["detectors"]
        for region, count in layer["by_region"].items():
            values[f"dissect/{name}/{region}_detectors"] = count
        for group, counts in layer["biased"].items():
            values[f"dissect/{name}/biased_{group}"] = counts["biased"]
    for concept, iou in ((summary.get("dictionary_quality") or {}).get("mean_iou") or {}).items():
        values[f"dissect/dictionary_iou/{concept}"] = iou
    return values
