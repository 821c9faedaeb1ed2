"""Lightning loggers from the `logger` config group: W&B (the stage's own session run), CSV, both or none.

The W&B run itself is started and finished by ``facebias.reporting.wandb.wandb_session``; the Lightning
logger only writes into it, so training, evaluation and every analysis share one lifecycle.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from facebias.reporting.wandb import WandbSession


def build_loggers(cfg: DictConfig, output_dir: Path, session: WandbSession) -> list:
    """The Lightning loggers the `logger` group names; wandb writes into ``session.run``."""
    loggers = []
    logger_cfg = cfg.get("logger") or {}
    if "csv" in logger_cfg:
        from pytorch_lightning.loggers import CSVLogger

        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv", version=""))
    if "wandb" in logger_cfg and session.run is not None:
        from pytorch_lightning.loggers import WandbLogger

        loggers.append(WandbLogger(experiment=session.run, save_dir=str(output_dir)))
    return loggers


def wandb_logger(loggers: list):
    from pytorch_lightning.loggers import WandbLogger

    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)
