"""AttributeClassifier: a backbone with one logit per binary attribute, trained with BCE.

Hyperparameters are plain values (checkpoints load with `weights_only=True`): the optimizer and the LR
scheduler are stored as `_target_` dicts and built with `hydra.utils.instantiate` in `configure_optimizers`.
Batches arrive as uint8 dicts; every step turns them into model input with `preprocess`, the public way to do
it outside training too. Validation gathers every score and computes its statistics at epoch end
(torchmetrics' group metrics miscount groups absent from a batch, docs/design.md §11).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from facebias.data.transforms import random_hflip, to_grayscale, to_model_input
from facebias.models.backbones import build_backbone

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "weight_decay": 0.0}
DEFAULT_SCHEDULER = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True, "T_max": 10}
# checkpoints written before the optimizer became a `_target_` config name it by a short name (Lightning drops
# their lr, weight_decay and max_epochs when loading: they load for inference with the default numbers)
_LEGACY_OPTIMIZERS = {"adam": "torch.optim.Adam", "adamw": "torch.optim.AdamW"}


def target_config(value: Any, name: str) -> dict[str, Any] | None:
    """A `_target_` config (dict or DictConfig) as a plain dict, or None; a clear error for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        if name == "optimizer" and value in _LEGACY_OPTIMIZERS:
            return {**DEFAULT_OPTIMIZER, "_target_": _LEGACY_OPTIMIZERS[value]}
        if name == "scheduler" and value == "cosine":
            return dict(DEFAULT_SCHEDULER)
    if not isinstance(value, Mapping):
        raise TypeError(f"model.{name} must be a config with a _target_ (e.g. {{_target_: torch.optim.Adam, "
                        f"_partial_: true, lr: 1e-3}}) or null, not {type(value).__name__}: {value!r}. "
                        f"(instantiate the model with _recursive_=False so the config is not built early)")
    from omegaconf import DictConfig, OmegaConf

    plain = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else dict(value)
    if not plain.get("_target_"):
        raise ValueError(f"model.{name} has no _target_: {plain!r}")
    return plain


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """(world, *tensor.shape): every rank's tensor of one shape (torch.distributed's collective; Lightning's
    `all_gather` goes through a deprecated torch function)."""
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


class AttributeClassifier(pl.LightningModule):
    def __init__(self, targets: Sequence[str] = ("Male",), backbone: str = "resnet18", pretrained: bool = False,
                 optimizer: Mapping[str, Any] | None = DEFAULT_OPTIMIZER,
                 scheduler: Mapping[str, Any] | None = DEFAULT_SCHEDULER, hflip: bool = True,
                 channels_last: bool = False):
        super().__init__()
        # plain values only: checkpoints must load with weights_only=True (save_hyperparameters reads these)
        targets = [str(t) for t in targets]
        optimizer = target_config(optimizer, "optimizer")
        scheduler = target_config(scheduler, "scheduler")
        if optimizer is None:
            raise ValueError("model.optimizer is null: name one, e.g. model.optimizer._target_=torch.optim.Adam")
        self.save_hyperparameters()
        self.targets = list(targets)
        self.net = build_backbone(backbone, len(self.targets), pretrained)
        self.loss = nn.BCEWithLogitsLoss()
        self._outputs: list[dict[str, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def preprocess(self, batch: dict, augment: bool = False) -> dict:
        """A uint8 batch dict -> the same dict with `image` as model input, on the batch's device.

        Planted grayscale (where `batch["gray"]` says so), ImageNet normalisation, NCHW (channels_last when
        the model was built for it) and, with `augment` and `hflip`, random left-right flips; the steps pass
        `augment=True` only when training. A batch whose images are not uint8 is returned unchanged.
        """
        images = batch["image"]
        if images.dtype != torch.uint8:  # already model input
            return batch
        if "gray" in batch:
            images = to_grayscale(images, batch["gray"])
        x = to_model_input(images, self.hparams.channels_last)
        if augment and self.hparams.hflip:
            x = random_hflip(x)
        return {**batch, "image": x}

    def training_step(self, batch, batch_idx):
        batch = self.preprocess(batch, augment=True)
        logits = self(batch["image"])
        loss = self.loss(logits.float(), batch["target"])
        # the step value as it is (syncing it would cost a collective per step), the epoch mean over every rank;
        # a progress-bar value is read back (.item()) after every step, a host-device sync on a GPU, so it is
        # only put there when a bar shows it (gpu_check found it the one sync left in a training step)
        shown = self.trainer.progress_bar_callback is not None
        self.log("train/loss_step", loss, prog_bar=shown, on_step=True, on_epoch=False, batch_size=len(logits))
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(logits))
        return loss

    def _score(self, batch) -> dict[str, torch.Tensor]:
        """Scores in fp32 whatever precision trains the model (bf16 autocast off), so validation, the final
        metrics and evaluate.py agree on a checkpoint's numbers and its choice as best."""
        batch = self.preprocess(batch)
        with torch.autocast(batch["image"].device.type, enabled=False):
            logits = self(batch["image"].float()).float()
        return {"logit": logits.detach(), "score": torch.sigmoid(logits).detach(), "target": batch["target"],
                "protected": batch["protected"], "concept": batch["concept"], "row": batch["row"]}

    def validation_step(self, batch, batch_idx):
        out = self._score(batch)
        self._outputs.append({k: v.cpu() for k, v in out.items()})

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        return {k: v.cpu() for k, v in self._score(batch).items()}

    def _epoch_metrics(self, stage: str) -> None:
        if not self._outputs:
            return
        from facebias.metrics.summary import summarize_predictions

        gathered = {k: torch.cat([o[k] for o in self._outputs]) for k in self._outputs[0]}
        self._outputs.clear()
        distributed = self.trainer.world_size > 1
        if distributed:  # every rank scored its share: gather the whole split before any statistic
            gathered = self._gather_ranks(gathered)
        loss = float(self.loss(gathered["logit"], gathered["target"]))
        gathered = {k: v.numpy() for k, v in gathered.items()}
        cell_column = getattr(self.trainer.datamodule, "cell_column", "concept")
        metrics = summarize_predictions(gathered, self.targets, threshold=0.5, cell_column=cell_column)
        # every rank now holds the same numbers: a max over ranks keeps them exactly (and marks them synced)
        sync = {"sync_dist": True, "reduce_fx": "max"} if distributed else {}
        finite = {f"{stage}/{k}": float(v) for k, v in metrics.items() if np.isfinite(v) and k != "AP"}
        self.log(f"{stage}/loss", loss, **sync)
        self.log_dict(finite, prog_bar=False, **sync)
        self.log(f"{stage}/AP", float(metrics["AP"]), prog_bar=True, **sync)  # the checkpoint monitor

    def _gather_ranks(self, local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Under DDP: every rank's scores of the split, each item once, in the split's order.

        Lightning shares a val/test split out with a DistributedSampler: rank r scores items r, r + world, ...,
        padded to equal length by repeating the split's first items. All ranks' tensors are gathered (padded to
        one length for the collective), interleaved back into the split's order, and the repeats dropped by
        `row` (a split's rows are distinct), so every statistic equals a one-process evaluation's. Shares of
        unequal length (another sampler) are concatenated rank by rank instead; the statistics do not depend
        on the order.
        """
        world = self.trainer.world_size
        size = torch.tensor([len(local["row"])], device=self.device)
        sizes = [int(n) for n in _all_gather(size).view(-1).tolist()]
        longest = max(sizes)
        parts = {}
        for key, value in local.items():
            padded = value.new_zeros((longest, *value.shape[1:])).to(self.device)
            padded[:len(value)] = value.to(self.device)
            parts[key] = _all_gather(padded).cpu()  # (world, longest, ...)
        if len(set(sizes)) == 1:
            merged = {k: v.transpose(0, 1).reshape(world * longest, *v.shape[2:]) for k, v in parts.items()}
        else:
            merged = {k: torch.cat([v[r, :n] for r, n in enumerate(sizes)]) for k, v in parts.items()}
        _, first = np.unique(merged["row"].numpy(), return_index=True)
        keep = torch.from_numpy(np.sort(first))
        return {k: v[keep] for k, v in merged.items()}

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    def configure_optimizers(self):
        """The optimizer (and scheduler, if any) from their `_target_` configs; extra arguments a config
        names (betas, eta_min, ...) pass through."""
        from hydra.utils import instantiate

        opt = instantiate({**self.hparams.optimizer, "_partial_": True})(params=self.parameters())
        if self.hparams.scheduler is None:
            return opt
        sched = instantiate({**self.hparams.scheduler, "_partial_": True})(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": sched}
