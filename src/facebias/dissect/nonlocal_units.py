"""Units biased for non-local concepts (gender, age, skin tone, grayscale): image groups, not masks.

Rule. A unit's response to an image is its activation map averaged over space. For a group g
(an image attribute, 0/1) the unit is *biased for g* when the standardized mean difference of that
response between g = 1 and g = 0 images,

    d = (mean_1 - mean_0) / s_pooled,   s_pooled^2 = ((n_1 - 1) s_1^2 + (n_0 - 1) s_0^2) / (n_1 + n_0 - 2)

(Cohen's d with sample variances), exceeds BIAS_THRESHOLD = 0.8 in absolute value: Cohen's
conventional "large" effect, at which the two groups' response distributions overlap by about half.
The sign says which group drives the unit (d > 0: the g = 1 group, e.g. men for Male).
A unit whose response is constant in both groups has d = 0 when the means agree and +-inf when they
differ; a group with fewer than two images in either value gives d = NaN (not biased).

Only counts, sums and sums of squares are accumulated, in float64 during the first dissection pass,
so the rule costs no extra pass over the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

BIAS_THRESHOLD = 0.8


@dataclass
class GroupActivationStats:
    """Per-group running sums of spatially averaged unit activations for one layer."""

    group_names: tuple[str, ...]
    count: torch.Tensor  # (G, 2) float64: images with g = 0 and g = 1
    total: torch.Tensor  # (G, 2, U) float64: sum of responses
    total_sq: torch.Tensor  # (G, 2, U) float64: sum of squared responses

    @classmethod
    def empty(
        cls, group_names: tuple[str, ...], units: int, device: torch.device | str = "cpu"
    ) -> GroupActivationStats:
        g = len(group_names)
        zeros = dict(dtype=torch.float64, device=device)
        return cls(
            group_names,
            torch.zeros(g, 2, **zeros),
            torch.zeros(g, 2, units, **zeros),
            torch.zeros(g, 2, units, **zeros),
        )

    def update(self, responses: torch.Tensor, groups: torch.Tensor) -> None:
        """Add a batch: responses (B, U) spatial means, groups (B, G) 0/1."""
        responses = responses.to(torch.float64)
        in_group = groups.to(dtype=torch.float64, device=responses.device)  # (B, G)
        everyone = torch.ones_like(in_group)
        for value, weight in ((1, in_group), (0, everyone - in_group)):
            self.count[:, value] += weight.sum(0)
            self.total[:, value] += weight.T @ responses
            self.total_sq[:, value] += weight.T @ responses.square()

    def joined(self, other: GroupActivationStats) -> GroupActivationStats:
        """These groups and ``other``'s side by side (same layer, same units)."""
        clash = set(self.group_names) & set(other.group_names)
        if clash:
            raise ValueError(f"groups {sorted(clash)} are in both statistics")
        device = self.count.device
        return GroupActivationStats(self.group_names + other.group_names,
                                    torch.cat([self.count, other.count.to(device)]),
                                    torch.cat([self.total, other.total.to(device)]),
                                    torch.cat([self.total_sq, other.total_sq.to(device)]))

    def means(self) -> torch.Tensor:
        """(G, 2, U) mean response of the g = 0 and g = 1 images."""
        return self.total / self.count[..., None]

    def cohens_d(self) -> torch.Tensor:
        """(G, U) standardized mean difference (g = 1 minus g = 0) per group and unit."""
        n0, n1 = self.count[:, 0, None], self.count[:, 1, None]
        mean = self.means()
        var = (self.total_sq - self.count[..., None] * mean.square()) / (self.count[..., None] - 1)
        var = var.clamp_min(0.0)
        pooled = ((n0 - 1) * var[:, 0] + (n1 - 1) * var[:, 1]) / (n0 + n1 - 2)
        diff = mean[:, 1] - mean[:, 0]
        d = diff / pooled.sqrt()
        d = torch.where((pooled == 0) & (diff == 0), torch.zeros_like(d), d)
        too_few = (n0 < 2) | (n1 < 2)
        return torch.where(too_few.expand_as(d), torch.full_like(d, float("nan")), d)


def biased_units(
    stats: Mapping[str, GroupActivationStats],
    threshold: float = BIAS_THRESHOLD,
) -> list[dict]:
    """One row per (layer, unit, group): Cohen's d, the two group means and whether |d| > threshold."""
    if threshold <= 0:
        raise ValueError(f"threshold on |Cohen's d| must be positive, got {threshold}")
    rows: list[dict] = []
    for layer, layer_stats in stats.items():
        d = layer_stats.cohens_d().cpu()
        means = layer_stats.means().cpu()
        for gi, group in enumerate(layer_stats.group_names):
            for unit in range(d.shape[1]):
                value = float(d[gi, unit])
                rows.append(
                    {
                        "layer": layer,
                        "unit": unit,
                        "group": group,
                        "cohens_d": value,
                        "mean_1": float(means[gi, 1, unit]),
                        "mean_0": float(means[gi, 0, unit]),
                        "biased": bool(abs(value) > threshold),  # NaN compares False
                    }
                )
    return rows


def biased_unit_counts(
    stats: Mapping[str, GroupActivationStats], threshold: float = BIAS_THRESHOLD
) -> list[dict]:
    """Number of biased units per (layer, group), split by the sign of d."""
    counts = []
    for layer, layer_stats in stats.items():
        d = layer_stats.cohens_d().cpu()
        for gi, group in enumerate(layer_stats.group_names):
            counts.append(
                {
                    "layer": layer,
                    "group": group,
                    "units": int(d.shape[1]),
                    "biased": int((d[gi].abs() > threshold).sum()),
                    "biased_toward_1": int((d[gi] > threshold).sum()),
                    "biased_toward_0": int((d[gi] < -threshold).sum()),
                }
            )
    return counts


def probe_group_stats(net: torch.nn.Module, layers: Sequence[str], inputs: torch.Tensor, groups: torch.Tensor,
                      group_names: Sequence[str], batch_size: int = 128,
                      device: torch.device | str = "cpu") -> dict[str, GroupActivationStats]:
    """The group statistics of ``layers`` on images the dissection did not use (the grayscale probe): inputs
    (N, C, H, W) in the model's input space, groups (N, G) 0/1; the same spatial-mean responses and sums."""
    from facebias.dissect.layers import ActivationRecorder

    if len(inputs) != len(groups):
        raise ValueError(f"{len(inputs)} probe images but {len(groups)} group rows")
    recorder = ActivationRecorder(net, list(layers))
    stats: dict[str, GroupActivationStats] = {}
    with torch.no_grad(), recorder.attached():
        for start in range(0, len(inputs), batch_size):
            outputs = recorder(inputs[start:start + batch_size].to(device))
            for name, acts in outputs.items():
                if name not in stats:
                    stats[name] = GroupActivationStats.empty(tuple(group_names), acts.shape[1], acts.device)
                stats[name].update(acts.mean(dim=(2, 3)), groups[start:start + batch_size])
    return stats
