"""The pictures of a region explanation: scores painted on a face template, and the top patches per region.

The template is drawn from the Face Dictionary itself: each region's mask averaged over the explained faces
(its mean shape, in the face crop), and each pixel given to the region covering it in most faces (at least
half of them); pixels of no region are background. So the picture has the geometry the scores were computed
with, not a hand-drawn one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BACKGROUND = (0.93, 0.93, 0.93, 1.0)
MISSING = (0.75, 0.75, 0.75, 1.0)  # a region with no score (no image has it)


@dataclass
class FaceTemplate:
    regions: tuple[str, ...]
    labels: np.ndarray  # (S, S) int: region index, -1 for background
    occupancy: np.ndarray  # (R, S, S) float: share of faces whose region covers the pixel


def face_template(masks: torch.Tensor, regions: Sequence[str]) -> FaceTemplate:
    """(n, R, S, S) region masks -> the template (mean shapes, each pixel to its most frequent region >= 0.5)."""
    occupancy = torch.as_tensor(masks).float().mean(dim=0).numpy()
    best = occupancy.argmax(axis=0)
    labels = np.where(occupancy.max(axis=0) >= 0.5, best, -1)
    return FaceTemplate(tuple(regions), labels, occupancy)


@dataclass
class Panel:
    title: str
    values: Mapping[str, float | None]  # score per region
    vmin: float
    vmax: float
    cmap: str = "coolwarm"
    label: str = "score"


def label_position(mask: np.ndarray) -> tuple[int, int] | None:
    """The pixel deepest inside a region (farthest from its edge): inside even for a ring or a pair of parts."""
    if not mask.any():
        return None
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return int(y), int(x)


def paint(ax, template: FaceTemplate, panel: Panel):
    """One panel: regions coloured by their value, outlined, named; returns the mappable for a colour bar."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap = matplotlib.colormaps[panel.cmap]
    norm = Normalize(vmin=panel.vmin, vmax=panel.vmax if panel.vmax > panel.vmin else panel.vmin + 1e-9)
    image = np.empty((*template.labels.shape, 4))
    image[:] = BACKGROUND
    for r, region in enumerate(template.regions):
        value = panel.values.get(region)
        colour = MISSING if value is None or not np.isfinite(value) else cmap(norm(value))
        image[template.labels == r] = colour
    ax.imshow(image, interpolation="nearest")
    for r, region in enumerate(template.regions):
        if (template.occupancy[r] >= 0.5).any():
            ax.contour(template.occupancy[r], levels=[0.5], colors="k", linewidths=0.6)
        where = label_position(template.labels == r)
        if where is not None:
            value = panel.values.get(region)
            text = region if value is None or not np.isfinite(value) else f"{region}\n{value:.2f}"
            ax.text(where[1], where[0], text, ha="center", va="center", fontsize=6.5)
    ax.set_title(panel.title, fontsize=9)
    ax.set_axis_off()
    return ScalarMappable(norm=norm, cmap=cmap)


def heatmap_figure(path: Path, template: FaceTemplate, panels: Sequence[Panel], suptitle: str) -> Path:
    """The panels side by side, each with its colour bar."""
    from facebias.reporting.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.9), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        mappable = paint(ax, template, panel)
        bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(panel.label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, path)


def patch_figure(path: Path, regions: Sequence[str], patches: Sequence[Sequence[Mapping]], pixels: torch.Tensor,
                 groups: np.ndarray, size: int, group_name: str = "protected") -> Path:
    """One row per region: its top patches (size x size at model input size), framed by protected group."""
    from facebias.reporting.plots import GROUP_COLOURS, pyplot, save_figure

    plt = pyplot()
    columns = max(1, max((len(p) for p in patches), default=1))
    fig, axes = plt.subplots(len(regions), columns, figsize=(0.9 * columns + 1.2, 0.95 * len(regions) + 0.4),
                             squeeze=False)
    pixels = torch.as_tensor(pixels)
    size = min(size, pixels.shape[1], pixels.shape[2])
    for r, region in enumerate(regions):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(patches[r]):
                p = patches[r][c]
                crop = pixels[p["image"], p["top"]:p["top"] + size, p["left"]:p["left"] + size].numpy()
                ax.imshow(crop, interpolation="nearest")
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color(GROUP_COLOURS[int(groups[p["image"]])])
                    spine.set_linewidth(2)
            if c == 0:
                ax.set_ylabel(region, rotation=0, ha="right", va="center", fontsize=8)
    names = [colour.replace("tab:", "") for colour in GROUP_COLOURS]
    fig.suptitle(f"top patches per region ({size}x{size} px at model input size; frame: {group_name}=0 "
                 f"{names[0]}, =1 {names[1]})", fontsize=8)
    return save_figure(fig, path)
