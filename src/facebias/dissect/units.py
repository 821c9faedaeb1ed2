"""Unit-concept pairing: NetDissect's IoU between thresholded unit maps and Face Dictionary masks.

Definition (Bau et al., CVPR 2017, as NetDissect-Lite computes it):

- T_u, the threshold of unit u, is its top-``quantile`` activation over every spatial position of
  every dictionary image, at the layer's own resolution.
- M_u(x) = [upsample(A_u(x)) > T_u], the activation map upsampled BILINEARLY to the mask size
  (``F.interpolate(align_corners=False)``, the half-pixel convention of an image resize).
- IoU(u, c) = sum_x |M_u(x) & L_c(x)| / sum_x |M_u(x) | L_c(x)|, sums over all dictionary images
  (not a mean of per-image IoUs); an empty union gives 0.
- A unit is a detector of its best concept when that IoU > ``iou_threshold`` (0.04).
- Concept- vs region-level (HiND): a detector is **concept-level** when its IoU with its concept c
  exceeds (1 + ``region_margin``) times its best IoU with the other concepts of c's face region
  (default margin 0.5: half as much again as any sibling; no sibling: concept-level), else
  **region-level**: it responds to the region about as much as to the concept (``level_rule``).

Exact thresholds. With N images and an (h, w) map there are N*h*w values per unit; K =
ceil(quantile * N*h*w) and T_u is the K-th largest value (sorted ascending and 0-based, index
N*h*w - K = floor((1 - quantile) * N*h*w)). Pass 1 keeps a running top-k per unit with k from an
upper bound on N, merging each batch with ``torch.topk`` on the concatenation, so memory is
O(units * k) and T_u is exact, not estimated. Relation to other conventions: ``torch.quantile(x,
1 - q, interpolation='lower')`` takes index floor((1 - q)(Nhw - 1)): the same order statistic as
T_u or the one just below it (never more than one rank apart). NetDissect-Lite reads entry
int(1000 (1 - q) - 1) of a 1000-point readout of a streaming quantile sketch, i.e. level 994/999 =
0.994995 for q = 0.005, interpolated between sketch samples: its threshold carries the sketch's
approximation error (not bounded there), while this one is exact. With no ties, exactly K - 1
positions per unit lie strictly above T_u at the layer's resolution. A unit that is zero on more
than 1 - quantile of all positions (a sparse ReLU) gets T_u = 0 and is on wherever its upsampled
map is positive, as in NetDissect.

Absent concepts. Every dictionary image is annotated for every concept (an absent attribute is a
known-empty mask), so a unit's area counts in every image's union, which is NetDissect's rule for
a category labelled in all images.

Cost. Bilinear interpolation is a convex combination of the map's values, so an upsampled map can
exceed T_u only where the map's maximum does: pass 2 upsamples only the (image, unit) pairs whose
maximum is above T_u (at most K - 1 pairs per unit over the whole data set) and counts their
intersections with all concepts at once: the (units, B*S^2) x (B*S^2, C) product of the batch's
thresholded maps and masks, evaluated on the switched-on pixels only (one gather and one index_add
per batch, no loop over units); unions are |M_u| + |L_c| - intersection. Pass 1 caches the
activations and masks when they fit in ``cache_bytes``, and then pass 2 touches neither the model
nor the data again; otherwise the data is iterated a second time (it must then be re-iterable and
deterministic: same images, same order not required).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facebias.dissect.layers import ActivationRecorder
from facebias.dissect.nonlocal_units import (
    BIAS_THRESHOLD,
    GroupActivationStats,
    biased_unit_counts,
    biased_units,
)
from facebias.faces.concepts import CONCEPT_REGION

DEFAULT_QUANTILE = 0.005
DEFAULT_IOU_THRESHOLD = 0.04
DEFAULT_REGION_MARGIN = 0.5
LEVELS = ("concept", "region")


def level_rule(region_margin: float) -> str:
    """The concept-/region-level rule in words (dissect.json, reports)."""
    return (f"a detector of concept c is concept-level when IoU(u, c) > {1 + region_margin:g} x the largest IoU of "
            f"u with another concept of c's face region (region_margin={region_margin:g}; a concept alone in its "
            f"region: concept-level), otherwise region-level")
_PAIR_CHUNK_ELEMENTS = 1 << 22  # upsampled values held at once in pass 2 (16 MB of float32)


@dataclass
class LayerDissection:
    """Tallies of one layer; IoU, best concept and detector flags are derived from them."""

    layer: str
    concepts: tuple[str, ...]
    regions: tuple[str, ...]
    thresholds: torch.Tensor  # (U,) T_u
    intersection: torch.Tensor  # (U, C) sum |M_u & L_c|
    unit_area: torch.Tensor  # (U,) sum |M_u|
    concept_area: torch.Tensor  # (C,) sum |L_c|
    iou_threshold: float
    map_size: tuple[int, int]  # the layer's (h, w)
    region_margin: float = DEFAULT_REGION_MARGIN

    @property
    def sibling(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per unit, the best IoU with the other concepts of its best concept's region (U,), and which
        concept that is (U,) (-1 and IoU 0 where the region has no other concept)."""
        same = torch.tensor([[a != b and ra == rb for b, rb in enumerate(self.regions)]
                             for a, ra in enumerate(self.regions)], dtype=torch.bool).reshape(len(self.regions), -1)
        mine = same[self.best_concept]  # (U, C)
        masked = torch.where(mine, self.iou, torch.full_like(self.iou, -1.0))
        value, index = masked.max(dim=1)
        alone = ~mine.any(dim=1)
        return torch.where(alone, torch.zeros_like(value), value), torch.where(alone, -1, index)

    @property
    def concept_level(self) -> torch.Tensor:
        """(U,) detectors whose concept beats its region's other concepts by the margin (see level_rule)."""
        return self.detector & (self.best_iou > (1.0 + self.region_margin) * self.sibling[0])

    @property
    def region_level(self) -> torch.Tensor:
        return self.detector & ~self.concept_level

    @property
    def units(self) -> int:
        return self.thresholds.shape[0]

    @property
    def iou(self) -> torch.Tensor:
        """(U, C) dataset-wide IoU."""
        union = self.unit_area[:, None] + self.concept_area[None, :] - self.intersection
        return torch.where(union > 0, self.intersection / union.clamp_min(1), torch.zeros_like(union))

    @property
    def best_concept(self) -> torch.Tensor:
        return self.iou.argmax(dim=1)

    @property
    def best_iou(self) -> torch.Tensor:
        return self.iou.max(dim=1).values

    @property
    def detector(self) -> torch.Tensor:
        return self.best_iou > self.iou_threshold

    def rows(self) -> list[dict]:
        """One row per unit: its best concept, that concept's region and IoU, detector flag, T_u."""
        best, best_iou, detector = self.best_concept.tolist(), self.best_iou.tolist(), self.detector.tolist()
        thresholds = self.thresholds.tolist()
        sibling_iou, sibling = (t.tolist() for t in self.sibling)
        concept_level = self.concept_level.tolist()
        return [
            {
                "layer": self.layer,
                "unit": unit,
                "concept": self.concepts[best[unit]],
                "region": self.regions[best[unit]],
                "iou": best_iou[unit],
                "detector": detector[unit],
                "level": ("concept" if concept_level[unit] else "region") if detector[unit] else "",
                "sibling": self.concepts[sibling[unit]] if sibling[unit] >= 0 else "",
                "sibling_iou": sibling_iou[unit],
                "threshold": thresholds[unit],
            }
            for unit in range(self.units)
        ]

    def detectors_per_level(self) -> dict[str, int]:
        """Detectors by level: {"concept": concept-level, "region": region-level}."""
        return {"concept": int(self.concept_level.sum()), "region": int(self.region_level.sum())}

    def region_level_per_region(self) -> dict[str, int]:
        """Region-level detectors per face region (of their best concept)."""
        counts: dict[str, int] = {}
        for unit in torch.nonzero(self.region_level).flatten().tolist():
            region = self.regions[int(self.best_concept[unit])]
            counts[region] = counts.get(region, 0) + 1
        return counts

    def detectors_per_concept(self) -> dict[str, int]:
        counts = torch.bincount(self.best_concept[self.detector], minlength=len(self.concepts)).tolist()
        return dict(zip(self.concepts, counts, strict=True))

    def detectors_per_region(self) -> dict[str, int]:
        per_concept = self.detectors_per_concept()
        per_region: dict[str, int] = {}
        for concept, region in zip(self.concepts, self.regions, strict=True):
            per_region[region] = per_region.get(region, 0) + per_concept[concept]
        return per_region


@dataclass
class DissectionResult:
    """Every dissected layer, plus the non-local group statistics when groups were given."""

    layers: dict[str, LayerDissection]
    n_images: int
    quantile: float
    mask_size: int
    group_stats: dict[str, GroupActivationStats] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """Rows of units.csv: layer, unit, concept, region, iou, detector, threshold."""
        return [row for layer in self.layers.values() for row in layer.rows()]

    def count_rows(self) -> list[dict]:
        """Detector counts per layer, by concept, by region and by level (kind = 'concept' | 'region' | 'level';
        level rows are named 'concept' (concept-level detectors) and 'region' (region-level))."""
        rows = []
        for name, layer in self.layers.items():
            for concept, count in layer.detectors_per_concept().items():
                rows.append(
                    {
                        "layer": name,
                        "kind": "concept",
                        "name": concept,
                        "detectors": count,
                        "units": layer.units,
                    }
                )
            for region, count in layer.detectors_per_region().items():
                rows.append(
                    {
                        "layer": name,
                        "kind": "region",
                        "name": region,
                        "detectors": count,
                        "units": layer.units,
                    }
                )
            for level, count in layer.detectors_per_level().items():
                rows.append({"layer": name, "kind": "level", "name": level, "detectors": count, "units": layer.units})
        return rows

    def biased_units(self, threshold: float = BIAS_THRESHOLD) -> list[dict]:
        return biased_units(self.group_stats, threshold)

    def biased_unit_counts(self, threshold: float = BIAS_THRESHOLD) -> list[dict]:
        return biased_unit_counts(self.group_stats, threshold)

    def write_csv(self, directory: str | Path) -> dict[str, Path]:
        """Write units.csv, detectors.csv and (with groups) nonlocal_units.csv; return their paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tables = {"units": self.rows(), "detectors": self.count_rows()}
        if self.group_stats:
            tables["nonlocal_units"] = self.biased_units()
        paths = {}
        for name, rows in tables.items():
            path = directory / f"{name}.csv"
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["layer"])
                writer.writeheader()
                writer.writerows(rows)
            paths[name] = path
        return paths


def _count_images(batches: Iterable, n_images: int | None) -> int:
    """An upper bound on the number of images, needed before pass 1 to size the running top-k."""
    if n_images is not None:
        if n_images < 1:
            raise ValueError(f"n_images must be positive, got {n_images}")
        return int(n_images)
    for source in (
        getattr(batches, "n_images", None),
        getattr(getattr(batches, "dataset", None), "__len__", None),
    ):
        if isinstance(source, int):
            return source
        if callable(source):
            return int(source())
    if isinstance(batches, Sequence):
        return sum(len(item[0]) for item in batches)
    raise ValueError(
        "dissect needs the number of images before the first pass (it sizes the exact running top-k); "
        "pass n_images=, or give a DataLoader (len(loader.dataset)), a list of batches or DictionaryBatches"
    )


def _unpack(item, n_groups: int, batch_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(
            f"batch {batch_index}: expected (images, masks) or (images, masks, groups), got {type(item).__name__}"
            + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        )
    images, masks = item[0], item[1]
    groups = item[2] if len(item) == 3 else None
    if masks.ndim != 4 or masks.shape[-1] != masks.shape[-2] or masks.shape[0] != images.shape[0]:
        raise ValueError(
            f"batch {batch_index}: masks must be (B, concepts, S, S) with B = {images.shape[0]} images; "
            f"got {tuple(masks.shape)}"
        )
    if masks.dtype != torch.bool:
        if masks.is_floating_point() or not ((masks == 0) | (masks == 1)).all():
            raise ValueError(f"batch {batch_index}: masks must be bool (or 0/1 integers), got {masks.dtype}")
        masks = masks.bool()
    if n_groups:
        if groups is None or groups.shape != (images.shape[0], n_groups):
            shape = None if groups is None else tuple(groups.shape)
            raise ValueError(
                f"batch {batch_index}: group_names has {n_groups} names, so each batch needs "
                f"groups of shape ({images.shape[0]}, {n_groups}); got {shape}"
            )
    return images, masks, groups if n_groups else None


def _top_count(quantile: float, values: int) -> int:
    """K = ceil(quantile * values), robust to the binary representation of the quantile."""
    return max(1, math.ceil(round(quantile * values, 6)))


class _LayerTally:
    """Pass-1 state (running top-k, group sums) then pass-2 state (intersections, areas) of one layer."""

    def __init__(self, quantile: float, max_images: int):
        self.quantile = quantile
        self.max_images = max_images
        self.top: torch.Tensor | None = None
        self.keep = 0
        self.map_size: tuple[int, int] | None = None
        self.thresholds: torch.Tensor | None = None
        self.groups: GroupActivationStats | None = None

    def observe(
        self, name: str, acts: torch.Tensor, groups: torch.Tensor | None, group_names: tuple[str, ...]
    ) -> None:
        units, h, w = acts.shape[1:]
        if self.top is None:
            self.map_size = (h, w)
            self.keep = _top_count(self.quantile, self.max_images * h * w)
            self.top = acts.new_empty(units, 0)
            if group_names:
                self.groups = GroupActivationStats.empty(group_names, units, acts.device)
        elif (h, w) != self.map_size or units != self.top.shape[0]:
            raise ValueError(
                f"layer {name!r} gave maps of {(units, h, w)} after {(self.top.shape[0], *self.map_size)}: "
                f"all images must have the same size"
            )
        values = torch.cat([self.top, acts.transpose(0, 1).reshape(units, -1)], dim=1)
        self.top = values.topk(min(self.keep, values.shape[1]), dim=1, sorted=False).values
        if self.groups is not None and groups is not None:
            self.groups.update(acts.mean(dim=(2, 3)), groups)

    def finish_thresholds(self, name: str, n_images: int) -> None:
        h, w = self.map_size
        k = _top_count(self.quantile, n_images * h * w)
        if k > self.keep:
            raise ValueError(
                f"the data held {n_images} images, more than the {self.max_images} announced "
                f"(n_images); the running top-k of layer {name!r} is too short to be exact"
            )
        self.thresholds = self.top.topk(k, dim=1).values[:, -1].contiguous()
        self.top = None

    def start_tally(self, concepts: int, device: torch.device) -> None:
        units = self.thresholds.shape[0]
        self.intersection = torch.zeros(units, concepts, dtype=torch.float64, device=device)
        self.unit_area = torch.zeros(units, dtype=torch.float64, device=device)

    def tally(self, acts: torch.Tensor, masks: torch.Tensor) -> None:
        """Add one batch's |M_u & L_c| and |M_u| for every unit and concept.

        Only (image, unit) pairs whose map maximum exceeds T_u are upsampled (bilinear values are
        convex combinations, so no other pair has a pixel above T_u). For each pixel switched on,
        the concept row of the mask at that pixel is added to the unit's intersection counts: the
        product (units, B*S^2) x (B*S^2, C) restricted to its non-zero entries, in one index_add.
        """
        size = masks.shape[-1]
        active = acts.amax(dim=(2, 3)) > self.thresholds[None, :]  # (B, U)
        image_index, unit_index = active.nonzero(as_tuple=True)
        if image_index.numel() == 0:
            return
        concept_rows = masks.permute(0, 2, 3, 1).reshape(-1, masks.shape[1])  # (B*S^2, C) bool
        intersection = torch.zeros_like(self.intersection, dtype=torch.float32)
        chunk = max(1, _PAIR_CHUNK_ELEMENTS // (size * size))
        for start in range(0, image_index.numel(), chunk):  # bounds memory, not a loop over units
            images, units = image_index[start : start + chunk], unit_index[start : start + chunk]
            maps = acts[images, units].unsqueeze(1).to(torch.float32)
            upsampled = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
            on = upsampled.flatten(1) > self.thresholds[units, None]  # (P, S^2)
            pair, pixel = on.nonzero(as_tuple=True)
            self.unit_area.index_add_(0, units, on.sum(dim=1, dtype=torch.float64))
            rows = concept_rows[images[pair] * (size * size) + pixel].to(torch.float32)  # (on pixels, C)
            intersection.index_add_(0, units[pair], rows)
            self.intersection += intersection.to(torch.float64)  # float32 counts < 2^24: exact
            intersection.zero_()


def _is_one_shot(batches: Iterable) -> bool:
    """Iterators and generators run once; lists, DataLoaders and DictionaryBatches restart."""
    return isinstance(batches, Iterator)


def dissect(
    model: nn.Module,
    layer_names: Sequence[str],
    batches: Iterable,
    *,
    concepts: Sequence[str] | None = None,
    quantile: float = DEFAULT_QUANTILE,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    region_margin: float = DEFAULT_REGION_MARGIN,
    device: str | torch.device = "cpu",
    n_images: int | None = None,
    group_names: Sequence[str] | None = None,
    cache_bytes: int = 1 << 30,
) -> DissectionResult:
    """Dissect ``layer_names`` of ``model`` on a Face Dictionary.

    batches: iterable of (images (B, 3, H, W) float, masks (B, C, S, S) bool) or, with non-local
    groups, (images, masks, groups (B, G) 0/1). concepts names the C mask channels (default:
    ``batches.concepts``); group_names the G group columns (default: ``batches.group_names``).
    region_margin: how much a detector's concept must beat its region's other concepts to be concept-level
    (``level_rule``).
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1) (the top fraction of activations), got {quantile}")
    if not region_margin >= 0.0:
        raise ValueError(f"region_margin must be >= 0 (0: any lead over the region's other concepts), got {region_margin}")
    concepts = tuple(concepts if concepts is not None else getattr(batches, "concepts", ()))
    if not concepts:
        raise ValueError("name the mask channels: pass concepts= (e.g. dictionary.concepts)")
    group_names = tuple(group_names if group_names is not None else getattr(batches, "group_names", ()))
    max_images = _count_images(batches, n_images)
    device = torch.device(device)
    one_shot = _is_one_shot(batches)

    model = model.to(device)
    was_training = model.training
    model.eval()
    recorder = ActivationRecorder(model, layer_names)
    tallies = {name: _LayerTally(quantile, max_images) for name in layer_names}
    concept_area = torch.zeros(len(concepts), dtype=torch.float64, device=device)
    cache: list[tuple[dict[str, torch.Tensor], torch.Tensor]] | None = []
    cached_bytes = 0
    seen = 0
    mask_size = None
    try:
        with torch.no_grad(), recorder.attached():
            for index, item in enumerate(batches):  # pass 1: thresholds, group sums, concept areas
                images, masks, groups = _unpack(item, len(group_names), index)
                if masks.shape[1] != len(concepts):
                    raise ValueError(
                        f"batch {index}: masks have {masks.shape[1]} channels for {len(concepts)} concepts {concepts}"
                    )
                if mask_size is None:
                    mask_size = masks.shape[-1]
                elif masks.shape[-1] != mask_size:
                    raise ValueError(
                        f"batch {index}: masks are {masks.shape[-1]} pixels wide, earlier ones {mask_size}"
                    )
                masks = masks.to(device)
                acts = {name: a.float() for name, a in recorder(images.to(device)).items()}
                for name, a in acts.items():
                    tallies[name].observe(name, a, groups, group_names)
                concept_area += masks.sum(dim=(0, 2, 3), dtype=torch.float64)
                seen += images.shape[0]
                if cache is not None:
                    cached_bytes += masks.numel() + sum(a.numel() * a.element_size() for a in acts.values())
                    if cached_bytes <= cache_bytes:
                        cache.append((acts, masks))
                    else:
                        cache = None
                        if one_shot:
                            raise ValueError(
                                f"the batches are a one-shot iterator and their activations exceed cache_bytes="
                                f"{cache_bytes}; pass a re-iterable (list, DataLoader, DictionaryBatches) or raise cache_bytes"
                            )
            if seen == 0:
                raise ValueError("the batches were empty: nothing to dissect")
            for name, tally in tallies.items():
                tally.finish_thresholds(name, seen)
                tally.start_tally(len(concepts), device)

            if cache is not None:  # pass 2 from memory
                for acts, masks in cache:
                    for name, a in acts.items():
                        tallies[name].tally(a, masks)
            else:  # pass 2 over the data again
                seen_again = 0
                for index, item in enumerate(batches):
                    images, masks, _ = _unpack(item, len(group_names), index)
                    if masks.shape[1:] != (len(concepts), mask_size, mask_size):
                        raise ValueError(
                            f"second pass, batch {index}: masks changed shape to {tuple(masks.shape[1:])}; "
                            f"dissection needs a re-iterable, deterministic data source"
                        )
                    masks = masks.to(device)
                    for name, a in recorder(images.to(device)).items():
                        tallies[name].tally(a.float(), masks)
                    seen_again += images.shape[0]
                if seen_again != seen:
                    raise ValueError(
                        f"the second pass over the batches saw {seen_again} images, the first {seen}: "
                        f"dissection needs a re-iterable, deterministic data source"
                    )
    finally:
        model.train(was_training)

    regions = tuple(CONCEPT_REGION.get(c, "other") for c in concepts)
    layers = {
        name: LayerDissection(
            layer=name,
            concepts=concepts,
            regions=regions,
            thresholds=tally.thresholds.cpu(),
            intersection=tally.intersection.cpu(),
            unit_area=tally.unit_area.cpu(),
            concept_area=concept_area.cpu(),
            iou_threshold=iou_threshold,
            map_size=tally.map_size,
            region_margin=region_margin,
        )
        for name, tally in tallies.items()
    }
    group_stats = {name: tally.groups for name, tally in tallies.items() if tally.groups is not None}
    return DissectionResult(
        layers=layers, n_images=seen, quantile=quantile, mask_size=mask_size, group_stats=group_stats
    )


class DictionaryBatches:
    """Re-iterable (images, masks[, groups]) batches from an image tensor and a FaceDictionary.

    Masks are drawn per batch, so memory holds one batch of masks at a time.
    """

    def __init__(self, images: torch.Tensor, dictionary, batch_size: int = 128):
        if len(images) != len(dictionary):
            raise ValueError(f"{len(images)} images but the dictionary describes {len(dictionary)} faces")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.images = images
        self.dictionary = dictionary
        self.batch_size = batch_size
        self.concepts = dictionary.concepts
        self.group_names = tuple(dictionary.groups)
        self.n_images = len(images)

    def __len__(self) -> int:
        return math.ceil(self.n_images / self.batch_size)

    def __iter__(self):
        for start in range(0, self.n_images, self.batch_size):
            index = slice(start, start + self.batch_size)
            masks = self.dictionary.masks_for(index)
            if self.group_names:
                yield self.images[index], masks, self.dictionary.group_matrix(index)
            else:
                yield self.images[index], masks
