"""Scores gathered over a split (their summary is `facebias.metrics.summary.summarize_predictions`)."""

from __future__ import annotations

import numpy as np
import torch


def collect_predictions(trainer, model, dataloader) -> dict[str, np.ndarray]:
    """Run `predict` over a loader and concatenate: logit, score, target (n, T); protected, concept, row (n,)."""
    batches = trainer.predict(model, dataloaders=dataloader)
    return {k: torch.cat([b[k] for b in batches]).numpy() for k in batches[0]}
