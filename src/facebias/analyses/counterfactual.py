"""Black-box counterfactual search (``dissect.py analysis=counterfactual``): what must change about a face for a
trained run's classifier, or a model the user brings, to score it higher (or lower), found by search in a
generator's latent space, coded automatically and tested against a null (docs/design.md §9, issue 14; the method
is Kulynych's "How to Become More Salient?", 2021).

One run (``run=``) or user model (``model.file=``, docs/design.md §2.2): the generator (the SynthFaces renderer
of the run's own data set by default, or, for a user model, of the dissect config's data group when it is
SynthFaces; a user generator through ``counterfactual.generator``) and the objective (a head's logit or
probability, or, for a model that outputs a map, the map's spatial maximum or mean: the seed's saliency
setting), raised or lowered. The model's output is probed against the objective before anything else. From
``counterfactual.starts`` latents of the generator's prior, random search (or nevergrad's (1+1)-ES / CMA)
climbs the objective (facebias.counterfactual.search); the null walks from the same starts with the same
step lengths and counts and no selection. Every walk's start and end are coded (true attributes and traits
from z on SynthFaces, the heads of the run's classifier and of any ``counterfactual.coders`` runs (a user model
codes nothing itself), image statistics in the face region) and each aggregate is set beside the null's with
Fisher's exact test and a Holm or Benjamini–Hochberg correction.

Outputs: counterfactual.json (``results.CounterfactualResult``), codes.csv (the aggregates against the
null), searches.csv (one row per search), changes.csv (every measure of every walk), agreement.csv
(classifier vs true coding), trajectories.npz (latents and scores of every step), images.npz (the faces
at every n-th step), plots/strip_*.png, plots/scores.png, report.html; W&B job_type=counterfactual.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from facebias.analyses.base import Analysis, Context
from facebias.reporting.console import get_logger, print_summary
from facebias.reporting.files import files_under, json_safe, write_csv, write_json_atomic
from facebias.results import SCHEMA_VERSION
from facebias.runs import TrainedRun, UserModelRun, build_datamodule, load_model, locate_run

log = get_logger(__name__)

OPTION = "counterfactual"
DATA_OVERRIDES = ("data_dir", "num_workers", "progress")
CODE_COLUMNS = ("measure", "source", "coder", "change", "delta", "search_count", "search_n", "search_rate",
                "null_count", "null_n", "null_rate", "odds_ratio", "p_value", "p_adjusted", "significant", "verdict")
SEARCH_COLUMNS = ("search", "start_score", "end_score", "caption", "moves", "distance", "stopped_at",
                  "null_end_score", "null_moves", "null_distance", "codes")


class CounterfactualSearch(Analysis):
    name = "counterfactual"
    kind = "counterfactual"
    result_file = "counterfactual.json"
    subdir = "counterfactual"
    job_type = "counterfactual"
    user_model = True  # model.file=: a model the user brings (docs/design.md §2.2)
    user_model_logits = False  # its output is checked against the objective (logits of a head, or a map)

    def settings(self, cfg: DictConfig) -> dict[str, Any]:
        """Every option of ``counterfactual.*``, checked (σ, the budget against one step, counts, names)."""
        from facebias.counterfactual.search import DIRECTIONS, MAP_OBJECTIVES, OBJECTIVES, check_options
        from facebias.counterfactual.stats import CORRECTIONS

        c = cfg.get(OPTION)
        c = OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else dict(c or {})
        generator = dict(c.get("generator") or {"kind": "synthfaces"})
        generator.setdefault("kind", "synthfaces")
        head = c.get("head")
        coders = c.get("coders") or []
        coders = [str(x) for x in coders] if isinstance(coders, (list, tuple, ListConfig)) else [str(coders)]
        settings = {
            "checkpoint": str(cfg.get("checkpoint", "best")),
            "head": None if head is None else str(head),
            "objective": _choice(c, "objective", "logit", OBJECTIVES),
            "direction": _choice(c, "direction", "raise", DIRECTIONS),
            "optimizer": str(c.get("optimizer", "random")),
            "starts": _count(c, "starts", 64),
            "k": _count(c, "k", 16),
            "sigma": _number(c, "sigma", 0.2),
            "steps": _count(c, "steps", 20),
            "budget": None if c.get("budget", 8.0) is None else _number(c, "budget", 8.0),
            "seed": _count(c, "seed", 0, minimum=0),
            "record_every": _count(c, "record_every", 5),
            "strips": _count(c, "strips", 16, minimum=0),
            "delta_sd": _number(c, "delta_sd", 0.25, positive=True),
            "alpha": _number(c, "alpha", 0.05, positive=True),
            "correction": _choice(c, "correction", "holm", CORRECTIONS),
            "batch_size": None if c.get("batch_size") is None else _count(c, "batch_size", 1),
            "coders": coders,
            "generator": generator,
        }
        if not settings["alpha"] < 1:
            raise ValueError(f"{OPTION}.alpha={settings['alpha']}: a significance level lies in (0, 1), e.g. 0.05")
        if settings["objective"] in MAP_OBJECTIVES and settings["head"] is not None:
            raise ValueError(f"{OPTION}.head={settings['head']}: {OPTION}.objective={settings['objective']} reduces "
                             "the whole map the model outputs, it reads no head; leave counterfactual.head=null (or "
                             "use objective=logit or probability to push a head)")
        check_options(search_options(settings), latent_dim_of(generator), OPTION)
        return settings

    def run(self, run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        return counterfactual_run(run, settings, ctx)

    def print_run(self, summary: Mapping[str, Any], ctx: Context) -> None:
        rows = [[r["measure"], r["change"], _percent(r["search_rate"]), _percent(r["null_rate"]),
                 "" if r["p_adjusted"] is None else f"{r['p_adjusted']:.2g}", r["verdict"]]
                for r in summary["codes"] if r["significant"]]
        search, s = summary["search"], summary["settings"]
        budget = "no budget" if s["budget"] is None else f"budget {s['budget']:g}"
        notes = [f"objective: {summary['objective']['direction']} {summary['objective']['label']} of "
                 f"{summary['experiment']}; {s['starts']} searches ({s['optimizer']}, k={s['k']}, σ={s['sigma']:g}, "
                 f"T={s['steps']}, {budget}): mean {search['mean_start']:.4f} → {search['mean_end']:.4f}",
                 f"test: {summary['test']}",
                 f"{search['evaluations']} candidates in {search['seconds']:.1f} s "
                 f"({search['evaluations_per_second']:.1f}/s; render + forward {search['objective_share']:.0%} of it)"]
        if not rows:
            notes.insert(0, "no change differs significantly from the null walks")
        notes += list(summary["notes"])
        notes.append(f"output dir: {ctx.out}  (report.html, codes.csv; {summary['seconds']} s)")
        print_summary(f"facebias counterfactual: what raises/lowers {summary['objective']['label']} "
                      "(significant vs the null)", ["measure", "change", "searches", "null", "p adj.", "model"],
                      rows, notes, sync_command=ctx.wandb.sync_command, left=("measure", "change", "model"),
                      min_width=110)


# ------------------------------------------------------------------------------------------------- options

def _count(c: Mapping, key: str, default: int, minimum: int = 1) -> int:
    value = c.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{OPTION}.{key}={value!r}: use an integer >= {minimum}")
    return int(value)


def _number(c: Mapping, key: str, default: float, positive: bool = False) -> float:
    value = c.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{OPTION}.{key}={value!r}: use a finite number")
    if positive and value <= 0:
        raise ValueError(f"{OPTION}.{key}={value!r}: use a number > 0")
    return float(value)


def _choice(c: Mapping, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = c.get(key, default)
    if value not in allowed:
        raise ValueError(f"{OPTION}.{key}={value!r}: use one of {', '.join(allowed)}")
    return str(value)


def search_options(settings: Mapping[str, Any]):
    from facebias.counterfactual.search import SearchOptions

    return SearchOptions(k=settings["k"], sigma=settings["sigma"], steps=settings["steps"], budget=settings["budget"],
                         optimizer=settings["optimizer"], seed=settings["seed"])


def latent_dim_of(generator: Mapping[str, Any]) -> int | None:
    """The latent dimension a generator config implies, where it can be known before loading anything."""
    if generator.get("kind") == "synthfaces":
        from facebias.data.synthfaces import LATENT_DIM

        return LATENT_DIM
    dim = generator.get("latent_dim")
    return int(dim) if isinstance(dim, int) and not isinstance(dim, bool) else None


# ------------------------------------------------------------------------------------------------- the run

def build_search_generator(run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context):
    """The configured generator at the run's (or user model's) image size and crop unless given; SynthFaces from
    the run's own set, or for a user model from the set of the dissect config's data group (synthfaces by
    default: generated on first use, like every analysis of a user model on it); otherwise its default latent
    model, with a note."""
    from facebias.generators import build_generator

    options = dict(settings["generator"])
    options.setdefault("image_size", int(run.config.data.image_size))
    options.setdefault("crop", str(run.config.data.get("crop", "celeba")))
    note = None
    if options["kind"] == "synthfaces" and options.get("root") is None:
        source = str(run.config.data.get("source", "synthfaces"))
        if source == "synthfaces":
            # the set's root only: its table (generated on first use), not its image cache
            datamodule = build_datamodule(run, ctx.data_overrides(DATA_OVERRIDES), setup=False)
            options["root"] = str(datamodule.preflight().image_dir.parent)
        elif isinstance(run, UserModelRun):
            note = (f"the model's data (data={source}) is not SynthFaces: the generator is the SynthFaces renderer "
                    "with its default latent model")
        else:
            note = (f"the run was trained on {run.config.data.source}, not SynthFaces: the generator is the "
                    "SynthFaces renderer with its default latent model")
    return build_generator(options), options, note


def objective_head(run: TrainedRun | UserModelRun, model, settings: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """(column, name) of the head a logit/probability objective pushes (the first target unless
    counterfactual.head names one); (None, None) for a map objective."""
    from facebias.counterfactual.search import MAP_OBJECTIVES
    from facebias.models.scoring import head_index

    if settings["objective"] in MAP_OBJECTIVES:
        return None, None
    head_name = settings["head"] or run.targets[0]
    if isinstance(run, UserModelRun):
        if head_name not in run.targets:
            raise ValueError(f"{OPTION}.head={head_name} is not among model.heads={run.targets}: output column i of "
                             f"{run.label} is model.heads[i]; choose one of them")
        return run.targets.index(head_name), head_name
    return head_index(model, head_name, f"{OPTION}.head={head_name}: the classifier of {run.run_dir}"), head_name


def counterfactual_run(run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Search, null, coding, statistics and the report of one run (or user model) into ``ctx.out``; returns
    counterfactual.json."""
    from facebias.analyses.units import resolve_device
    from facebias.counterfactual import coding, stats
    from facebias.counterfactual.report import record_steps
    from facebias.counterfactual.search import (
        Objective,
        check_objective_output,
        check_options,
        null_walks,
        search,
    )

    started = time.time()
    out = ctx.out
    user = isinstance(run, UserModelRun)
    model = load_model(run)
    input_size = int(run.config.data.image_size)
    head, head_name = objective_head(run, model, settings)
    owner = run.label if user else f"the classifier of {run.run_dir}"
    check_objective_output(model, settings["objective"], input_size, run.targets, head, owner, OPTION)
    coder_runs = [locate_run(run=path, checkpoint=settings["checkpoint"], search=ctx.search_dirs())
                  for path in settings["coders"]]
    generator, generator_options, generator_note = build_search_generator(run, settings, ctx)
    options = search_options(settings)
    check_options(options, generator.latent_dim, OPTION)
    device = resolve_device(ctx.option("device", "auto"))
    objective = Objective(generator, model, head, head_name, settings["objective"], settings["direction"],
                          input_size, device, settings["batch_size"], "the model" if user else "the classifier")

    z0 = generator.sample(settings["starts"], settings["seed"])
    log.info("counterfactual search: %d starts x %d candidates x %d steps (%s) on %s", len(z0), options.k,
             options.steps, options.optimizer, objective.label)
    walks = search(objective, z0, options, objective.sign)
    null = null_walks(walks, options.budget, settings["seed"])

    marks = record_steps(options.steps, settings["record_every"])
    search_faces = _render_steps(generator, walks.latents, marks)  # (S, R, H, W, 3) at the generator's size
    null_faces = _render_steps(generator, null.latents, marks)
    null_recorded = objective.values(objective.model_input(null_faces.reshape(-1, *null_faces.shape[2:])))
    null_recorded = null_recorded.reshape(len(z0), len(marks))
    null.scores[:, marks] = null_recorded

    ends = {"search": (search_faces[:, 0], search_faces[:, -1]), "null": (null_faces[:, 0], null_faces[:, -1])}
    latents = {"search": (walks.start, walks.end), "null": (null.start, null.end)}
    measures = coding.true_measures(generator, latents["search"], latents["null"])
    # a run's classifier codes the changes with its heads; a user model codes nothing itself (only coders= runs)
    classifiers = [] if user else [(run.experiment, model, input_size, list(run.targets))]
    classifiers += [(r.experiment, load_model(r), int(r.config.data.image_size), list(r.targets)) for r in coder_runs]
    measures += coding.classifier_measures([(name, heads, _probabilities(net, size, ends, device))
                                            for name, net, size, heads in classifiers])
    regions = [coding.face_region(generator, z)[0] for z in (*latents["search"], *latents["null"])]
    region_note = coding.face_region(generator, z0[:1])[1]
    measures += coding.image_measures([*ends["search"], *ends["null"]], regions)
    rows = stats.compare(coding.aggregate(measures, settings["delta_sd"]), settings["alpha"], settings["correction"])
    agreement = coding.agreement(measures)

    label = objective.label
    search_rows = _search_rows(walks, null, measures, rows, label)
    preferred = [coding.statement(r) for r in rows if r["verdict"] == "prefers"]
    avoided = [coding.statement(r) for r in rows if r["verdict"] == "avoids"]
    notes = [n for n in (objective.resize_note, generator_note) if n]

    images = _write_records(out, walks, null, marks, search_faces, null_faces, search_rows, settings["strips"], label)
    write_csv(out / "codes.csv", rows, CODE_COLUMNS)
    write_csv(out / "searches.csv", search_rows, SEARCH_COLUMNS)
    write_csv(out / "changes.csv", coding.per_walk_rows(measures))
    write_csv(out / "agreement.csv", agreement, ["attribute", "coder", "search_agreement", "search_true_changes",
                                                 "search_agreement_where_changed", "search_n", "null_agreement",
                                                 "null_true_changes", "null_agreement_where_changed", "null_n"])
    n_tests = sum(r["p_value"] is not None for r in rows)
    summary: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "job": "counterfactual", **run.provenance(), "settings": dict(settings),
        "objective": {"head": head_name, "kind": settings["objective"], "direction": settings["direction"],
                      "label": label},
        "generator": {**{k: v for k, v in generator_options.items() if k != "rows"},
                      "class": type(generator).__name__, "latent_dim": int(generator.latent_dim),
                      "image_size": int(generator.image_size), "model_input_size": input_size,
                      "resized": objective.resize_note is not None},
        "device": str(device),
        "face_region": region_note,
        "search": _walk_summary(walks),
        "null": {"moves": int(null.moved.sum()), "stopped_by_budget": int((null.stopped >= 0).sum()),
                 "mean_distance": float(null.distance.mean()), "mean_start": float(np.mean(null.scores[:, 0])),
                 "mean_end": float(np.mean(null.scores[:, -1])),
                 "rule": "same starts, same number of moves at the same steps with the same lengths, uniformly "
                         "random directions, same budget, no selection"},
        "measures": {m.label: m.description for m in measures},
        "test": stats.method_note(settings["correction"], settings["alpha"], n_tests),
        "codes": rows, "preferred": preferred, "avoided": avoided, "agreement": agreement,
        "searches": search_rows, "record_steps": marks, "notes": notes, "wandb": ctx.identity,
    }
    _render_report(out / "report.html", summary, images)
    summary["files"] = files_under(out, "counterfactual.json", "run.json")
    summary["seconds"] = round(time.time() - started, 1)
    summary = json_safe(summary)
    write_json_atomic(out / "counterfactual.json", summary)
    ctx.wandb.log({"counterfactual/codes": [{c: r.get(c) for c in CODE_COLUMNS} for r in rows],
                   "counterfactual/searches": search_rows, "counterfactual/agreement": agreement},
                  {f"counterfactual/{k}": p for k, p in images.items()}, wandb_summary(summary),
                  html={"counterfactual/report": out / "report.html"})
    return summary


def _render_steps(generator, latents: np.ndarray, marks: list[int]) -> np.ndarray:
    chosen = latents[:, marks]  # (S, R, D)
    faces = generator.render(chosen.reshape(-1, chosen.shape[-1]), batch_size=256)
    return faces.reshape(*chosen.shape[:2], *faces.shape[1:])


def _probabilities(model, size: int, ends: Mapping[str, tuple[np.ndarray, np.ndarray]], device) -> np.ndarray:
    """(4, S, heads) sigmoid scores of search start, search end, null start, null end at the model's input size."""
    from facebias.generators import crop_and_resize
    from facebias.models.scoring import score_images

    faces = [*ends["search"], *ends["null"]]
    out = []
    for f in faces:
        resized = f if f.shape[1] == size else crop_and_resize(f, size, "none")
        out.append(score_images(model, resized, device=device))
    return np.stack(out)


def _walk_summary(walks) -> dict[str, Any]:
    return {"evaluations": int(walks.evaluations), "seconds": float(walks.seconds),
            "objective_seconds": float(walks.objective_seconds),
            "objective_share": float(walks.objective_seconds / walks.seconds) if walks.seconds else None,
            "evaluations_per_second": float(walks.evaluations / walks.seconds) if walks.seconds else None,
            "moves": int(walks.moved.sum()), "improved": int((walks.scores[:, -1] != walks.scores[:, 0]).sum()),
            "stopped_by_budget": int((walks.stopped >= 0).sum()), "mean_distance": float(walks.distance.mean()),
            "mean_start": float(np.mean(walks.scores[:, 0])), "mean_end": float(np.mean(walks.scores[:, -1]))}


def _search_rows(walks, null, measures, rows, label: str) -> list[dict[str, Any]]:
    """One row per search: scores, caption, moves, distance, and its codes (what changed, as in the seed)."""
    from facebias.counterfactual.report import caption

    delta = {(r["measure"]): r["delta"] for r in rows if r["delta"] is not None}
    out = []
    for i in range(len(walks.start)):
        codes = []
        for m in measures:
            change = m.changes("search")[i]
            if m.kind == "binary" and change != 0:
                codes.append(f"{'+' if change > 0 else '-'}{m.label}")
            elif m.kind == "continuous" and abs(change) > delta.get(m.label, np.inf):
                codes.append(f"{m.label} {'up' if change > 0 else 'down'}")
        a, b = float(walks.scores[i, 0]), float(walks.scores[i, -1])
        out.append({"search": i, "start_score": a, "end_score": b, "caption": caption(label, a, b),
                    "moves": int(walks.moved[i].sum()), "distance": float(walks.distance[i]),
                    "stopped_at": None if walks.stopped[i] < 0 else int(walks.stopped[i]),
                    "null_end_score": float(null.scores[i, -1]), "null_moves": int(null.moved[i].sum()),
                    "null_distance": float(null.distance[i]), "codes": "; ".join(codes)})
    return out


def _write_records(out: Path, walks, null, marks, search_faces, null_faces, search_rows, strips: int,
                   label: str) -> dict[str, Path]:
    from facebias.counterfactual.report import score_figure, strip_figure

    np.savez_compressed(out / "trajectories.npz", search_latents=walks.latents, search_scores=walks.scores,
                        search_moved=walks.moved, search_stopped=walks.stopped, null_latents=null.latents,
                        null_scores=null.scores, null_moved=null.moved, null_stopped=null.stopped,
                        record_steps=np.asarray(marks))
    np.savez_compressed(out / "images.npz", search=search_faces, null=null_faces, record_steps=np.asarray(marks))
    images = {}
    for i in range(min(strips, len(search_faces))):
        scores = walks.scores[i, marks]
        title = f"search {i}: {search_rows[i]['caption']}"
        images[f"strips/{i:02d}"] = strip_figure(out / "plots" / f"strip_{i:02d}.png", search_faces[i], marks, scores,
                                                 title)
    images["scores"] = score_figure(out / "plots" / "scores.png", walks.scores, marks, null.scores[:, marks], label)
    return images


def _render_report(path: Path, summary: Mapping[str, Any], images: Mapping[str, Path]) -> None:
    from facebias.reporting.html import render_html

    strips = [{"image": images[f"strips/{i:02d}"], "row": row} for i, row in enumerate(summary["searches"])
              if f"strips/{i:02d}" in images]
    render_html("counterfactual.html.j2", path, title=f"Counterfactual search: {summary['experiment']}",
                summary=summary, strips=strips, images=images, code_columns=list(CODE_COLUMNS))


def wandb_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    values = {f"counterfactual/search/{k}": v for k, v in summary["search"].items() if isinstance(v, (int, float))}
    for row in summary["codes"]:
        if row["significant"]:
            values[f"counterfactual/rate/{row['measure']}/{row['change']}"] = row["search_rate"]
            values[f"counterfactual/null_rate/{row['measure']}/{row['change']}"] = row["null_rate"]
    values["counterfactual/significant"] = sum(bool(r["significant"]) for r in summary["codes"])
    return values


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
