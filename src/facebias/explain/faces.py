"""The explained faces as the model sees them, and their Face Dictionary in the model's input frame.

The dictionary draws its masks in the reference face crop (``crop=celeba``: rows 57..185, cols 25..153 of the
aligned 178x218 frame). A run trained with ``crop=none`` (folder data of any size) saw each image centre-cropped
to a square and resized; its landmarks are mapped into the dictionary's frame first, so the masks land where
the model's pixels are. The dictionary is built from affine combinations of the landmarks, so the mapping
(a scale and a shift per image) carries every mask exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facebias.dissect.selection import DictionaryFaces
from facebias.dissect.selection import load_faces as load_split_faces
from facebias.faces.geometry import crop_frame_landmarks

__all__ = ["crop_frame_landmarks", "load_faces", "region_dictionary"]


def load_faces(datamodule, model, split: str, picked: np.ndarray, batch_size: int) -> DictionaryFaces:
    """The chosen rows of a split, cells by (target, protected group): ``dissect.selection.load_faces``."""
    dataset = datamodule.dataset(split)
    cells = np.stack([dataset.targets[picked, 0], dataset.protected[picked]], axis=1).astype(np.int64)
    return load_split_faces(dataset, model, split, picked, cells, batch_size)


def region_dictionary(datamodule, rows: np.ndarray, mask_size: int, concepts: Sequence[str],
                      confidence: float | None, landmarks: int = 5):
    """The Face Dictionary of the table rows at mask_size in the run's input frame (crop=celeba or none), from
    the five landmarks or 68 points (``dictionary.landmarks``; 68: exact on SynthFaces, dlib's elsewhere,
    cached beside the image cache, the five as the fallback per face). On a folder without landmark columns the
    faces dlib cannot place are left out (the dictionary's ``kept`` and ``left_out``: the caller drops them from
    its faces); more than half of them stops with TooManyFailuresError."""
    from facebias.faces.dictionary import dictionary_for_table

    options = {"mask_size": mask_size, "concepts": tuple(concepts)}
    if confidence is not None:
        options["confidence"] = confidence
    crop = getattr(datamodule, "crop", "celeba")
    if crop not in ("celeba", "none"):
        raise ValueError(f"data.crop={crop!r}: region masks are drawn for crop=celeba or crop=none")
    table = datamodule.table
    if table.landmarks is None and landmarks == 5:
        raise ValueError(f"{table.source} data at {table.image_dir} has no landmarks; the region masks need the "
                         "five landmarks per face (lefteye_x, lefteye_y, ... columns of the folder CSV), or "
                         "dictionary.landmarks=68 (dlib finds 68 points)")
    return dictionary_for_table(table, rows, landmarks=landmarks, cache_dir=Path(datamodule.data_dir) / "cache",
                                crop=crop, progress=False, **options)
