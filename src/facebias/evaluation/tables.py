"""The evaluation tables as rows (for CSV and W&B alike): per attribute, per cell, per category, per sweep run.

Percent scale as in the paper's tables: AP, DEO, BA, BA_ref, accuracy and the cell accuracies/gap are
x100; KL is unscaled. metrics.json keeps every value as a fraction. BA is directional bias
amplification with its direction from the training split; BA_ref is the reference's BA (direction
from the test split itself, hence 0 on a cell-balanced test split).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from facebias.evaluation.attributes import category_of

METRICS = ("AP", "DEO", "BA", "BA_ref", "KL")
PERCENT = {"AP", "DEO", "BA", "BA_ref"}
SUFFIXES = ("", "_median", "_std")
CELL_MEANING = {"y1_c1": (1, 1), "y1_c0": (1, 0), "y0_c1": (0, 1), "y0_c0": (0, 0)}


def _scaled(metric: str, value: float | None) -> float | None:
    """Percent for AP, DEO, BA, BA_ref (x100); None and NaN pass through (metrics.json stores NaN as null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return value
    return 100 * value if metric in PERCENT else value


def _percent(value: float | None) -> float | None:
    return _scaled("AP", value)


def metric_columns() -> list[str]:
    return [f"{m}{suffix}" for m in METRICS for suffix in SUFFIXES]


def attribute_row(name: str, head: Mapping[str, Any]) -> dict[str, Any]:
    """One head's line: threshold, AP/DEO/BA/BA_ref (x100) and KL (point, median, std), accuracy and gap (x100)."""
    test = head["test"]
    row: dict[str, Any] = {"attribute": name, "category": category_of(name) or "", "threshold": head["threshold"],
                           "n_test": test["n"]}
    for metric in METRICS:
        for suffix in SUFFIXES:
            row[metric + suffix] = _scaled(metric, test.get(metric + suffix))
    row["accuracy"] = _percent(test["accuracy"])
    gap = head["gap"]
    row["stereotypical_acc"] = _percent(gap["stereotypical"])
    row["counter_stereotypical_acc"] = _percent(gap["counter_stereotypical"])
    row["gap"] = _percent(gap["gap"])
    row["stereotype"] = head["stereotype"]["direction"]
    return row


def attribute_rows(heads: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [attribute_row(name, head) for name, head in heads.items()]


def cell_rows(heads: Mapping[str, Mapping[str, Any]], cell_by: str) -> list[dict[str, Any]]:
    """Long format: one line per (head, cell) with the accuracy (x100) at the calibrated threshold."""
    rows = []
    for name, head in heads.items():
        for key, cell in head["cells"].items():
            target, value = CELL_MEANING[key]
            rows.append({"attribute": name, "cell": key, "target": target, "cell_by": cell_by, "cell_value": value,
                         "accuracy": _percent(cell["accuracy"]), "count": cell["count"]})
    return rows


def category_rows(categories: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, entry in categories.items():
        if name == "uncategorised":
            continue
        row: dict[str, Any] = {"category": name, "n_attributes": entry["n"],
                               "attributes": " ".join(entry["attributes"]), "missing": " ".join(entry["missing"])}
        for metric in METRICS:
            for suffix in SUFFIXES:
                row[metric + suffix] = _scaled(metric, entry.get(metric + suffix))
        rows.append(row)
    return rows
