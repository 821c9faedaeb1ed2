"""Attributes read off the pixels, behind a classifier's interface: the de-biasing stage's f_g for grayscale.

Grayscale is not something a face has but something done to its photo (the planted grayscale of the grayscale
family), so telling it needs no training: ``GrayscaleRule`` answers it exactly from each face's channel spread
(``facebias.data.transforms.channel_spread``, the definition the GAN's quality figures use too). It has what the
stage asks of a classifier (``targets``, ``preprocess``, logits), so ``score_images`` labels generated faces with
it like with any trained head; its decision threshold is 0.5 by construction (logit = tolerance - spread).

A GAN's grayscale faces are not exactly grayscale (a faint tint remains: measured spreads 10-15 against 0 for the
planted grayscale and >= 26 for 99.5 % of SynthFaces' colour photos), so the tolerance can be calibrated on the
generated faces themselves (``tolerance=None``, "auto"): Otsu's threshold of their log spreads (log(1 + spread):
the colour mode is long-tailed, 26-90, and a cut on the linear scale falls inside it), refused when it lies among
the real colour photos' spreads (then the generator has not learnt two modes the rule could tell apart).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from facebias.data.bias import GRAYSCALE
from facebias.data.transforms import GRAY_TOLERANCE, channel_spread


class GrayscaleRuleError(ValueError):
    """The generated faces do not split into grayscale and colour by channel spread."""


def otsu_threshold(values: np.ndarray) -> tuple[float, float]:
    """(threshold, eta): the cut of 1-d ``values`` into two classes with the largest between-class variance
    (Otsu 1979, exact over the sorted values, not a histogram), halfway between the two values it falls between;
    eta = between-class / total variance (1 for two point masses, 2/pi for one Gaussian)."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if len(x) < 2 or x[0] == x[-1]:
        raise GrayscaleRuleError(f"Otsu's threshold needs at least two distinct values, got {len(x)} "
                                 f"(all {x[0] if len(x) else 'absent'})")
    n = len(x)
    k = np.arange(1, n)  # the lower class is x[:k]
    low_sum = np.cumsum(x)[:-1]
    mean_low, mean_high = low_sum / k, (x.sum() - low_sum) / (n - k)
    between = (k / n) * ((n - k) / n) * (mean_low - mean_high) ** 2
    between[x[1:] == x[:-1]] = -1.0  # never cut between equal values
    best = int(np.argmax(between))
    return float((x[best] + x[best + 1]) / 2), float(between[best] / x.var())


class GrayscaleRule(nn.Module):
    """logit = tolerance - mean channel spread (0..255): positive exactly for faces under the tolerance.
    tolerance=None: calibrate it on generated faces first (``calibrate``)."""

    def __init__(self, tolerance: float | None = GRAY_TOLERANCE):
        super().__init__()
        if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, int | float)
                                      or not 0 < tolerance < 255):
            raise ValueError(f"grayscale tolerance={tolerance!r}: a channel spread in (0, 255), e.g. "
                             f"{GRAY_TOLERANCE} (exactly grayscale faces have 0), or auto")
        self.auto = tolerance is None
        self.tolerance = None if tolerance is None else float(tolerance)
        self.targets = [GRAYSCALE]

    def preprocess(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The rule reads the uint8 pixels themselves: nothing to normalise."""
        return batch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.tolerance is None:
            raise GrayscaleRuleError("the grayscale rule's tolerance is auto and not calibrated yet: call "
                                     "calibrate(generated faces, real colour faces) first")
        return (self.tolerance - channel_spread(images)).unsqueeze(1)

    def calibrate(self, generated: np.ndarray, real_colour: np.ndarray, quantile: float = 0.01,
                  strict: bool = True) -> dict[str, float]:
        """Set the tolerance to Otsu's threshold of the generated faces' log(1 + spread), unless it reaches the
        real colour photos' ``quantile`` (then no tolerance tells the generator's two kinds of faces apart: an
        error, or with ``strict=False`` that quantile is the tolerance, for a figure such as a GAN's grayscale
        rate during training)."""
        spread = channel_spread(torch.from_numpy(np.ascontiguousarray(generated))).numpy()
        colour = channel_spread(torch.from_numpy(np.ascontiguousarray(real_colour))).numpy()
        log_threshold, eta = otsu_threshold(np.log1p(spread))
        threshold = float(np.expm1(log_threshold))
        floor = float(np.quantile(colour, quantile))
        found = {"tolerance": threshold, "otsu_eta": eta, "generated_gray_rate": float(np.mean(spread < threshold)),
                 "real_colour_quantile": floor, "quantile": quantile}
        if threshold >= floor:
            if strict:
                raise GrayscaleRuleError(
                    f"the generated faces do not split into grayscale and colour by channel spread: Otsu's "
                    f"threshold {threshold:.1f} is at or above the spread of {quantile:.0%} of the real colour "
                    f"photos ({floor:.1f}); train the GAN longer (its grayscale faces should have a spread well "
                    "below the colour ones) or set debias.grayscale_tolerance=<a spread> by hand")
            threshold = floor
            found.update(tolerance=floor, generated_gray_rate=float(np.mean(spread < floor)), capped=True)
        self.tolerance = threshold
        return found

    def describe(self) -> dict[str, float | str]:
        """What the rule is, for cache keys and reports (it has no run or checkpoint)."""
        return {"rule": "grayscale: mean channel spread < tolerance",
                "tolerance": "auto" if self.auto else self.tolerance}
