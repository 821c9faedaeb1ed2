"""Callbacks from the `callbacks` config group: best-by-val/AP and last checkpoints, a progress bar."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def build_callbacks(cfg: DictConfig | None, output_dir: Path) -> list:
    from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar

    cfg = cfg or {}
    callbacks = []
    ckpt = cfg.get("checkpoint")
    if ckpt:
        callbacks.append(ModelCheckpoint(dirpath=str(output_dir / "checkpoints"), monitor=ckpt.monitor,
                                         mode=ckpt.mode, save_last=ckpt.save_last, filename=ckpt.filename,
                                         auto_insert_metric_name=False))
    progress = cfg.get("progress", "rich")
    if progress == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif progress == "tqdm":
        callbacks.append(TQDMProgressBar())
    elif progress not in ("none", None):
        raise ValueError(f"callbacks.progress={progress!r}: use rich, tqdm or none")
    return callbacks
