"""Loggers from the `logger` config group, and the W&B conventions of every facebias run.

W&B is the record: project `facebias`, group = experiment (or the sweep), job_type = train/eval/dissect,
name = the command-line overrides. It runs offline unless the user has set W&B up, and every run is
finished in a `finally` by the task (Hydra's basic launcher runs sweep jobs in one process).
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def wandb_mode(requested: str | None = None) -> str:
    """'online' only when asked for or when credentials exist (WANDB_API_KEY or a netrc entry), else offline."""
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return "offline"
    return "online" if any("wandb" in host for host in hosts) else "offline"


def run_identity(cfg: DictConfig) -> dict[str, str]:
    """group and name of a run: the sweep (multirun) or the experiment; the name lists the overrides."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith(("hydra.", "logger", "paths."))]
    name = " ".join(overrides) or cfg.get("exp_name") or cfg.task_name
    family = cfg.get("family") or cfg.get("exp_name") or cfg.task_name
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # computed from the sweep dir, so every job of one sweep shares it (NOTES.md: ${now:} may differ)
        group = f"{family}-sweep-{Path(hydra_cfg.sweep.dir).name}"
    else:
        group = cfg.get("exp_name") or cfg.task_name
    return {"group": str(group), "name": str(name)}


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers (W&B and checkpoints refuse DictConfig)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def build_loggers(cfg: DictConfig, output_dir: Path, job_type: str) -> list:
    """Lightning loggers named by the `logger` group: wandb, csv, both or none."""
    loggers = []
    logger_cfg = cfg.get("logger") or {}
    if "csv" in logger_cfg:
        from pytorch_lightning.loggers import CSVLogger

        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv", version=""))
    if "wandb" in logger_cfg:
        from pytorch_lightning.loggers import WandbLogger

        w = logger_cfg.wandb
        identity = run_identity(cfg)
        (output_dir / "wandb").mkdir(parents=True, exist_ok=True)
        loggers.append(WandbLogger(
            project=w.project, entity=w.entity, group=identity["group"], name=identity["name"],
            job_type=job_type, save_dir=str(output_dir), mode=wandb_mode(w.mode), tags=list(w.tags),
            config=plain_config(cfg), reinit="finish_previous",
        ))
    return loggers


def wandb_logger(loggers: list):
    from pytorch_lightning.loggers import WandbLogger

    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)


def finish_wandb() -> str | None:
    """Finish the active W&B run (if any); return the `wandb sync` command when it ran offline."""
    import wandb

    run = wandb.run
    if run is None:
        return None
    offline = run.settings.mode == "offline" or getattr(run, "offline", False)
    run_dir = Path(run.dir).parent
    wandb.finish()
    return f"wandb sync {run_dir}" if offline else None
