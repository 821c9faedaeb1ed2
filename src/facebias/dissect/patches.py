"""Top-activating patches of the strongest detectors: what a unit's on-region looks like in real faces.

For a detector u of layer l, its most activating dictionary images are those with the largest maximum
of u's map. In each, the map is upsampled to the image size the way the pairing upsamples it to the mask
size (bilinear, ``align_corners=False``) and thresholded at T_u; the patch is the bounding box of the
pixels above T_u (one box around all of them, so a unit that fires on both eyes shows both).

Finding the most activating images needs every image's maximum per unit: ``UnitMaxima`` records them
with forward hooks during the dissection's own forward pass, so the patches cost no extra pass over
the data (only a forward pass over the few chosen images).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facebias.dissect.layers import ActivationRecorder, get_layer


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


class UnitMaxima:
    """Spatial maximum of every unit of some layers for the first ``n_images`` images a forward pass sees.

    Attach it around a pass that someone else drives (``with maxima.attached(): dissect(...)``): its hooks
    only read the layers' outputs. Images beyond the first n_images (a second pass over the same data)
    are ignored.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str], n_images: int):
        self.net, self.layers, self.n_images = net, list(layers), n_images
        self._values: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        self._seen = dict.fromkeys(self.layers, 0)

    def _hook(self, layer: str):
        def hook(_module, _inputs, output):
            room = self.n_images - self._seen[layer]
            if room > 0 and isinstance(output, torch.Tensor) and output.ndim == 4:
                kept = output.detach()[:room].amax(dim=(2, 3)).float().cpu()
                self._values[layer].append(kept)
                self._seen[layer] += len(kept)

        return hook

    @contextmanager
    def attached(self) -> Iterator[UnitMaxima]:
        handles = [get_layer(self.net, layer).register_forward_hook(self._hook(layer)) for layer in self.layers]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    @property
    def complete(self) -> bool:
        return all(seen == self.n_images for seen in self._seen.values())

    def of(self, layer: str) -> torch.Tensor:
        """(n_images, units) maxima of one layer."""
        if not self.complete:
            raise RuntimeError(f"UnitMaxima saw {self._seen} images of the {self.n_images} expected")
        return torch.cat(self._values[layer])


def top_patches(net: nn.Module, inputs: torch.Tensor, detectors: Sequence[dict], n_images: int,
                batch_size: int = 128, device: str | torch.device = "cpu",
                maxima: UnitMaxima | None = None) -> list[list[Patch]]:
    """For each detector (a units.csv row with its threshold), its n_images most activating images as patches.

    ``maxima`` (recorded during the dissection over the same inputs) saves a forward pass over all of them.
    Images whose maximum does not exceed T_u are left out (a unit rarely on may have fewer patches).
    """
    if not detectors:
        return []
    device = torch.device(device)
    picks = _by_layer(detectors)
    was_training = net.training
    net.eval().to(device)
    recorder = ActivationRecorder(net, list(picks))
    try:
        with torch.no_grad(), recorder.attached():
            if maxima is not None and maxima.complete and maxima.n_images == len(inputs):
                column = {layer: maxima.of(layer)[:, units] for layer, units in picks.items()}
            else:
                column = _maxima_pass(recorder, inputs, picks, batch_size, device)
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


def _maxima_pass(recorder: ActivationRecorder, inputs: torch.Tensor, picks: dict[str, list[int]], batch_size: int,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """(n, units picked) maxima per layer from a forward pass over all inputs (recorder attached)."""
    maxima: dict[str, list[torch.Tensor]] = {layer: [] for layer in picks}
    for start in range(0, len(inputs), batch_size):
        acts = recorder(inputs[start:start + batch_size].to(device))
        for layer, units in picks.items():
            maxima[layer].append(acts[layer][:, units].amax(dim=(2, 3)).float().cpu())
    return {layer: torch.cat(values) for layer, values in maxima.items()}
