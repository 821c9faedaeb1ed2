"""W&B for evaluations: join the *training* run's group with job_type=eval; tables, images, summary values.

No Lightning trainer logs here, so the run is started with ``wandb.init`` directly (the conventions
of ``facebias.training.loggers``: project/entity/tags from the `logger` group, offline unless the user
set W&B up). The caller finishes it with ``finish_wandb`` in a ``finally``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from facebias.training.loggers import wandb_mode


def wandb_enabled(cfg: DictConfig) -> bool:
    return "wandb" in (cfg.get("logger") or {})


def start_run(cfg: DictConfig, output_dir: Path, identity: Mapping[str, str], config: dict[str, Any],
              job_type: str = "eval"):
    """A W&B run in the given group (None when the `logger` group has no wandb entry)."""
    if not wandb_enabled(cfg):
        return None
    import wandb

    w = cfg.logger.wandb
    mode = wandb_mode(w.mode)
    if mode != "disabled":
        (output_dir / "wandb").mkdir(parents=True, exist_ok=True)
    return wandb.init(project=w.project, entity=w.entity, group=identity["group"], name=identity["name"],
                      job_type=job_type, dir=str(output_dir), mode=mode, tags=list(w.tags),
                      config=config, reinit="finish_previous")


def table(rows: Sequence[Mapping[str, Any]]):
    import wandb

    columns = list(rows[0].keys()) if rows else []
    return wandb.Table(columns=columns, data=[[_plain(r.get(c)) for c in columns] for r in rows])


def log_evaluation(run, tables: Mapping[str, Sequence[Mapping[str, Any]]], images: Mapping[str, Path],
                   summary: Mapping[str, Any]) -> None:
    """Tables and PNGs in one history step, the headline numbers in the run summary."""
    if run is None:
        return
    import wandb

    payload: dict[str, Any] = {key: table(rows) for key, rows in tables.items() if rows}
    payload.update({key: wandb.Image(str(path)) for key, path in images.items()})
    run.log(payload)
    run.summary.update({k: _plain(v) for k, v in summary.items()})


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (W&B tables and summaries want JSON types)."""
    if hasattr(value, "item"):
        return value.item()
    return value
