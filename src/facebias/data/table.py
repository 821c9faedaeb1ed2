"""FaceTable: one annotated face set (CelebA, SynthFaces or a folder) held as arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = {"train": 0, "val": 1, "test": 2}


class UnknownAttributeError(KeyError):
    """An attribute name the source does not have; the message lists the ones it has.

    A KeyError (as before), printed without the quotes KeyError adds around its message.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class FaceTable:
    """Everything a reader found, validated, nothing decoded yet.

    attrs are 0/1 (CelebA's -1 becomes 0); split is 0 train, 1 val, 2 test; landmarks are (x, y) in
    the source image's pixels, five per face in CelebA's order (eyes, nose, mouth corners).
    """

    source: str  # "celeba", "synthfaces" or "folder": part of every cache key
    image_dir: Path
    filenames: tuple[str, ...]  # relative to image_dir
    attr_names: tuple[str, ...]
    attrs: np.ndarray  # (n, A) uint8 in {0, 1}
    split: np.ndarray  # (n,) int8 in {0, 1, 2}
    landmarks: np.ndarray | None = None  # (n, 5, 2) float32
    identity: np.ndarray | None = None  # (n,) int64
    bbox: np.ndarray | None = None  # (n, 4) int64 x, y, w, h (in-the-wild images)
    listed_in: Path | None = None  # the annotation file whose rows these are (errors cite its lines)
    lines: np.ndarray | None = None  # (n,) 1-based line of each row in listed_in

    def __len__(self) -> int:
        return len(self.filenames)

    def attr(self, name: str) -> np.ndarray:
        """The 0/1 column of one attribute; an unknown name lists the ones that exist."""
        if name not in self.attr_names:
            raise UnknownAttributeError(
                f"unknown attribute {name!r} for {self.source} at {self.listed_in or self.image_dir}; "
                f"available: {', '.join(self.attr_names)}"
            )
        return self.attrs[:, self.attr_names.index(name)]

    def row_origin(self, row: int) -> str:
        """Where row ``row`` comes from, for error messages: its line in the annotation file when known."""
        if self.listed_in is not None and self.lines is not None:
            return f"line {int(self.lines[row])} of {self.listed_in}"
        return f"row {row} of the {self.source} table"

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split ('train', 'val' or 'test')."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")
        return np.flatnonzero(self.split == SPLITS[split])
