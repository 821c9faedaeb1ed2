"""A classifier's probabilities for images that are not a split of a data module: generated faces.

The de-biasing stage labels G(z), the counterfactual search scores its candidates and the GAN's quality
figures read attribute rates, all through ``score_images``: uint8 faces in, sigmoid scores out, batched,
through the model's own ``preprocess`` (the same normalisation as in training).
"""

from __future__ import annotations

import numpy as np
import torch


def head_index(model, head: str, where: str = "") -> int:
    """The column of ``head`` in the model's outputs, or an error listing the heads it has."""
    heads = list(getattr(model, "targets", []))
    if head not in heads:
        raise ValueError(f"{where or 'the classifier'} has no head {head!r}; its heads are {heads}: train one with "
                         f"data.targets=[...,{head}] or name another run")
    return heads.index(head)


@torch.no_grad()
def score_images(model, images: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu",
                 ) -> np.ndarray:
    """(n, heads) float32 sigmoid scores of uint8 faces (n, S, S, 3) at the model's input size."""
    model = model.to(device).eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = {"image": torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)}
        x = model.preprocess(batch)["image"]
        out.append(torch.sigmoid(model(x).float()).cpu())
    if not out:
        return np.zeros((0, len(getattr(model, "targets", [None]))), dtype=np.float32)
    return torch.cat(out).numpy()


@torch.no_grad()
def score_loader(model, loader, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(scores (n, heads), targets (n, T)) over a data module's loader, through ``preprocess``."""
    model = model.to(device).eval()
    scores, targets = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        scores.append(torch.sigmoid(model(model.preprocess(batch)["image"]).float()).cpu())
        targets.append(batch["target"].cpu())
    return torch.cat(scores).numpy(), torch.cat(targets).numpy()
