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
        dirpath = str(output_dir / "checkpoints")
        callbacks.append(ModelCheckpoint(dirpath=dirpath, monitor=ckpt.monitor, mode=ckpt.mode,
                                         filename=ckpt.filename, auto_insert_metric_name=False,
                                         enable_version_counter=False))
        if ckpt.save_last:
            # Lightning's save_last only refreshes last.ckpt when a top-k file is written; resuming needs
            # the latest epoch, so a second, unmonitored checkpoint keeps exactly that.
            callbacks.append(ModelCheckpoint(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                                             enable_version_counter=False))
    progress = cfg.get("progress", "rich")
    if progress == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif progress == "tqdm":
        callbacks.append(TQDMProgressBar())
    elif progress not in ("none", None):
        raise ValueError(f"callbacks.progress={progress!r}: use rich, tqdm or none")
    return callbacks
