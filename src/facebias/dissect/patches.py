"""Top-activating patches of the strongest detectors: what a unit's on-region looks like in real faces.

For a detector u of layer l, its most activating dictionary images are those with the largest maximum
of u's map. In each, the map is upsampled to the image size the way the pairing upsamples it to the mask
size (bilinear, ``align_corners=False``) and thresholded at T_u; the patch is the bounding box of the
pixels above T_u (one box around all of them, so a unit that fires on both eyes shows both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facebias.dissect.layers import ActivationRecorder


@dataclass(frozen=True)
class Patch:
    image: int  # index into the dictionary faces
    activation: float  # the unit's maximum on that image
    box: tuple[int, int, int, int]  # top, left, bottom, right (exclusive) in image pixels


def strongest_detectors(result, k: int) -> list[dict]:
    """The k detectors with the highest IoU over all dissected layers (rows as in units.csv)."""
    detectors = [row for row in result.rows() if row["detector"]]
    return sorted(detectors, key=lambda row: -row["iou"])[:k]


def region_box(activation: torch.Tensor, threshold: float, size: int) -> tuple[int, int, int, int] | None:
    """Bounding box (top, left, bottom, right; bottom/right exclusive) of upsample(map) > threshold at size x size.

    None when no pixel is above the threshold.
    """
    if activation.ndim != 2:
        raise ValueError(f"expected one (h, w) activation map, got shape {tuple(activation.shape)}")
    upsampled = F.interpolate(activation[None, None].float(), size=(size, size), mode="bilinear",
                              align_corners=False)[0, 0]
    ys, xs = torch.nonzero(upsampled > threshold, as_tuple=True)
    if len(ys) == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _by_layer(detectors: Sequence[dict]) -> dict[str, list[int]]:
    picks: dict[str, list[int]] = {}
    for row in detectors:
        picks.setdefault(row["layer"], []).append(int(row["unit"]))
    return picks


def top_patches(net: nn.Module, inputs: torch.Tensor, detectors: Sequence[dict], n_images: int,
                batch_size: int = 128, device: str | torch.device = "cpu") -> list[list[Patch]]:
    """For each detector (a units.csv row with its threshold), its n_images most activating images as patches.

    Images whose maximum does not exceed T_u are left out (a unit rarely on may have fewer patches).
    """
    if not detectors:
        return []
    device = torch.device(device)
    picks = _by_layer(detectors)
    was_training = net.training
    net.eval().to(device)
    recorder = ActivationRecorder(net, list(picks))
    maxima: dict[str, list[torch.Tensor]] = {layer: [] for layer in picks}
    try:
        with torch.no_grad(), recorder.attached():
            for start in range(0, len(inputs), batch_size):
                acts = recorder(inputs[start:start + batch_size].to(device))
                for layer, units in picks.items():
                    maxima[layer].append(acts[layer][:, units].amax(dim=(2, 3)).float().cpu())
            column = {layer: torch.cat(values) for layer, values in maxima.items()}
            chosen: list[list[tuple[int, float]]] = []
            for row in detectors:
                j = picks[row["layer"]].index(int(row["unit"]))
                values = column[row["layer"]][:, j]
                top = values.topk(min(n_images, len(values)))
                chosen.append([(int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)
                               if float(v) > row["threshold"]])
            needed = sorted({i for picked in chosen for i, _ in picked})
            maps = {}
            for start in range(0, len(needed), batch_size):
                index = needed[start:start + batch_size]
                acts = recorder(inputs[index].to(device))
                for layer in picks:
                    for k, i in enumerate(index):
                        maps[(layer, i)] = acts[layer][k].float().cpu()
    finally:
        net.train(was_training)
    size = inputs.shape[-1]
    patches = []
    for row, picked in zip(detectors, chosen, strict=True):
        mine = []
        for i, value in picked:
            box = region_box(maps[(row["layer"], i)][int(row["unit"])], row["threshold"], size)
            if box is not None:
                mine.append(Patch(image=i, activation=value, box=box))
        patches.append(mine)
    return patches
