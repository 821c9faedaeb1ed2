"""Read CelebA's official annotation files (and SynthFaces, which writes the same layout) into a FaceTable.

The files are whitespace-separated text with quirks the reader must tolerate: a count line that does
not match the rows that follow (only the rows present are read), space padding, CRLF line endings,
trailing whitespace. Rows of the different files are joined by file name, never by position.
Parsing is vectorised (numpy's C ``loadtxt`` on the value columns) so the full 202,599-row set reads in
about a second; only when that fast path fails does a per-line pass run, to name the exact bad line.

Empty splits: the reader requires a non-empty ``train`` split by default (``require_splits``); a table
whose val or test split is empty is still returned (the ten-image sample is all train). The data module
asks for all three (training selects its checkpoint on val and scores test), so an empty split fails
before anything is cached or trained, naming the partition file and the split; other consumers that need
a split call :func:`require_split`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facebias.data.table import SPLITS, FaceTable
from facebias.faces.geometry import LANDMARK_NAMES

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"
IDENTITY_FILE = "identity_CelebA.txt"
BBOX_FILE = "list_bbox_celeba.txt"
IMAGE_DIR = "img_align_celeba"
REQUIRED_FILES = (ATTR_FILE, PARTITION_FILE, LANDMARK_FILE)

LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y"))

_LAYOUT = (
    f"CelebA's layout: <root>/{ATTR_FILE}, <root>/{PARTITION_FILE}, <root>/{LANDMARK_FILE} "
    f"(optional: {IDENTITY_FILE}, {BBOX_FILE}) and the aligned images in <root>/{IMAGE_DIR}/"
)


class CelebAFormatError(ValueError):
    """A CelebA-layout file is missing or malformed; the message names the file, line and fix."""


@dataclass(frozen=True)
class _Rows:
    """One annotation file: a file name and k integer values per row, with each row's line number."""

    path: Path
    header: tuple[str, ...]
    names: np.ndarray  # (n,) str
    values: np.ndarray  # (n, k) int64
    line_numbers: np.ndarray  # (n,) 1-based line of each row in the file

    def line_of(self, row: int) -> int:
        return int(self.line_numbers[row])


def read_celeba(
    root: str | Path, source: str = "celeba", require_splits: tuple[str, ...] = ("train",)
) -> FaceTable:
    """Read a CelebA-layout directory into a FaceTable (rows in the attribute file's order).

    ``source`` tags the table (it is part of every cache key): "celeba" for the real set,
    "synthfaces" for the generated one. ``require_splits`` lists splits that must be non-empty
    (default: train only, so a sample that is all train still reads).
    """
    root = Path(root)
    if not root.is_dir():
        raise CelebAFormatError(
            f"CelebA root {root} does not exist or is not a directory; expected {_LAYOUT}"
        )
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise CelebAFormatError(f"{root} lacks {', '.join(missing)}; expected {_LAYOUT}")

    attrs = _read_rows(root / ATTR_FILE, has_count_and_header=True, n_values=None)
    partition = _read_rows(root / PARTITION_FILE, has_count_and_header=False, n_values=1)
    landmarks = _read_rows(root / LANDMARK_FILE, has_count_and_header=True, n_values=len(LANDMARK_COLUMNS))
    optional = {
        name: _read_rows(root / name, has_count_and_header=has_header, n_values=k)
        for name, has_header, k in ((IDENTITY_FILE, False, 1), (BBOX_FILE, True, 4))
        if (root / name).is_file()
    }

    _check_attr_values(attrs)
    _check_partition_values(partition)
    for rows in (attrs, partition, landmarks, *optional.values()):
        _check_unique_names(rows)
    order = {rows.path.name: _align(attrs, rows) for rows in (partition, landmarks, *optional.values())}

    _check_images_exist(root / IMAGE_DIR, attrs)

    table = FaceTable(
        source=source,
        image_dir=root / IMAGE_DIR,
        filenames=tuple(attrs.names.tolist()),
        attr_names=attrs.header,
        attrs=(attrs.values == 1).astype(np.uint8),
        split=partition.values[order[PARTITION_FILE], 0].astype(np.int8),
        landmarks=_landmarks_in_canonical_order(landmarks)[order[LANDMARK_FILE]],
        identity=(
            optional[IDENTITY_FILE].values[order[IDENTITY_FILE], 0].astype(np.int64)
            if IDENTITY_FILE in optional
            else None
        ),
        bbox=optional[BBOX_FILE].values[order[BBOX_FILE]].astype(np.int64) if BBOX_FILE in optional else None,
        listed_in=attrs.path,
        lines=attrs.line_numbers,
    )
    for split in require_splits:
        require_split(table, split)
    return table


def require_split(table: FaceTable, split: str) -> np.ndarray:
    """Row indices of ``split``, or an error naming the split and the file that assigns the splits."""
    rows = table.indices(split)
    if rows.size == 0:
        counts = ", ".join(f"{int(np.sum(table.split == v))} {name}" for name, v in SPLITS.items())
        if table.source == "folder":
            where = table.listed_in or table.image_dir
            raise CelebAFormatError(
                f"{where} assigns no image to the {split} split ({counts}); give that split rows "
                f"({split} or {SPLITS[split]}) in the CSV's split column, or leave split_column unset for a "
                "seeded random split"
            )
        partition = table.image_dir.parent / PARTITION_FILE
        fix = (
            "SynthFaces writes it from data.synth.split: give every split a share"
            if table.source == "synthfaces"
            else f"use the official partition file or set some rows to {SPLITS[split]}"
        )
        raise CelebAFormatError(
            f"{partition} assigns no image to the {split} split (partition {SPLITS[split]}): its "
            f"{len(table)} rows are {counts}; {fix}"
        )
    return rows


def _read_rows(path: Path, has_count_and_header: bool, n_values: int | None) -> _Rows:
    """Parse ``name v1 .. vk`` rows; ``n_values=None`` takes k from the header line."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise CelebAFormatError(f"{path} is not a text file ({err}); expected {_LAYOUT}") from None
    first_row = 0
    header: tuple[str, ...] = ()
    if has_count_and_header:
        if len(lines) < 2 or not lines[0].strip().isdigit():
            raise CelebAFormatError(
                f"{path}, line 1: expected the image count (e.g. 202599) followed by a header line of "
                f"column names, found {lines[0][:60] if lines else 'an empty file'!r}; restore the "
                "official file's first two lines"
            )
        header = tuple(lines[1].split())
        first_row = 2
        if n_values is None:
            n_values = len(header)
            if n_values == 0:
                raise CelebAFormatError(f"{path}, line 2: the header line of attribute names is empty")

    names: list[str] = []
    rests: list[str] = []
    line_numbers: list[int] = []
    for number, line in enumerate(lines[first_row:], start=first_row + 1):
        parts = line.split(None, 1)
        if not parts:
            continue  # blank line (e.g. at the end of the file)
        if len(parts) == 1:
            _raise_columns(path, number, line, n_values)
        names.append(parts[0])
        rests.append(parts[1])
        line_numbers.append(number)
    if not names:
        raise CelebAFormatError(f"{path} has no data rows; expected one '<file name> <values>' row per image")

    try:
        values = np.loadtxt(rests, dtype=np.int64, comments=None, ndmin=2)
        fast_ok = values.shape[1] == n_values
    except ValueError:
        fast_ok = False
    if not fast_ok:
        values = _parse_slowly(path, rests, line_numbers, lines, n_values)
    return _Rows(path, header, np.array(names), values, np.array(line_numbers))


def _parse_slowly(
    path: Path, rests: list[str], line_numbers: list[int], lines: list[str], n_values: int
) -> np.ndarray:
    """Per-line parse that names the first bad line (runs only when the fast path failed)."""
    values = np.empty((len(rests), n_values), dtype=np.int64)
    for row, (rest, number) in enumerate(zip(rests, line_numbers, strict=True)):
        tokens = rest.split()
        if len(tokens) != n_values:
            _raise_columns(path, number, lines[number - 1], n_values)
        for column, token in enumerate(tokens, start=2):
            try:
                values[row, column - 2] = int(token)
            except ValueError:
                raise CelebAFormatError(
                    f"{path}, line {number}, column {column}: {token!r} is not an integer; "
                    "fix or restore that row from the official file"
                ) from None
    return values


def _raise_columns(path: Path, number: int, line: str, n_values: int) -> None:
    found = len(line.split())
    raise CelebAFormatError(
        f"{path}, line {number}: expected {n_values + 1} columns (the file name and {n_values} values), "
        f"found {found}: {line.strip()[:80]!r}; fix or restore that row from the official file"
    )


def _check_attr_values(attrs: _Rows) -> None:
    bad = np.argwhere((attrs.values != 1) & (attrs.values != -1))
    if bad.size:
        row, col = bad[0]
        raise CelebAFormatError(
            f"{attrs.path}, line {attrs.line_of(row)}: attribute {attrs.header[col]} of "
            f"{attrs.names[row]} is {attrs.values[row, col]}, but CelebA attributes are -1 or 1 "
            f"({len(bad)} such value(s) in the file); write -1 for absent and 1 for present"
        )


def _check_partition_values(partition: _Rows) -> None:
    bad = np.flatnonzero(~np.isin(partition.values[:, 0], list(SPLITS.values())))
    if bad.size:
        row = bad[0]
        raise CelebAFormatError(
            f"{partition.path}, line {partition.line_of(row)}: split of {partition.names[row]} is "
            f"{partition.values[row, 0]}; use 0 (train), 1 (val) or 2 (test)"
        )


def _check_unique_names(rows: _Rows) -> None:
    order = np.argsort(rows.names, kind="stable")
    sorted_names = rows.names[order]
    repeats = np.flatnonzero(sorted_names[1:] == sorted_names[:-1])
    if repeats.size:
        first, second = sorted(order[repeats[0] : repeats[0] + 2])
        raise CelebAFormatError(
            f"{rows.path}: {rows.names[first]} appears twice, on lines {rows.line_of(first)} and "
            f"{rows.line_of(second)}; keep one row per image"
        )


def _align(reference: _Rows, other: _Rows) -> np.ndarray:
    """Row index into ``other`` for each row of ``reference``; unmatched names in either are an error."""
    if np.array_equal(reference.names, other.names):
        return np.arange(len(other.names))
    order = np.argsort(other.names)
    position = np.searchsorted(other.names[order], reference.names).clip(max=len(order) - 1)
    matched = other.names[order][position] == reference.names
    only_in_other = np.setdiff1d(other.names, reference.names)
    if not matched.all() or only_in_other.size:
        problems = []
        if not matched.all():
            missing = reference.names[~matched]
            problems.append(
                f"{missing.size} image(s) of {reference.path.name} have no row in {other.path.name} "
                f"(first: {missing[0]}, line {reference.line_of(np.flatnonzero(~matched)[0])} of "
                f"{reference.path.name})"
            )
        if only_in_other.size:
            problems.append(
                f"{only_in_other.size} image(s) of {other.path.name} have no row in {reference.path.name} "
                f"(first: {only_in_other[0]})"
            )
        raise CelebAFormatError(
            f"{reference.path.parent}: {'; '.join(problems)}. Every image needs one row in each annotation "
            "file; restore the official files or remove the image from all of them"
        )
    return order[position]


def _landmarks_in_canonical_order(landmarks: _Rows) -> np.ndarray:
    """(n, 5, 2) float32 in CelebA's order, whatever order the header lists the columns in."""
    if set(landmarks.header) != set(LANDMARK_COLUMNS) or len(landmarks.header) != len(LANDMARK_COLUMNS):
        raise CelebAFormatError(
            f"{landmarks.path}, line 2: expected the header {' '.join(LANDMARK_COLUMNS)}, "
            f"found {' '.join(landmarks.header)!r}; restore the official header line"
        )
    columns = [landmarks.header.index(name) for name in LANDMARK_COLUMNS]
    return landmarks.values[:, columns].astype(np.float32).reshape(-1, len(LANDMARK_NAMES), 2)


def _check_images_exist(image_dir: Path, attrs: _Rows) -> None:
    """One directory listing, then set lookups: fast for 200k files."""
    if not image_dir.is_dir():
        raise CelebAFormatError(
            f"image directory {image_dir} does not exist; expected {_LAYOUT} "
            "(unzip img_align_celeba.zip into the root)"
        )
    with os.scandir(image_dir) as entries:
        present = {entry.name for entry in entries if entry.is_file()}
    missing = [row for row, name in enumerate(attrs.names.tolist()) if name not in present]
    if missing:
        row = missing[0]
        raise CelebAFormatError(
            f"{len(missing)} image(s) listed in {attrs.path} are missing from {image_dir}: first "
            f"{attrs.names[row]} (line {attrs.line_of(row)}); restore the image or remove its rows "
            "from every annotation file"
        )
