"""The explained faces as the model sees them, and their Face Dictionary in the model's input frame.

The dictionary draws its masks in the reference face crop (``crop=celeba``: rows 57..185, cols 25..153 of the
aligned 178x218 frame). A run trained with ``crop=none`` (folder data of any size) saw each image centre-cropped
to a square and resized; its landmarks are mapped into the dictionary's frame first, so the masks land where
the model's pixels are. The dictionary is built from affine combinations of the landmarks, so the mapping
(a scale and a shift per image) carries every mask exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facebias.dissect.selection import DictionaryFaces
from facebias.dissect.selection import load_faces as load_split_faces


def load_faces(datamodule, model, split: str, picked: np.ndarray, batch_size: int) -> DictionaryFaces:
    """The chosen rows of a split, cells by (target, protected group): ``dissect.selection.load_faces``."""
    dataset = datamodule.dataset(split)
    cells = np.stack([dataset.targets[picked, 0], dataset.protected[picked]], axis=1).astype(np.int64)
    return load_split_faces(dataset, model, split, picked, cells, batch_size)


def crop_frame_landmarks(landmarks: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Landmarks of crop=none images (pixels of each source image, sizes (n, 2) as width, height) in the
    aligned frame whose reference crop is the image's centre square: x' = 24.5 + (x + 0.5 - left) * 128 / side."""
    from facebias.faces.geometry import CROP_LEFT, CROP_SIZE, CROP_TOP

    landmarks = np.asarray(landmarks, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    side = sizes.min(axis=1)
    corner = np.floor((sizes - side[:, None]) / 2)  # (left, top) as the cache's centre crop computes them
    origin = np.array([CROP_LEFT - 0.5, CROP_TOP - 0.5])
    scale = (CROP_SIZE / side)[:, None, None]
    return (origin + (landmarks + 0.5 - corner[:, None, :]) * scale).astype(np.float32)


def region_dictionary(datamodule, rows: np.ndarray, mask_size: int, concepts: Sequence[str],
                      confidence: float | None):
    """The Face Dictionary of the table rows at mask_size in the run's input frame (crop=celeba or none)."""
    from facebias.faces.dictionary import dictionary_for_table, face_dictionary

    table = datamodule.table
    options = {"mask_size": mask_size, "concepts": tuple(concepts)}
    if confidence is not None:
        options["confidence"] = confidence
    crop = getattr(datamodule, "crop", "celeba")
    if crop == "celeba":
        return dictionary_for_table(table, rows, **options)
    if crop != "none":
        raise ValueError(f"data.crop={crop!r}: region masks are drawn for crop=celeba or crop=none")
    if table.landmarks is None:
        raise ValueError(f"{table.source} data at {table.image_dir} has no landmarks; the region masks need the "
                         "five landmarks per face (lefteye_x, lefteye_y, ... columns of the folder CSV)")
    from PIL import Image

    sizes = []
    for row in rows:
        with Image.open(table.image_dir / table.filenames[row]) as image:  # reads the header only
            sizes.append(image.size)
    landmarks = crop_frame_landmarks(table.landmarks[rows], np.asarray(sizes))
    attrs = {name: table.attrs[rows, i] for i, name in enumerate(table.attr_names)}
    return face_dictionary(landmarks, attrs, **options)
