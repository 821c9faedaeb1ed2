"""Read a generic annotated image folder (image root + CSV of relative paths and binary labels).

This is the layout other audit tools accept: one CSV row per image, a column of paths relative to the
image root, binary label columns written as 0/1, -1/1 or true/false, an optional split column
(train/val/test or 0/1/2; without one, a seeded random split) and optional landmark columns with
CelebA's names (lefteye_x, lefteye_y, ...). Row numbers in errors are the CSV's line numbers (the
header is line 1), so they match what a text editor shows.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

import numpy as np

from facebias.data.celeba import LANDMARK_COLUMNS
from facebias.data.table import SPLITS, FaceTable
from facebias.faces.geometry import LANDMARK_NAMES

_TRUE = {"1", "+1", "true"}
_FALSE = {"0", "-1", "false"}
_SPLIT_VALUES = {"train": 0, "0": 0, "val": 1, "valid": 1, "validation": 1, "1": 1, "test": 2, "2": 2}


class FolderFormatError(ValueError):
    """The CSV or image folder is malformed; the message names the file, row, column and fix."""


def read_folder(
    image_root: str | Path,
    csv_path: str | Path,
    path_column: str = "path",
    label_columns: list[str] | tuple[str, ...] | None = None,
    split_column: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    require_splits: tuple[str, ...] = ("train",),
) -> FaceTable:
    """Read ``csv_path`` into a FaceTable with source "folder".

    ``label_columns=None`` takes every column that is not the path, split or a landmark column.
    Without ``split_column`` the rows are split at random (seeded) into val_fraction and
    test_fraction of the rows (rounded) and the rest for train. ``require_splits`` lists splits that
    must be non-empty (the data module asks for all three).
    """
    image_root, csv_path = Path(image_root), Path(csv_path)
    if not image_root.is_dir():
        raise FolderFormatError(f"image root {image_root} does not exist or is not a directory")
    if not csv_path.is_file():
        raise FolderFormatError(
            f"label CSV {csv_path} does not exist; expected a CSV with a {path_column!r} column of image "
            "paths relative to the image root and one column per binary label"
        )
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise FolderFormatError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 and sum to less than 1"
        )

    header, rows, line_numbers = _read_csv(csv_path)
    where = f"{csv_path}, line 1"
    for column in [path_column, *([split_column] if split_column else [])]:
        if column not in header:
            raise FolderFormatError(f"{where}: no column {column!r}; columns are {', '.join(header)}")
    landmark_present = [name for name in LANDMARK_COLUMNS if name in header]
    if landmark_present and len(landmark_present) != len(LANDMARK_COLUMNS):
        absent = [name for name in LANDMARK_COLUMNS if name not in header]
        raise FolderFormatError(
            f"{where}: landmark columns are partial, missing {', '.join(absent)}; give all ten "
            f"({', '.join(LANDMARK_COLUMNS)}) or none"
        )
    if label_columns is None:
        label_columns = [c for c in header if c not in {path_column, split_column, *LANDMARK_COLUMNS}]
    else:
        absent = [name for name in label_columns if name not in header]
        if absent:
            raise FolderFormatError(
                f"{where}: no label column {', '.join(map(repr, absent))}; columns are {', '.join(header)}"
            )
    column = {name: header.index(name) for name in header}

    filenames = _image_paths(image_root, csv_path, rows, line_numbers, column[path_column], path_column)
    attrs = np.empty((len(rows), len(label_columns)), dtype=np.uint8)
    for j, name in enumerate(label_columns):
        attrs[:, j] = _binary_column(csv_path, rows, line_numbers, column[name], name)
    if split_column:
        split = _split_column(csv_path, rows, line_numbers, column[split_column], split_column)
    else:
        split = _random_split(len(rows), seed, val_fraction, test_fraction)
    _require_splits(csv_path, split, require_splits, split_column, val_fraction, test_fraction)
    landmarks = (
        _landmark_columns(csv_path, rows, line_numbers, [column[c] for c in LANDMARK_COLUMNS])
        if landmark_present
        else None
    )
    return FaceTable(
        source="folder",
        image_dir=image_root,
        filenames=tuple(filenames),
        attr_names=tuple(label_columns),
        attrs=attrs,
        split=split,
        landmarks=landmarks,
        listed_in=csv_path,
        lines=np.array(line_numbers),
    )


def is_binary_label(value: str) -> bool:
    """A CSV cell the reader takes as a binary label: 0/1, -1/+1 or true/false (any case, spaces stripped)."""
    return value.strip().lower() in _TRUE | _FALSE


def column_values(csv_path: str | Path, columns: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """The distinct values (as written, first seen first) of each named column the CSV has; absent columns are
    left out. For checks that name every value of a column at once, before the table is read."""
    header, rows, _ = _read_csv(Path(csv_path))
    found: dict[str, list[str]] = {}
    for name in columns:
        if name in header and name not in found:
            col = header.index(name)
            found[name] = list(dict.fromkeys(row[col] for row in rows))
    return found


def _require_splits(
    csv_path: Path,
    split: np.ndarray,
    required: tuple[str, ...],
    split_column: str | None,
    val_fraction: float,
    test_fraction: float,
) -> None:
    """Fail naming the CSV, the empty split and what assigns it (the split column or the fractions)."""
    for name in required:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} in require_splits; use some of {list(SPLITS)}")
        if np.any(split == SPLITS[name]):
            continue
        counts = ", ".join(f"{int(np.sum(split == v))} {s}" for s, v in SPLITS.items())
        if split_column:
            raise FolderFormatError(
                f"{csv_path}: column {split_column!r} assigns no image to the {name} split ({counts}); "
                f"write {name} (or {SPLITS[name]}) on some rows, or leave split_column unset for a seeded "
                "random split"
            )
        if name == "train":
            asked = f"val_fraction={val_fraction:g}, test_fraction={test_fraction:g}"
            fix = "lower data.folder.val_fraction or data.folder.test_fraction"
        else:
            asked = f"{name}_fraction={val_fraction if name == 'val' else test_fraction:g}"
            fix = f"raise data.folder.{name}_fraction"
        raise FolderFormatError(
            f"{csv_path}: the seeded random split of its {len(split)} rows puts no image in the {name} split "
            f"({asked}; {counts}); {fix}, add rows, or give a split column (data.folder.split_column)"
        )


def _read_csv(csv_path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header or header == [""]:
            raise FolderFormatError(f"{csv_path} is empty; expected a header line of column names")
        duplicates = {name for name in header if header.count(name) > 1}
        if duplicates:
            raise FolderFormatError(
                f"{csv_path}, line 1: column(s) {', '.join(sorted(duplicates))} appear twice"
            )
        rows, line_numbers = [], []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise FolderFormatError(
                    f"{csv_path}, line {reader.line_num}: {len(row)} fields but the header has "
                    f"{len(header)}; fix that row"
                )
            rows.append([cell.strip() for cell in row])
            line_numbers.append(reader.line_num)
    if not rows:
        raise FolderFormatError(f"{csv_path} has a header but no data rows")
    return header, rows, line_numbers


def _image_paths(
    image_root: Path, csv_path: Path, rows: list[list[str]], line_numbers: list[int], col: int, name: str
) -> list[str]:
    """Relative POSIX paths, checked for duplicates and existence (one listing per directory)."""
    seen: dict[str, int] = {}
    listings: dict[Path, set[str]] = {}
    paths = []
    for row, line in zip(rows, line_numbers, strict=True):
        raw = row[col]
        relative = PurePosixPath(raw.replace("\\", "/"))
        if not raw or relative.is_absolute() or ".." in relative.parts:
            raise FolderFormatError(
                f"{csv_path}, line {line}, column {name!r}: {raw!r} is not a path inside the image root; "
                f"write it relative to {image_root}"
            )
        key = relative.as_posix()
        if key in seen:
            raise FolderFormatError(
                f"{csv_path}, line {line}, column {name!r}: {key} already appears on line {seen[key]}; "
                "keep one row per image"
            )
        seen[key] = line
        directory = image_root / relative.parent
        if directory not in listings:
            try:
                with os.scandir(directory) as entries:
                    listings[directory] = {entry.name for entry in entries if entry.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                listings[directory] = set()
        if relative.name not in listings[directory]:
            raise FolderFormatError(
                f"{csv_path}, line {line}, column {name!r}: image {image_root / key} does not exist; "
                "fix the path or remove the row"
            )
        paths.append(key)
    return paths


def _binary_column(
    csv_path: Path, rows: list[list[str]], line_numbers: list[int], col: int, name: str
) -> np.ndarray:
    values = np.empty(len(rows), dtype=np.uint8)
    for i, (row, line) in enumerate(zip(rows, line_numbers, strict=True)):
        cell = row[col].lower()
        if cell in _TRUE:
            values[i] = 1
        elif cell in _FALSE:
            values[i] = 0
        else:
            raise FolderFormatError(
                f"{csv_path}, line {line}, column {name!r}: {row[col]!r} is not a binary label; "
                "write 0/1, -1/1 or true/false (or leave the column out of label_columns)"
            )
    return values


def _split_column(
    csv_path: Path, rows: list[list[str]], line_numbers: list[int], col: int, name: str
) -> np.ndarray:
    split = np.empty(len(rows), dtype=np.int8)
    for i, (row, line) in enumerate(zip(rows, line_numbers, strict=True)):
        value = _SPLIT_VALUES.get(row[col].lower())
        if value is None:
            raise FolderFormatError(
                f"{csv_path}, line {line}, column {name!r}: unknown split {row[col]!r}; "
                "write train/val/test or 0/1/2"
            )
        split[i] = value
    return split


def _random_split(n: int, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Seeded split with exactly round(n * fraction) val and test rows."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    split = np.zeros(n, dtype=np.int8)
    split[order[:n_val]] = 1
    split[order[n_val : n_val + n_test]] = 2
    return split


def _landmark_columns(
    csv_path: Path, rows: list[list[str]], line_numbers: list[int], cols: list[int]
) -> np.ndarray:
    values = np.empty((len(rows), len(cols)), dtype=np.float32)
    for i, (row, line) in enumerate(zip(rows, line_numbers, strict=True)):
        for j, col in enumerate(cols):
            try:
                values[i, j] = float(row[col])
                if not np.isfinite(values[i, j]):
                    raise ValueError
            except ValueError:
                raise FolderFormatError(
                    f"{csv_path}, line {line}, column {LANDMARK_COLUMNS[j]!r}: {row[col]!r} is not a number; "
                    "landmarks are pixel coordinates in the source image"
                ) from None
    return values.reshape(-1, len(LANDMARK_NAMES), 2)
