"""Fairness metrics as Ramaswamy et al.'s reference computes them, with a fast vectorised bootstrap.

``fairness_report`` gives AP, DEO, BA (directional, its direction from the training split),
BA_ref (the reference's BA) and KL (point estimates and bootstrap median/std);
``calibrated_threshold`` picks the threshold on validation; ``cell_accuracy`` and
``stereotype_gap`` read a planted shortcut off the (target x concept) cells. Bad inputs raise
``MetricInputError`` (a ``ValueError``).
"""

from facebias.metrics.cells import cell_accuracy, stereotype_gap
from facebias.metrics.fairness import (
    average_precision,
    bias_amplification,
    bias_direction,
    calibrated_threshold,
    equal_opportunity_difference,
    fairness_report,
    predict,
    score_kl_divergences,
)
from facebias.metrics.validation import MetricInputError, MetricInputTypeError

__all__ = [
    "MetricInputError",
    "MetricInputTypeError",
    "average_precision",
    "bias_amplification",
    "bias_direction",
    "calibrated_threshold",
    "cell_accuracy",
    "equal_opportunity_difference",
    "fairness_report",
    "predict",
    "score_kl_divergences",
    "stereotype_gap",
]
