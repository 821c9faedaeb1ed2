"""The number a sweeper optimises: one entry of the metrics `train(cfg)` returns, named like a logged key.

`optimized_metric: val/AP` in conf/train.yaml reads `metrics["val"]["AP"]`; any nested number can be named
the same way (`test/gap`, `test_gap/gap`, `val/acc_y1_c0`).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any


class UnknownMetric(KeyError):
    """optimized_metric names no number of the run's metrics."""

    def __str__(self) -> str:  # KeyError would print the message quoted, escapes and all
        return str(self.args[0])


def metric_names(metrics: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every number in a nested metrics dict, as `a/b` paths (booleans and strings left out)."""
    names = []
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            names.extend(metric_names(value, prefix=f"{path}/"))
        elif isinstance(value, Real) and not isinstance(value, bool):
            names.append(path)
    return names


def metric_value(metrics: Mapping[str, Any], name: str) -> float:
    """`metric_value(metrics, "val/AP")` -> float(metrics["val"]["AP"]); UnknownMetric (a KeyError) lists the
    names there are."""
    node: Any = metrics
    for part in name.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            node = None
            break
        node = node[part]
    if node is None and name in metrics:  # a top-level key that itself holds a slash
        node = metrics[name]
    if not isinstance(node, Real) or isinstance(node, bool):
        available = ", ".join(metric_names(metrics)) or "none"
        raise UnknownMetric(f"optimized_metric={name!r} is not a number in the run's metrics; available: {available}")
    return float(node)
