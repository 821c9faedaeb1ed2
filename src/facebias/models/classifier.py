"""AttributeClassifier: a backbone with one logit per binary attribute, trained with BCE.

Hyperparameters are plain values (checkpoints load with `weights_only=True`). Validation gathers every
score and computes its statistics at epoch end (torchmetrics' group metrics miscount groups absent from a
batch, see NOTES.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from facebias.data.transforms import random_hflip, to_grayscale, to_model_input
from facebias.models.backbones import build_backbone


class AttributeClassifier(pl.LightningModule):
    def __init__(self, targets: Sequence[str] = ("Male",), backbone: str = "resnet18", pretrained: bool = False,
                 optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
                 scheduler: str | None = "cosine", max_epochs: int = 10, hflip: bool = True,
                 channels_last: bool = False):
        super().__init__()
        targets = [str(t) for t in targets]  # plain values only: checkpoints must load with weights_only=True
        if optimizer not in ("adam", "adamw"):
            raise ValueError(f"model.optimizer={optimizer!r}: use adam or adamw")
        self.save_hyperparameters()
        self.targets = list(targets)
        self.net = build_backbone(backbone, len(self.targets), pretrained)
        self.loss = nn.BCEWithLogitsLoss()
        self._outputs: list[dict[str, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """uint8 faces -> model input on the device: planted grayscale, normalise, flip when training."""
        images = batch["image"]
        if images.dtype != torch.uint8:  # already model input
            return batch
        if "gray" in batch:
            images = to_grayscale(images, batch["gray"])
        x = to_model_input(images, self.hparams.channels_last)
        if self.hparams.hflip and self._trainer is not None and self.trainer.training:
            x = random_hflip(x)
        return {**batch, "image": x}

    def training_step(self, batch, batch_idx):
        logits = self(batch["image"])
        loss = self.loss(logits.float(), batch["target"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        return loss

    def _score(self, batch) -> dict[str, torch.Tensor]:
        logits = self(batch["image"]).float()
        return {"logit": logits.detach(), "score": torch.sigmoid(logits).detach(), "target": batch["target"],
                "protected": batch["protected"], "concept": batch["concept"], "row": batch["row"]}

    def validation_step(self, batch, batch_idx):
        out = self._score(batch)
        self._outputs.append({k: v.cpu() for k, v in out.items()})
        self.log("val/loss", self.loss(out["logit"], out["target"]), on_epoch=True, batch_size=len(out["logit"]))

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        return {k: v.cpu() for k, v in self._score(batch).items()}

    def _epoch_metrics(self, stage: str) -> None:
        if not self._outputs:
            return
        from facebias.training.predictions import summarize_predictions

        gathered = {k: torch.cat([o[k] for o in self._outputs]).numpy() for k in self._outputs[0]}
        self._outputs.clear()
        metrics = summarize_predictions(gathered, self.targets, threshold=0.5)
        finite = {f"{stage}/{k}": float(v) for k, v in metrics.items() if np.isfinite(v) and k != "AP"}
        self.log_dict(finite, prog_bar=False)
        self.log(f"{stage}/AP", float(metrics["AP"]), prog_bar=True)  # the checkpoint monitor

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    def configure_optimizers(self):
        opt_cls = torch.optim.Adam if self.hparams.optimizer == "adam" else torch.optim.AdamW
        opt = opt_cls(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler != "cosine":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.max_epochs))
        return {"optimizer": opt, "lr_scheduler": sched}
