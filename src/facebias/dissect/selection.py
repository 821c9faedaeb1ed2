"""The faces a run is dissected (or explained) on: a balanced, seeded subset of one split, as the model sees
them and as a person does, and their Face Dictionary (plus, on SynthFaces, its quality against the exact masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class DictionaryFaces:
    """The faces a run is dissected on, as the model sees them and as a person does."""

    split: str
    rows: np.ndarray  # (n,) FaceTable rows
    cells: np.ndarray  # (n, 2) target (first head) and bias concept of each face
    gray: np.ndarray  # (n,) bool: shown in grayscale (the planted grayscale concept)
    pixels: torch.Tensor  # (n, S, S, 3) uint8, grayscale applied: what the patches show
    inputs: torch.Tensor  # (n, 3, S, S) float model input

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> DictionaryFaces:
        """These faces restricted to ``keep`` ((n,) bool): e.g. the Face Dictionary's ``kept``, where faces no
        face could be placed on (and no five landmarks drawn from) were left out."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(self),):
            raise ValueError(f"keep has shape {keep.shape}; expected ({len(self)},), one flag per face")
        index = torch.from_numpy(np.flatnonzero(keep))
        return DictionaryFaces(split=self.split, rows=self.rows[keep], cells=self.cells[keep], gray=self.gray[keep],
                               pixels=self.pixels[index], inputs=self.inputs[index])


def balanced_subset(cells: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` indices (ascending), spread evenly over the distinct rows of ``cells``.

    Quotas are water-filled from the smallest cell up: each cell gets an equal share of what is left,
    and a cell too small for its share gives the rest to the larger ones. Within a cell the draw is a
    seeded random choice. All indices when limit is None or not below the number of rows.
    """
    n = len(cells)
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(np.asarray(cells).reshape(n, -1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = [rng.permutation(np.flatnonzero(inverse == g)) for g in range(int(inverse.max()) + 1)]
    chosen, remaining = [], limit
    for i, g in enumerate(sorted(range(len(groups)), key=lambda g: len(groups[g]))):
        take = min(len(groups[g]), remaining // (len(groups) - i))
        chosen.append(groups[g][:take])
        remaining -= take
    return np.sort(np.concatenate(chosen))


def select_faces(datamodule, model: nn.Module, split: str, max_images: int | None, seed: int,
                 batch_size: int) -> DictionaryFaces:
    """The split's faces (a balanced subset of at most max_images), through the model's own input transform."""
    dataset = datamodule.dataset(split)
    cells = np.stack([dataset.targets[:, 0], dataset.concept], axis=1).astype(np.int64)
    picked = balanced_subset(cells, max_images, seed)
    if len(picked) == 0:
        raise ValueError(f"the {split} split of the run is empty: nothing to dissect; choose split=val or train")
    return load_faces(dataset, model, split, picked, cells[picked], batch_size)


def load_faces(dataset, model: nn.Module, split: str, picked: np.ndarray, cells: np.ndarray,
               batch_size: int) -> DictionaryFaces:
    """The chosen rows of a split's dataset: pixels as shown (planted grayscale applied) and the model's own
    input (its ``preprocess``, else the standard normalisation); ``cells`` are the rows' (target, group)."""
    from facebias.data.transforms import to_grayscale

    pixels, inputs = [], []
    for start in range(0, len(picked), batch_size):
        batch = dataset.__getitems__(picked[start:start + batch_size])
        pixels.append(to_grayscale(batch["image"], batch["gray"]))
        inputs.append(model_inputs(model, batch))
    return DictionaryFaces(split=split, rows=dataset.rows[picked].astype(np.int64), cells=cells,
                           gray=np.asarray(dataset.gray[picked]).astype(bool), pixels=torch.cat(pixels),
                           inputs=torch.cat(inputs))


def model_inputs(model: nn.Module, batch: dict) -> torch.Tensor:
    """A uint8 batch (``image``, ``gray``) as the model's input: its ``preprocess`` (planted grayscale applied
    there), else grayscale then the standard normalisation."""
    from facebias.data.transforms import to_grayscale, to_model_input

    preprocess = getattr(model, "preprocess", None)
    if preprocess is not None:
        return preprocess(batch)["image"].float().contiguous()
    return to_model_input(to_grayscale(batch["image"], batch["gray"])).float().contiguous()


def grayscale_probe(faces: DictionaryFaces, model: nn.Module, seed: int, batch_size: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The dissected faces again, a seeded random half of them in grayscale: (model inputs, (n, 1) flags).

    Where a run planted no grayscale its test faces are all in colour, so the grayscale group has one value
    and no unit can be called grayscale-biased; this probe measures the same rule (Cohen's d between gray and
    colour faces, unrelated to the labels) for every model, the control the grayscale family needs."""
    flags = np.zeros(len(faces), dtype=bool)
    flags[np.random.default_rng(seed).permutation(len(faces))[: len(faces) // 2]] = True
    flags_t = torch.from_numpy(flags)
    inputs = [model_inputs(model, {"image": faces.pixels[i:i + batch_size], "gray": flags_t[i:i + batch_size]})
              for i in range(0, len(faces), batch_size)]
    return torch.cat(inputs), flags_t.view(-1, 1).to(torch.int64)


def landmarks_option(cfg) -> int:
    """``dictionary.landmarks`` of an analysis config: 68 (the default: exact on SynthFaces, dlib's elsewhere,
    the five as the per-face fallback) or 5 (the five-point dictionary alone)."""
    from facebias.faces.dictionary import landmark_set

    section = cfg.get("dictionary") if hasattr(cfg, "get") else None
    value = section.get("landmarks", 68) if section is not None else 68
    return landmark_set(value)


def available_concepts(table, requested: list[str] | None, landmarks: int = 5) -> tuple[str, ...]:
    """The requested concepts, or every one whose conditioning attribute the table has: the local concepts
    (five points), those and the 68-point ones (landmarks=68)."""
    from facebias.faces.concepts import ALL_CONCEPTS, ATTRIBUTE_OF_CONCEPT, LOCAL_CONCEPTS

    known = LOCAL_CONCEPTS if landmarks == 5 else ALL_CONCEPTS
    if requested is not None:
        unknown = [c for c in requested if c not in ALL_CONCEPTS]
        if unknown:
            raise ValueError(f"concepts={requested}: unknown {unknown}; the Face Dictionary knows "
                             f"{', '.join(ALL_CONCEPTS)}")
        return tuple(requested)
    return tuple(c for c in known
                 if c not in ATTRIBUTE_OF_CONCEPT or ATTRIBUTE_OF_CONCEPT[c][0] in table.attr_names)


def dictionary_options(settings: dict[str, Any], mask_size: int, concepts: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {"mask_size": mask_size, "concepts": concepts,
                               "landmarks": settings.get("landmarks", 5)}
    if settings["confidence"] is not None:
        options["confidence"] = settings["confidence"]
    return options


def build_dictionary(datamodule, faces: DictionaryFaces, options: dict[str, Any]):
    """The Face Dictionary of the faces; groups Male, Young, Pale_Skin (where the data has them) and grayscale
    (where the run planted it: the per-image flags of the split). With options' landmarks=68, dlib's points are
    cached beside the image cache (``<data_dir>/cache``). The landmarks are taken in the run's crop (options'
    ``crop`` where given): crop=none maps them into each image's centre square, the frame the model sees.
    Faces left out of the dictionary (no 68 points, no five landmarks: its ``kept`` is False) are for the caller
    to drop with ``faces.subset(dictionary.kept)``; more than half of them stops with TooManyFailuresError."""
    from facebias.data.bias import GRAYSCALE
    from facebias.faces.dictionary import dictionary_for_table

    grayscale = faces.gray.astype(np.int64) if datamodule.concept == GRAYSCALE else None
    options = {"crop": getattr(datamodule, "crop", "celeba"), **options}
    return dictionary_for_table(datamodule.table, faces.rows, grayscale=grayscale,
                                cache_dir=Path(datamodule.data_dir) / "cache", **options)


def dictionary_quality(table, rows: np.ndarray, options: dict[str, Any], n_images: int) -> dict[str, Any] | None:
    """SynthFaces only: mean per-image IoU of each ellipse concept against the exact masks (first n faces):
    the renderer's masks and those cut out of them by the face geometry (left/right eye, upper/lower lip, the
    mouth opening; ``synthfaces.DERIVED_CONCEPTS``)."""
    if table.source != "synthfaces" or n_images == 0:
        return None
    from facebias.data.synthfaces import DERIVED_CONCEPTS, load_masks
    from facebias.faces.concepts import LOCAL_CONCEPTS
    from facebias.faces.dictionary import dictionary_for_table, score_against_exact

    subset = rows[:n_images]
    faces = np.array([int(Path(table.filenames[r]).stem) - 1 for r in subset])  # 000001.jpg is face 0
    exact = load_masks(table.image_dir.parent, faces, derived=True)
    scores = score_against_exact(dictionary_for_table(table, subset, **options), exact,
                                 (*LOCAL_CONCEPTS, *DERIVED_CONCEPTS))
    return {"images": len(subset), "mean_iou": scores, "landmarks": options.get("landmarks", 5),
            "definition": "mean over faces of IoU(ellipse mask, exact mask) in the crop at mask_size; faces where "
                          "both are empty (absent attribute) are skipped"}
