"""Automatic coding: what changed between each walk's start and its end, measured, not judged by one coder.

Measures (each read at a walk's start and end):

- ``true``: with SynthFaces, every binary attribute exactly (``SynthFacesGenerator.true_attributes``);
- ``trait``: with SynthFaces, continuous traits the renderer draws, read from z through its own
  ``face_parameters`` (skin tone, age, face width, hair length, masculinity cue, lighting);
- ``classifier``: every head of every classifier given (the run's own, plus ``coders``), as its sigmoid
  probability; a head is "on" above 0.5;
- ``image``: statistics of the pixels in the face region: skin luminance, warmth, saturation.

Binary measures change by being added (0 -> 1) or removed (1 -> 0), counted among the walks that could;
continuous ones by increasing or decreasing by more than δ = ``delta_sd`` x their standard deviation over
the start faces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# renderer parameter -> (measure name, what it is)
TRAITS = {
    "tone": ("skin tone", "skin tone the renderer paints, dark 0.1 .. light 1.0 (before Pale_Skin)"),
    "age": ("age", "apparent age in (0, 1); below 0.5 exactly when Young (wrinkles above 0.5)"),
    "face_w": ("face width", "half-width of the face outline in aligned-frame pixels (slimming: a decrease)"),
    "hair_len": ("hair length", "how far the hair falls below the eyes, in aligned-frame pixels"),
    "mc": ("masculinity cue", "the continuous gender cue in (-1, 1) driving jaw, brows, face width, hair"),
    "bright": ("lighting", "overall brightness factor of the scene light"),
}
IMAGE_STATISTICS = {
    "skin luminance": "mean Rec. 709 luma (0-255) of the face region (lightening +, darkening -)",
    "skin warmth": "mean red minus blue (0-255 scale) of the face region (warming +)",
    "skin saturation": "mean HSV saturation (0-1) of the face region",
}
FACE_PARTS_OF_SKIN = ("cheeks", "forehead", "chin")
CENTRAL_ELLIPSE = (0.5, 0.55, 0.28, 0.36)  # centre x, y and semi-axes, as fractions of the image side


@dataclass
class Measure:
    """One quantity read at the start and end of every search and every null walk."""

    name: str
    source: str  # true | trait | classifier | image
    kind: str  # binary | continuous
    search: tuple[np.ndarray, np.ndarray]  # (start, end), (S,) each
    null: tuple[np.ndarray, np.ndarray]
    coder: str = ""  # which classifier (source classifier)
    description: str = ""

    @property
    def label(self) -> str:
        where = {"true": "true, from z", "trait": "trait, from z", "image": "image, face region"}.get(self.source)
        return f"{self.name} ({where or 'classifier ' + self.coder})"

    def changes(self, walk: str) -> np.ndarray:
        """+1 / 0 / -1 per walk (binary: added / same / removed); the signed difference for continuous."""
        start, end = self.search if walk == "search" else self.null
        if self.kind == "binary":
            return end.astype(np.int64) - start.astype(np.int64)
        return end.astype(np.float64) - start.astype(np.float64)


# ------------------------------------------------------------------------------------------------ measures

def true_measures(generator, search: tuple[np.ndarray, np.ndarray], null: tuple[np.ndarray, np.ndarray],
                  ) -> list[Measure]:
    """Every binary attribute of the SynthFaces renderer and its continuous traits, from the latents."""
    if not hasattr(generator, "true_attributes"):
        return []
    flags = [generator.true_attributes(z) for z in (*search, *null)]
    out = [Measure(name, "true", "binary", (flags[0][name], flags[1][name]), (flags[2][name], flags[3][name]),
                   description="the attribute the renderer draws, exactly (its half-spaces of z)")
           for name in generator.attribute_names]
    traits = [latent_traits(generator.model, z) for z in (*search, *null)]
    for key, (name, description) in TRAITS.items():
        out.append(Measure(name, "trait", "continuous", (traits[0][key], traits[1][key]),
                           (traits[2][key], traits[3][key]), description=description))
    return out


def latent_traits(latent_model, z: np.ndarray) -> dict[str, np.ndarray]:
    """The renderer's continuous traits (TRAITS) of latents z, float64 (n,) each."""
    import torch

    from facebias.data.synthfaces.render import face_parameters

    parameters = face_parameters(torch.from_numpy(np.asarray(z, dtype=np.float32)), latent_model)
    return {key: parameters[key].numpy().astype(np.float64) for key in TRAITS}


def classifier_measures(coders: Sequence[tuple[str, Sequence[str], np.ndarray]]) -> list[Measure]:
    """coders: (name, heads, probabilities (4, S, heads) for search start, search end, null start, null end)."""
    out = []
    for coder, heads, probabilities in coders:
        on = probabilities > 0.5
        for h, head in enumerate(heads):
            out.append(Measure(head, "classifier", "binary", (on[0, :, h], on[1, :, h]), (on[2, :, h], on[3, :, h]),
                               coder=coder, description=f"{coder}'s head {head}: on where its probability > 0.5"))
    return out


def image_measures(faces: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[Measure]:
    """faces and masks: search start, search end, null start, null end (uint8 (S, H, W, 3), bool (S, H, W))."""
    stats = [image_statistics(f, m) for f, m in zip(faces, masks, strict=True)]
    return [Measure(name, "image", "continuous", (stats[0][name], stats[1][name]), (stats[2][name], stats[3][name]),
                    description=description) for name, description in IMAGE_STATISTICS.items()]


def image_statistics(faces: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Per face, inside its mask: Rec. 709 luma, red minus blue, HSV saturation (IMAGE_STATISTICS)."""
    rgb = faces.astype(np.float64)
    weight = masks.astype(np.float64)
    area = np.maximum(weight.sum(axis=(1, 2)), 1.0)

    def mean(values: np.ndarray) -> np.ndarray:
        return (values * weight).sum(axis=(1, 2)) / area

    top, bottom = rgb.max(axis=3), rgb.min(axis=3)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-9), 0.0)
    luma = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]
    return {"skin luminance": mean(luma), "skin warmth": mean(rgb[..., 0] - rgb[..., 2]),
            "skin saturation": mean(saturation)}


def face_region(generator, z: np.ndarray) -> tuple[np.ndarray, str]:
    """(masks (n, S, S) bool at the generator's image size, how they were drawn).

    SynthFaces in CelebA's crop: the Face Dictionary's cheek, forehead and chin ellipses (landmark-derived,
    docs/design.md §7), from the five landmarks the renderer places for z. Otherwise a fixed central ellipse.
    """
    size = int(generator.image_size)
    if hasattr(generator, "model") and getattr(generator, "crop", None) == "celeba":
        import torch

        from facebias.data.synthfaces.render import face_parameters, landmarks_from_parameters
        from facebias.faces.dictionary import face_dictionary

        z_tensor = torch.from_numpy(np.asarray(z, dtype=np.float32))
        landmarks = landmarks_from_parameters(face_parameters(z_tensor, generator.model)).numpy()
        dictionary = face_dictionary(landmarks, None, mask_size=size, concepts=FACE_PARTS_OF_SKIN)
        masks = dictionary.masks.any(dim=1).numpy()
        return masks, ("the Face Dictionary's cheek, forehead and chin ellipses (from the five landmarks the "
                       "renderer places for each face), the union per face; like any landmark mask they include "
                       "what is drawn over the skin there (a hat brim, a beard)")
    cx, cy, ax, ay = CENTRAL_ELLIPSE
    centres = np.arange(size) + 0.5
    inside = ((centres[None, :] - cx * size) / (ax * size)) ** 2 + ((centres[:, None] - cy * size) / (ay * size)) ** 2
    masks = np.broadcast_to(inside <= 1.0, (len(z), size, size)).copy()
    return masks, (f"a fixed central ellipse (centre at {cx:.0%} of the width and {cy:.0%} of the height, semi-axes "
                   f"{ax:.0%} and {ay:.0%} of the side): this generator gives no landmarks")


# ----------------------------------------------------------------------------------------------- aggregates

def aggregate(measures: Sequence[Measure], delta_sd: float) -> list[dict]:
    """Per measure and direction: how many searches and null walks changed, out of how many could.

    Binary: ``added`` among walks that started without it, ``removed`` among those that started with it.
    Continuous: ``increased`` / ``decreased`` by more than δ = delta_sd x the SD of its start values.
    """
    rows = []
    for measure in measures:
        base = {"measure": measure.label, "name": measure.name, "source": measure.source, "coder": measure.coder}
        if measure.kind == "binary":
            for change, started, value in (("added", 0, 1), ("removed", 1, -1)):
                counts = []
                for walk in ("search", "null"):
                    start = measure.search[0] if walk == "search" else measure.null[0]
                    eligible = start.astype(np.int64) == started
                    counts += [int((measure.changes(walk)[eligible] == value).sum()), int(eligible.sum())]
                rows.append({**base, "change": change, "delta": None, **_counts(*counts)})
        else:
            start_values = np.concatenate([measure.search[0], measure.null[0]])
            delta = float(delta_sd * np.std(start_values))
            for change, sign in (("increased", 1.0), ("decreased", -1.0)):
                counts = []
                for walk in ("search", "null"):
                    moved = sign * measure.changes(walk) > delta
                    counts += [int(moved.sum()), int(moved.size)]
                rows.append({**base, "change": change, "delta": delta, **_counts(*counts)})
    return rows


def _counts(search_count: int, search_n: int, null_count: int, null_n: int) -> dict:
    return {"search_count": search_count, "search_n": search_n,
            "search_rate": search_count / search_n if search_n else None,
            "null_count": null_count, "null_n": null_n, "null_rate": null_count / null_n if null_n else None}


def statement(row: Mapping) -> str:
    """'in 84 % of searches (27 of 32 that could), Eyeglasses (true, from z) was added (null: 9 %)'."""
    if row["search_rate"] is None:
        return f"{row['measure']} {row['change']}: no search could ({row['change']} needs another start)"
    what = f"was {row['change']}" if row["delta"] is None else f"{row['change']} by more than {row['delta']:.3g}"
    null = "n/a" if row["null_rate"] is None else f"{row['null_rate']:.0%}"
    return (f"in {row['search_rate']:.0%} of searches ({row['search_count']} of {row['search_n']}"
            f"{' that could' if row['delta'] is None else ''}), {row['measure']} {what} (null: {null})")


def agreement(measures: Sequence[Measure]) -> list[dict]:
    """How often each classifier head's coding (added / same / removed) equals the true coding of the attribute
    of the same name, over the searches and over the null walks."""
    truth = {m.name: m for m in measures if m.source == "true"}
    rows = []
    for measure in measures:
        if measure.source != "classifier" or measure.name not in truth:
            continue
        row = {"attribute": measure.name, "coder": measure.coder}
        for walk in ("search", "null"):
            coded, true = measure.changes(walk), truth[measure.name].changes(walk)
            row[f"{walk}_agreement"] = float(np.mean(coded == true)) if len(true) else None
            row[f"{walk}_true_changes"] = int((true != 0).sum())
            changed = true != 0
            row[f"{walk}_agreement_where_changed"] = float(np.mean(coded[changed] == true[changed])) if changed.any() \
                else None
            row[f"{walk}_n"] = int(len(true))
        rows.append(row)
    return rows


def per_walk_rows(measures: Sequence[Measure]) -> list[dict]:
    """Long table: one row per (walk, index, measure) with its start, end and change."""
    rows = []
    for measure in measures:
        for walk in ("search", "null"):
            start, end = measure.search if walk == "search" else measure.null
            change = measure.changes(walk)
            for i in range(len(start)):
                rows.append({"walk": walk, "index": i, "measure": measure.label, "source": measure.source,
                             "start": _plain(start[i]), "end": _plain(end[i]), "change": _plain(change[i])})
    return rows


def _plain(value):
    if isinstance(value, (np.bool_, bool)):
        return int(value)
    return value.item() if hasattr(value, "item") else value
