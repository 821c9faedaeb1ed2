"""Atomic JSON and CSV files: written under a temporary name and renamed, so a crash never leaves half a file."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> Path:
    """Strict JSON (NaN and inf become null) through a temporary name."""
    return write_text_atomic(path, json.dumps(json_safe(payload), indent=2, default=float) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def json_safe(value: Any) -> Any:
    """NaN and inf -> None, recursively, so JSON files are strict (jq, JavaScript and W&B read them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        return json_safe(value.item())
    return value


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Rows (dicts) as CSV through a temporary name; missing values are empty cells."""
    path = Path(path)
    columns = list(columns or (rows[0].keys() if rows else []))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    os.replace(tmp, path)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def portable_path(path: str | Path, root: str | Path | None) -> str:
    """``path`` relative to ``root`` when it lies under it (tables committed to a repo must not hold the
    paths of the machine they were made on), else unchanged."""
    if root is None:
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def files_under(out: Path, *also: str) -> list[str]:
    """The files a stage wrote into ``out`` (relative names, W&B's own folder left out), plus ``also``."""
    out = Path(out)
    found = {str(p.relative_to(out)) for p in out.rglob("*")
             if p.is_file() and "wandb" not in p.relative_to(out).parts and not p.name.startswith(".")}
    return sorted(found | set(also))
