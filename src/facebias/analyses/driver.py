"""One driver for every analysis: one trained run, a model the user brings, or every training run of sweeps.

``analyse(cfg)`` is what evaluate.py and dissect.py call. The analysis comes from the ``analysis`` config
group (``_target_``). What it reads: ``run=`` / ``ckpt=`` (a training run), ``model.file=`` (a model the user
brings, with the data of the ``data`` group; analyses with ``user_model = True``) or ``sweep=``. With
``sweep=`` each training run found under the sweep dirs is analysed into ``<run>/<analysis.subdir>/`` unless a
current result exists (same checkpoint file and settings, read from run.json), then the analysis summarises
the sweep. Results found under a sweep dir whose training
run lives elsewhere are taken as they are (the newest per training run).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from facebias.analyses.base import Analysis, Context, Result
from facebias.reporting.console import get_logger
from facebias.reporting.wandb import plain_config, wandb_session
from facebias.runs import (
    RUN_DATA_KEYS,
    TRAIN,
    RunNotFoundError,
    RunRecord,
    TrainedRun,
    UserModelRun,
    is_current,
    locate_run,
    locate_user_model,
    output_dir,
    resolve_path,
    run_records,
)

log = get_logger(__name__)


def build_analysis(cfg: DictConfig) -> Analysis:
    from hydra.utils import instantiate

    if not isinstance(cfg.get("analysis"), DictConfig) or "_target_" not in cfg.analysis:
        raise ValueError(f"analysis={cfg.get('analysis')!r}: choose an entry of the analysis config group "
                         "(conf/analysis/*.yaml), e.g. analysis=units")
    return instantiate(cfg.analysis)


USER_MODEL_HINT = "model.file=<net.py> model.class_name=<Class> model.state_dict=<weights.pt>"


def analyse(cfg: DictConfig, out: Path | None = None) -> dict[str, Any]:
    """Entry of evaluate.py and dissect.py: one run (run= / ckpt=), a user model (model.file=) or sweeps (sweep=)
    into the output dir."""
    analysis = build_analysis(cfg)
    settings = analysis.settings(cfg)
    ctx = Context(cfg, Path(out) if out is not None else output_dir())
    user_model = OmegaConf.select(cfg, "model.file") is not None
    has_run = cfg.get("run") is not None or cfg.get("ckpt") is not None
    if cfg.get("sweep") and (has_run or user_model):
        raise ValueError("give either sweep=<multirun dir> or run=/ckpt= or model.file=, not several")
    if has_run and user_model:
        raise ValueError(f"give either run=/ckpt= (a facebias training run) or model.file= (a model you bring), "
                         f"not both: run={cfg.get('run')}, ckpt={cfg.get('ckpt')}, "
                         f"model.file={OmegaConf.select(cfg, 'model.file')}")
    if not cfg.get("sweep") and not has_run and not user_model:
        bring = f"; or {USER_MODEL_HINT}" if analysis.user_model else ""
        raise ValueError(f"name what to analyse: run=<training run dir> (outputs/train/...) or ckpt=<checkpoint "
                         f"file>; for every run of a P sweep: sweep=<multirun/train/...>{bring} "
                         f"(analysis={analysis.name})")
    if user_model:
        if not analysis.user_model:
            raise ValueError(f"analysis={analysis.name} needs a facebias training run (run=<dir>); a model you bring "
                             "(model.file=) works with analysis=layers, analysis=units, analysis=regions and "
                             "analysis=counterfactual")
        run = locate_user_model(cfg, search=ctx.search_dirs(), check_output=analysis.user_model_logits)
        return analyse_run(analysis, run, settings, ctx)
    if OmegaConf.select(cfg, "model") is not None:  # dissect.py: its data group describes a user model's data
        check_run_data_overrides()
    if cfg.get("sweep"):
        return analyse_sweep(analysis, settings, ctx)
    run = locate_run(cfg.get("run"), cfg.get("ckpt"), cfg.get("checkpoint", "best"), search=ctx.search_dirs())
    return analyse_run(analysis, run, settings, ctx)


def check_run_data_overrides(overrides: Sequence[str] | None = None) -> None:
    """With run= (or sweep=), the runs' own data is analysed: only data.<RUN_DATA_KEYS> may be changed. The data
    options that describe a user model's data (data=folder, data.root=, data.image_size=, ...) would be ignored,
    so they fail here (read from the command line's overrides; nothing to check outside a Hydra job)."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return
        overrides = list(HydraConfig.get().overrides.task)
    ignored = []
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0].strip()
        if (key == "data" or key.startswith("data.")) and key.partition(".")[2].split(".")[0] not in RUN_DATA_KEYS:
            ignored.append(override)
    if ignored:
        raise ValueError(f"{', '.join(ignored)}: with run= (or sweep=) a training run's own data is analysed (its "
                         f"source, splits and image size); only {', '.join(f'data.{k}' for k in RUN_DATA_KEYS)} can "
                         f"be changed. The data group describes the data of a model you bring instead: "
                         f"{USER_MODEL_HINT}")


def analyse_run(analysis: Analysis, run: TrainedRun | UserModelRun, settings: dict[str, Any],
                ctx: Context) -> dict[str, Any]:
    """``analysis.run`` into ``ctx.out`` inside its W&B session, with run.json written before and after."""
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    identity = run.wandb_identity(analysis.job_type or analysis.name)
    record = RunRecord(kind=analysis.kind, status="running", config=plain_config(ctx.cfg), parent=run.parent(),
                       settings=dict(settings), result=analysis.result_file, wandb=identity, data=run.data_record)
    record.write(out)
    log.info("%s of %s into %s", analysis.name, run.label, out)
    job = Context(ctx.cfg, out, identity=identity)
    with wandb_session(ctx.cfg, out, identity, analysis.job_type,
                       analysis.wandb_config(run, settings)) as session:
        job.wandb = session
        payload = analysis.run(run, settings, job)
    record.status = "finished"
    record.write(out)
    analysis.print_run(payload, job)
    return payload


def sweep_roots(cfg: DictConfig, ctx: Context) -> list[Path]:
    """The sweep= dirs (one path or a list), resolved and checked to be directories."""
    value = cfg.get("sweep")
    names = [str(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else [str(value)]
    roots = []
    for name in names:
        root = resolve_path(name, "sweep", ctx.search_dirs())
        if not root.is_dir():
            raise RunNotFoundError(f"sweep={name}: {root} is not a directory; pass a multirun dir of train.py")
        roots.append(root)
    return roots


def collect_results(analysis: Analysis, settings: dict[str, Any], ctx: Context, roots: Sequence[Path],
                    ) -> tuple[list[Result], list[dict[str, str]]]:
    """A current result for every training run under the roots (analysing those that lack one), plus
    results under the roots whose training run is elsewhere; and the runs that had to be skipped."""
    records = {d: record for root in roots for d, record in run_records(root).items()}
    training = sorted(d for d, record in records.items() if record.kind == TRAIN)
    existing = [r for d, record in sorted(records.items()) if record.kind == analysis.kind
                if (r := _result(d, record)) is not None]
    if not training and not existing:
        raise RunNotFoundError(
            f"sweep={', '.join(map(str, roots))}: found no training run (a dir whose run.json says kind 'train', "
            f"written by train.py) and no {analysis.name} result under it; point sweep= at a multirun dir such "
            "as multirun/train/<date>_<pid>")
    results, skipped, covered = [], [], set()
    for run_dir in training:
        try:
            run = locate_run(run=str(run_dir), checkpoint=settings.get("checkpoint", "best"))
        except (RunNotFoundError, ValueError) as error:
            skipped.append({"run_dir": str(run_dir), "reason": str(error)})
            warnings.warn(f"skipping {run_dir}: {error}", RuntimeWarning, stacklevel=2)
            continue
        covered.add(str(run.run_dir))
        current = [r for r in existing if Path((r.record.parent or {}).get("run_dir", "")) == run.run_dir
                   and is_current(r.record, run, settings)]
        if current and not ctx.cfg.get("force", False):
            results.append(max(current, key=lambda r: r.record.created))
            continue
        out = run.run_dir / analysis.subdir
        payload = analyse_run(analysis, run, settings, Context(ctx.cfg, out))
        results.append(Result(out, RunRecord.read(out), payload))
    newest: dict[str, Result] = {}
    for result in existing:  # results whose training run is not under the roots
        source = str((result.record.parent or {}).get("run_dir"))
        if source in covered:
            continue
        if source not in newest or result.record.created > newest[source].record.created:
            newest[source] = result
    results.extend(newest.values())
    return results, skipped


def analyse_sweep(analysis: Analysis, settings: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Every run of the sweeps (reusing current results), then ``analysis.summarize`` in its own W&B session."""
    if analysis.summary_file is None:
        return analysis.summarize([], [], settings, ctx)  # raises: no sweep form
    roots = sweep_roots(ctx.cfg, ctx)
    results, skipped = collect_results(analysis, settings, ctx, roots)
    if not results:
        raise RunNotFoundError(f"sweep={', '.join(map(str, roots))}: no run could be analysed; skipped: "
                               + "; ".join(f"{s['run_dir']}: {s['reason']}" for s in skipped))
    ctx.out.mkdir(parents=True, exist_ok=True)
    identity = sweep_identity(roots, results, analysis)
    record = RunRecord(kind=f"{analysis.kind}-sweep", status="running", config=plain_config(ctx.cfg),
                       settings=dict(settings), result=analysis.summary_file, wandb=identity)
    record.write(ctx.out)
    job = Context(ctx.cfg, ctx.out, identity=identity, roots=roots)
    with wandb_session(ctx.cfg, ctx.out, identity, analysis.job_type,
                       {"sweep_dirs": [str(r) for r in roots], "runs": len(results)}) as session:
        job.wandb = session
        summary = analysis.summarize(results, skipped, settings, job)
    record.status = "finished"
    record.write(ctx.out)
    analysis.print_sweep(summary, job)
    return summary


def sweep_identity(roots: Sequence[Path], results: Sequence[Result], analysis: Analysis) -> dict[str, str]:
    """The sweep's W&B group when all its runs share one (a train multirun does), else one named after the dirs."""
    name = roots[0].name if len(roots) == 1 else "+".join(root.name for root in roots)
    groups = {r.record.wandb.get("group") for r in results if r.record.wandb.get("group")}
    group = groups.pop() if len(groups) == 1 else f"sweep-{name}"
    return {"group": group, "name": f"{analysis.name} summary {name}"}


def _result(run_dir: Path, record: RunRecord) -> Result | None:
    """A finished analysis output with its numbers, or None (unfinished, or its result file is unreadable)."""
    try:
        payload = record.result_payload(run_dir)
    except (OSError, ValueError) as error:
        warnings.warn(f"skipping {run_dir}: {error}", RuntimeWarning, stacklevel=2)
        return None
    if payload is None or record.status != "finished":
        return None
    return Result(run_dir, record, payload)
