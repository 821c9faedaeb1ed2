"""The numbers of a region explanation: which faces, region masks, FaceX's per-region statistic, bootstrap
intervals per protected group, the top patch of each region in each image and the sanity correlation.

Per image i with map A_i (min-max normalised to [0, 1]), the high part is H_i = {A_i > t_i}, t_i the mean of
A_i's non-zero pixels (an all-zero map has no high part). For a region r with mask R_ir (the union of the Face
Dictionary's concepts of that region) the image's score is |H_i ∩ R_ir| / |R_ir|, and the region's score is
its mean over the images where R_ir is not empty. Everything here is plain numpy/torch on arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

GROUPS = (0, 1)


# ------------------------------------------------------------------------------------------- the faces

def select_images(targets: np.ndarray, protected: np.ndarray, target_class: int, limit: int | None, seed: int,
                  target_name: str = "target", protected_name: str = "protected") -> np.ndarray:
    """FaceX's selection: indices (ascending) of the images whose target equals ``target_class``, with equal
    numbers of protected 0 and 1 (the smaller group's size, at most limit // 2 each; a seeded draw within a group).
    """
    from facebias.dissect.selection import balanced_subset

    targets, protected = np.asarray(targets), np.asarray(protected)
    candidates = np.flatnonzero(targets == target_class)
    if len(candidates) == 0:
        found = ", ".join(f"{v:g}" for v in np.unique(targets)) or "none"
        raise ValueError(f"target_class={target_class}: no image has {target_name}={target_class} "
                         f"(values found: {found})")
    values = np.unique(protected[candidates])
    if not np.isin(values, GROUPS).all():
        shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:10])
        raise ValueError(f"the protected attribute {protected_name!r} must be binary (0/1); values found: {shown}. "
                         "Code it as 0/1 (or -1/1, true/false in a folder CSV) or choose another with data.protected=")
    counts = {g: int((protected[candidates] == g).sum()) for g in GROUPS}
    if min(counts.values()) == 0:
        raise ValueError(f"the images with {target_name}={target_class} are all in one protected group "
                         f"({protected_name}: {counts[0]} with 0, {counts[1]} with 1); the comparison needs both: "
                         "choose another split=, target_class= or data.protected=")
    each = min(counts.values())
    if limit is not None:
        if limit < 2:
            raise ValueError(f"max_images={limit}: need at least 2 (one image per protected group)")
        each = min(each, limit // 2)
    picked = balanced_subset(protected[candidates], 2 * each, seed)
    return candidates[picked]


# ------------------------------------------------------------------------------------------- regions

def region_masks(concept_masks: torch.Tensor, concept_regions: Sequence[str], regions: Sequence[str]) -> torch.Tensor:
    """(n, C, S, S) concept masks -> (n, R, S, S) bool: each region the union of its concepts (empty when the
    dictionary has none of them)."""
    concept_masks = torch.as_tensor(concept_masks).bool()
    n, _, h, w = concept_masks.shape
    out = torch.zeros(n, len(regions), h, w, dtype=torch.bool)
    for r, region in enumerate(regions):
        members = [c for c, name in enumerate(concept_regions) if name == region]
        if members:
            out[:, r] = concept_masks[:, members].any(dim=1)
    return out


def high_attention(cams: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(n, H, W) bool: each map min-max normalised, then above the mean of its non-zero pixels."""
    cams = torch.as_tensor(np.asarray(cams), dtype=torch.float64)
    flat = cams.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1.0), torch.zeros_like(flat))
    nonzero = scaled > 0
    count = nonzero.sum(dim=1, keepdim=True)
    threshold = (scaled * nonzero).sum(dim=1, keepdim=True) / count.clamp(min=1)
    above = (scaled > threshold) & (count > 0)
    return above.reshape(cams.shape)


def region_scores(high: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """(n, R) float64: |high ∩ region| / |region| per image and region; NaN where the region is empty."""
    high, masks = torch.as_tensor(high).bool(), torch.as_tensor(masks).bool()
    if high.shape[-2:] != masks.shape[-2:] or high.shape[0] != masks.shape[0]:
        raise ValueError(f"maps {tuple(high.shape)} and region masks {tuple(masks.shape)} must cover the same "
                         "images at the same size")
    inside = (masks & high[:, None]).flatten(2).sum(dim=2).double()
    size = masks.flatten(2).sum(dim=2).double()
    return torch.where(size > 0, inside / size.clamp(min=1), torch.full_like(size, float("nan"))).numpy()


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def group_statistics(per_image: np.ndarray, groups: np.ndarray, regions: Sequence[str], n_bootstrap: int = 1000,
                     seed: int = 0, level: float = 0.95) -> list[dict[str, Any]]:
    """One row per region: the score over all images, per protected group, and group 1 - group 0, each with a
    percentile bootstrap interval (images resampled with replacement within each group, seeded; ``level``
    coverage; none when n_bootstrap = 0); ``n``: images where the region exists."""
    per_image, groups = np.asarray(per_image, dtype=np.float64), np.asarray(groups)
    members = [np.flatnonzero(groups == g) for g in GROUPS]
    means = {g: _nanmean(per_image[m], 0) for g, m in zip(GROUPS, members, strict=True)}
    overall = _nanmean(per_image, 0)
    draws: dict[str, list[np.ndarray]] = {"all": [], "g0": [], "g1": [], "diff": []}
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // max(1, per_image.size))
    for first in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - first)
        picks = [m[rng.integers(0, len(m), size=(b, len(m)))] for m in members]
        g0, g1 = _nanmean(per_image[picks[0]], 1), _nanmean(per_image[picks[1]], 1)
        draws["g0"].append(g0)
        draws["g1"].append(g1)
        draws["diff"].append(g1 - g0)
        draws["all"].append(_nanmean(per_image[np.concatenate(picks, axis=1)], 1))
    tail = 100 * (1 - level) / 2
    bounds = {}
    for key, parts in draws.items():
        if parts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                bounds[key] = np.nanpercentile(np.concatenate(parts), [tail, 100 - tail], axis=0)
    rows = []
    for r, region in enumerate(regions):
        point = {"all": overall[r], "g0": means[0][r], "g1": means[1][r], "diff": means[1][r] - means[0][r]}
        row: dict[str, Any] = {"region": region, "n": int(np.isfinite(per_image[:, r]).sum()),
                               "n_g0": int(np.isfinite(per_image[members[0], r]).sum()),
                               "n_g1": int(np.isfinite(per_image[members[1], r]).sum())}
        for key, value in point.items():
            row[key] = float(value)
            low, high = bounds[key][:, r] if key in bounds else (np.nan, np.nan)
            row[f"{key}_low"], row[f"{key}_high"] = float(low), float(high)
        rows.append(row)
    return rows


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation over the pairs where both are finite; None when undefined (fewer than
    three pairs, or a constant side)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


# ------------------------------------------------------------------------------------------- patches

def top_patches(cams: np.ndarray, masks: torch.Tensor, k: int, size: int = 16,
                chunk: int = 256) -> list[list[dict[str, Any]]]:
    """Per region, the k images whose best size x size window holds the most CAM mass inside the region:
    [{image, top, left, mass}], best first. One window per image (the best), so one face fills one slot."""
    cams_t = torch.as_tensor(np.asarray(cams), dtype=torch.float32)
    masks = torch.as_tensor(masks).bool()
    n, n_regions, h, w = masks.shape
    size = min(size, h, w)
    best_mass = torch.empty(n, n_regions)
    best_at = torch.empty(n, n_regions, dtype=torch.int64)
    for start in range(0, n, chunk):
        part = cams_t[start:start + chunk, None] * masks[start:start + chunk]
        pooled = F.avg_pool2d(part.flatten(0, 1)[:, None], size, stride=1) * (size * size)
        pooled = pooled.reshape(part.shape[0], n_regions, -1)
        mass, at = pooled.max(dim=2)
        best_mass[start:start + chunk], best_at[start:start + chunk] = mass, at
    width = w - size + 1
    out = []
    for r in range(n_regions):
        order = torch.argsort(best_mass[:, r], descending=True, stable=True)[:k]
        out.append([{"image": int(i), "top": int(best_at[i, r]) // width, "left": int(best_at[i, r]) % width,
                     "mass": float(best_mass[i, r])} for i in order if best_mass[i, r] > 0])
    return out


def score_table(rows: Sequence[Mapping[str, Any]], random_scores: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """The rows of region_scores.csv: group_statistics' rows plus the randomised model's score."""
    table = []
    for row in rows:
        entry = dict(row)
        if random_scores is not None:
            entry["random_weights"] = random_scores.get(row["region"])
        table.append(entry)
    return table
