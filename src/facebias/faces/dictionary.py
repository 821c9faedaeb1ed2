"""Face Dictionary: per-image binary concept masks drawn from CelebA's five landmarks.

Why ellipses: CelebA has five landmarks and no part segmentation, so every local concept is a
filled confidence ellipse of a 2-D Gaussian fitted to a few points that outline it. The points are
placed with fixed offsets in a face frame built from the landmarks (below), so the masks follow each
face's position, scale, roll and eye-to-mouth proportion without any face-parsing weights.

Face frame. With LE, RE the image-left and image-right eye, N the nose tip, LM, RM the mouth
corners, E = (LE + RE) / 2 and M = (LM + RM) / 2:

    u = RE - LE   (inter-ocular vector: 1 unit = the inter-ocular distance, pointing image-right)
    v = M - E     (eye-to-mouth vector: 1 unit = the eye-to-mouth distance, pointing down)

and a point written ``(anchor, a, b)`` is ``anchor + a*u + b*v``. Anchors are the five landmarks,
E, M and EN = (E + N) / 2. Paired parts (eyes, brows, cheeks, ear lobes) have one ellipse per side,
mirrored (a -> -a) about the face's midline; the concept mask is their union.

Ellipse. Points p_1..p_m of one component (in mask pixels) give a mean mu and the population
covariance S = (1/m) sum (p_i - mu)(p_i - mu)^T. Every S gets a minimum-variance regulariser,
S += (MIN_STD_IOD * iod)^2 I with iod the inter-ocular distance in mask pixels, so collinear or
near-coincident point sets still draw a band about 0.1 iod thick instead of a degenerate line.
A pixel belongs to the component when (x - mu)^T S^-1 (x - mu) <= r^2 with r^2 = -2 ln(1 - conf),
the chi-square quantile with 2 degrees of freedom at confidence ``conf``. Its area is
pi * sqrt(det S) * r^2.

Default confidence: 1 - 1/e ~= 0.632 (r^2 = 2). Points spread evenly on an ellipse's outline (or
its four vertices, which is how most components here are written) have covariance diag(A^2, B^2)/2
in the ellipse's axes, so at r^2 = 2 the fitted ellipse is exactly the outlined one; at 0.9 the
masks would be 1.52x wider than the outlines in each direction. The offsets are average adult face
proportions (an educated guess, not a fit); ``score_against_exact`` measures them against
SynthFaces' exact masks.

Coordinates. Landmarks are integer pixel indices of the 178x218 aligned image, a pixel index i
covering [i, i+1). Masks live in the classifier's CROP frame (rows 57..185, cols 25..153, 128x128)
scaled to ``mask_size``: x_mask = (x - 25 + 0.5) * S / 128, and mask pixel j is tested at its
centre j + 0.5, the same half-pixel convention as bilinear/area resizing without corner alignment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from facebias.faces.concepts import (
    ATTRIBUTE_OF_CONCEPT,
    FACE_PARTS,
    LOCAL_CONCEPT_REGION,
    LOCAL_CONCEPTS,
    NONLOCAL_CONCEPTS,
)
from facebias.faces.geometry import CROP_LEFT, CROP_SIZE, CROP_TOP

DEFAULT_CONFIDENCE = 1.0 - math.exp(-1.0)
DEFAULT_MASK_SIZE = 56
MIN_STD_IOD = 0.03  # minimum standard deviation of every ellipse, in inter-ocular distances

Point = tuple[str, float, float]  # (anchor, a along u, b along v)

# Anchors as weights over the five landmarks (lefteye, righteye, nose, leftmouth, rightmouth).
_ANCHOR_WEIGHTS = {
    "LE": (1.0, 0.0, 0.0, 0.0, 0.0),
    "RE": (0.0, 1.0, 0.0, 0.0, 0.0),
    "N": (0.0, 0.0, 1.0, 0.0, 0.0),
    "LM": (0.0, 0.0, 0.0, 1.0, 0.0),
    "RM": (0.0, 0.0, 0.0, 0.0, 1.0),
    "E": (0.5, 0.5, 0.0, 0.0, 0.0),
    "M": (0.0, 0.0, 0.0, 0.5, 0.5),
    "EN": (0.25, 0.25, 0.5, 0.0, 0.0),
}
_MIRROR_ANCHOR = {"LE": "RE", "RE": "LE", "LM": "RM", "RM": "LM", "N": "N", "E": "E", "M": "M", "EN": "EN"}


def _diamond(anchor: str, a: float, b: float, half_a: float, half_b: float) -> list[Point]:
    """The four vertices of an axis-aligned (in the face frame) ellipse centred at anchor + (a, b)."""
    return [
        (anchor, a - half_a, b),
        (anchor, a + half_a, b),
        (anchor, a, b - half_b),
        (anchor, a, b + half_b),
    ]


def _mirror(points: list[Point]) -> list[Point]:
    """The same component on the other side of the face (left <-> right anchors, a -> -a)."""
    return [(_MIRROR_ANCHOR[anchor], -a, b) for anchor, a, b in points]


def _paired(points_on_left: list[Point]) -> list[list[Point]]:
    return [points_on_left, _mirror(points_on_left)]


_MOUTH = [("LM", -0.03, 0.0), ("RM", 0.03, 0.0), ("M", 0.0, -0.12), ("M", 0.0, 0.16)]

# concept -> components -> points. Offsets in (u, v) units, see the module docstring.
CONCEPT_POINTS: dict[str, list[list[Point]]] = {
    # both eyes: the pupil landmark with the eye corners (+-0.22 iod) and lids (+-0.09 eye-mouth)
    "eyes": _paired(_diamond("LE", 0.0, 0.0, 0.22, 0.09)),
    # brows: outer end, inner end, top and bottom of the arch, about a quarter of v above the pupil
    "brows": _paired([("LE", -0.30, -0.20), ("LE", 0.22, -0.24), ("LE", -0.04, -0.32), ("LE", -0.04, -0.20)]),
    # nose: the tip, both alae beside it, and the bridge half-way up to the eye midpoint
    "nose": [[("N", -0.19, -0.02), ("N", 0.19, -0.02), ("N", 0.0, 0.07), ("EN", 0.0, 0.0), ("E", 0.0, 0.15)]],
    # mouth: the two corners plus the top of the upper lip and the bottom of the lower lip
    "mouth": [_MOUTH],
    # cheeks: below each eye, lateral to the nose, above the mouth corner
    "cheeks": _paired(_diamond("LE", -0.08, 0.50, 0.18, 0.20)),
    # chin: below the lower lip, narrower than the mouth
    "chin": [_diamond("M", 0.0, 0.50, 0.28, 0.24)],
    # forehead: above the brows up to about the hairline
    "forehead": [_diamond("E", 0.0, -0.70, 0.60, 0.30)],
    # hair: a band across the top of the head above the forehead, and a band down each side of
    # the face from the temple to about the mouth corners (long hair; background on short hair)
    "hair": [_diamond("E", 0.0, -1.35, 1.10, 0.40), *_paired(_diamond("LE", -0.75, -0.35, 0.25, 0.75))],
    # eyeglasses: one band over both eyes, from frame edge to frame edge
    "Eyeglasses": [_diamond("E", 0.0, 0.0, 0.90, 0.24)],
    # mustache: the upper lip between the nose and the mouth, corner to corner
    "Mustache": [[("LM", 0.02, -0.14), ("RM", -0.02, -0.14), ("M", 0.0, -0.27), ("M", 0.0, -0.09)]],
    # beard: chin and jaw below the mouth line
    "Beard": [_diamond("M", 0.0, 0.40, 0.70, 0.45)],
    # lipstick: the mouth itself
    "Wearing_Lipstick": [_MOUTH],
    # hat: the crown, from above the head down to the top of the forehead
    "Wearing_Hat": [_diamond("E", 0.0, -1.60, 1.30, 0.70)],
    # bangs: the upper forehead
    "Bangs": [_diamond("E", 0.0, -0.85, 0.65, 0.28)],
    # earrings: the ear lobes, beside the face at about nose-tip to mouth level
    "Wearing_Earrings": _paired(_diamond("LE", -0.68, 0.72, 0.10, 0.14)),
}
assert set(CONCEPT_POINTS) == set(LOCAL_CONCEPTS)


def chi2_radius_squared(confidence: float) -> float:
    """r^2 such that a 2-D Gaussian puts `confidence` of its mass inside its Mahalanobis r-ellipse."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return -2.0 * math.log1p(-confidence)


@dataclass
class FaceDictionary:
    """Concept ellipses for n faces; masks are drawn on demand so 10k faces need no 0.5 GB up front.

    means: (n, C, K, 2) and covariances (n, C, K, 2, 2) of K components per concept (concepts
    with fewer components repeat one, which leaves their union unchanged), in mask pixels (x, y).
    present: (n, C) bool, False where an attribute says the concept is absent (mask empty).
    groups: non-local concepts as 0/1 int64 arrays per image (Male, Young, Pale_Skin, grayscale).
    """

    concepts: tuple[str, ...]
    regions: tuple[str, ...]
    mask_size: int
    confidence: float
    means: torch.Tensor
    covariances: torch.Tensor
    present: torch.Tensor
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    _masks: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def radius_squared(self) -> float:
        return chi2_radius_squared(self.confidence)

    @property
    def masks(self) -> torch.Tensor:
        """All masks, bool (n, C, S, S) in crop coordinates (drawn once, then cached)."""
        if self._masks is None:
            chunks = [self.masks_for(slice(i, i + 256)) for i in range(0, len(self), 256)]
            empty = torch.zeros(0, len(self.concepts), self.mask_size, self.mask_size, dtype=torch.bool)
            self._masks = torch.cat(chunks) if chunks else empty
        return self._masks

    def masks_for(self, indices: torch.Tensor | Sequence[int] | slice) -> torch.Tensor:
        """Masks of some faces only, bool (len(indices), C, S, S): what a batched loader asks for."""
        # Each row y of an ellipse is one interval of x: (x-mx)^T P (x-mx) <= r^2 is a quadratic in
        # dx = x - mx, solved per row, so the per-pixel work is two comparisons.
        means = self.means[indices].to(torch.float64)
        cov = self.covariances[indices].to(torch.float64)
        s_xx, s_xy, s_yy = cov[..., 0, 0, None], cov[..., 0, 1, None], cov[..., 1, 1, None]
        det = s_xx * s_yy - s_xy * s_xy  # closed-form 2x2 inverse (linalg.inv has a large per-call cost)
        p_xx, p_xy, p_yy = s_yy / det, -s_xy / det, s_xx / det
        centres = torch.arange(self.mask_size, dtype=torch.float64) + 0.5
        dy = centres - means[..., 1, None]  # (b, C, K, S) rows
        half_width = ((p_xy * dy).square() - p_xx * (p_yy * dy.square() - self.radius_squared)).sqrt() / p_xx
        middle = means[..., 0, None] - p_xy * dy / p_xx  # NaN half-width (row misses the ellipse) -> empty
        low = (middle - half_width).to(torch.float32)[..., None]  # (b, C, K, S, 1)
        high = (middle + half_width).to(torch.float32)[..., None]
        columns = centres.to(torch.float32)
        inside = ((columns >= low) & (columns <= high)).any(dim=2)  # union of the K components
        return inside & self.present[indices][..., None, None]

    def group_matrix(self, indices: torch.Tensor | Sequence[int] | slice | None = None) -> torch.Tensor:
        """Non-local groups as a (b, G) 0/1 tensor in the order of ``self.groups``."""
        columns = [torch.as_tensor(np.asarray(v)) for v in self.groups.values()]
        if not columns:
            n = len(self) if indices is None else len(torch.arange(len(self))[indices])
            return torch.zeros(n, 0, dtype=torch.int64)
        matrix = torch.stack(columns, dim=1).to(torch.int64)
        return matrix if indices is None else matrix[indices]


def _validate_landmarks(landmarks: np.ndarray | torch.Tensor) -> torch.Tensor:
    points = torch.as_tensor(np.asarray(landmarks), dtype=torch.float64)
    if points.ndim != 3 or points.shape[1:] != (5, 2):
        raise ValueError(
            f"landmarks must have shape (n, 5, 2) (x, y of lefteye, righteye, nose, leftmouth, rightmouth "
            f"in aligned-image pixels); got {tuple(points.shape)}"
        )
    if not torch.isfinite(points).all():
        bad = torch.nonzero(~torch.isfinite(points).all(dim=(1, 2))).flatten()[:5].tolist()
        raise ValueError(
            f"landmarks contain NaN/inf at rows {bad}; drop those faces or fix the landmark file"
        )
    iod = (points[:, 1] - points[:, 0]).norm(dim=1)
    if (iod <= 0).any():
        bad = torch.nonzero(iod <= 0).flatten()[:5].tolist()
        raise ValueError(
            f"landmarks at rows {bad} have both eyes at the same point; the face frame is undefined"
        )
    return points


def _attribute_column(attrs: Mapping[str, np.ndarray], name: str, n: int, why: str) -> np.ndarray:
    if name not in attrs:
        raise KeyError(f"attribute {name!r} is needed for {why} but attrs has only {sorted(attrs)}")
    column = np.asarray(attrs[name])
    if column.shape != (n,):
        raise ValueError(f"attribute {name!r} has shape {column.shape}; expected ({n},), one value per face")
    if not np.isin(column, (0, 1)).all():
        raise ValueError(f"attribute {name!r} must be 0/1 (convert CelebA's -1 to 0 first)")
    return column.astype(np.int64)


def _component_table(concepts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Dense tables for the points of all concepts, padded to K components and P points.

    Returns anchor weights (C, K, P, 5), offsets (C, K, P, 2) and point weights (C, K, P) (1 for a
    real point, 0 for padding) plus K. A concept with fewer components repeats its first one.
    """
    components = [CONCEPT_POINTS[c] for c in concepts]
    k_max = max(len(c) for c in components)
    p_max = max(len(points) for comps in components for points in comps)
    weights = torch.zeros(len(concepts), k_max, p_max, 5, dtype=torch.float64)
    offsets = torch.zeros(len(concepts), k_max, p_max, 2, dtype=torch.float64)
    used = torch.zeros(len(concepts), k_max, p_max, dtype=torch.float64)
    for ci, comps in enumerate(components):
        for k in range(k_max):
            points = comps[k] if k < len(comps) else comps[0]
            for p, (anchor, a, b) in enumerate(points):
                weights[ci, k, p] = torch.tensor(_ANCHOR_WEIGHTS[anchor], dtype=torch.float64)
                offsets[ci, k, p] = torch.tensor((a, b), dtype=torch.float64)
                used[ci, k, p] = 1.0
    return weights, offsets, used, k_max


def face_dictionary(
    landmarks: np.ndarray | torch.Tensor,
    attrs: Mapping[str, np.ndarray] | None = None,
    mask_size: int = DEFAULT_MASK_SIZE,
    confidence: float = DEFAULT_CONFIDENCE,
    concepts: Sequence[str] | None = None,
) -> FaceDictionary:
    """Build the Face Dictionary of n faces.

    landmarks: (n, 5, 2) aligned-image pixels (CelebA order). attrs: 0/1 arrays by attribute name;
    needed for attribute-conditioned concepts (ATTRIBUTE_OF_CONCEPT) and used for the non-local
    groups (any of Male, Young, Pale_Skin, grayscale present in attrs). concepts: default all local
    concepts when attrs is given, only the face parts when it is None (no attribute, no mask).
    """
    points = _validate_landmarks(landmarks)
    n = points.shape[0]
    if concepts is None:
        concepts = LOCAL_CONCEPTS if attrs is not None else FACE_PARTS
    unknown = [c for c in concepts if c not in CONCEPT_POINTS]
    if unknown:
        raise ValueError(f"unknown concepts {unknown}; the Face Dictionary knows {list(LOCAL_CONCEPTS)}")
    if not concepts:
        raise ValueError("concepts is empty; name at least one of " + ", ".join(LOCAL_CONCEPTS))
    if mask_size < 1:
        raise ValueError(f"mask_size must be a positive number of pixels, got {mask_size}")
    chi2_radius_squared(confidence)  # validates the confidence before any work

    # landmarks -> continuous mask coordinates of the crop
    scale = mask_size / CROP_SIZE
    shift = torch.tensor((CROP_LEFT - 0.5, CROP_TOP - 0.5), dtype=torch.float64)
    in_mask = (points - shift) * scale  # (n, 5, 2)
    u = in_mask[:, 1] - in_mask[:, 0]
    v = 0.5 * (in_mask[:, 3] + in_mask[:, 4]) - 0.5 * (in_mask[:, 0] + in_mask[:, 1])

    weights, offsets, used, _ = _component_table(concepts)
    anchors = torch.einsum("ckpl,nld->nckpd", weights, in_mask)
    xy = (
        anchors
        + offsets[None, ..., 0:1] * u[:, None, None, None, :]
        + offsets[None, ..., 1:2] * v[:, None, None, None, :]
    )
    count = used.sum(dim=-1)  # (C, K)
    w = (used / count[..., None])[None, ..., None]  # (1, C, K, P, 1)
    means = (xy * w).sum(dim=3)  # (n, C, K, 2)
    centred = (xy - means[:, :, :, None, :]) * used[None, ..., None]
    covariances = torch.einsum("nckpi,nckpj->nckij", centred * w, centred)
    min_var = (MIN_STD_IOD * u.norm(dim=1)) ** 2
    covariances = covariances + min_var[:, None, None, None, None] * torch.eye(2, dtype=torch.float64)

    present = torch.ones(n, len(concepts), dtype=torch.bool)
    groups: dict[str, np.ndarray] = {}
    if attrs is not None:
        for ci, concept in enumerate(concepts):
            if concept in ATTRIBUTE_OF_CONCEPT:
                attribute, value = ATTRIBUTE_OF_CONCEPT[concept]
                column = _attribute_column(attrs, attribute, n, f"the {concept!r} mask")
                present[:, ci] = torch.from_numpy(column == value)
        for name in NONLOCAL_CONCEPTS:
            if name in attrs:
                groups[name] = _attribute_column(attrs, name, n, f"the non-local group {name!r}")
    else:
        conditioned = [c for c in concepts if c in ATTRIBUTE_OF_CONCEPT]
        if conditioned:
            raise ValueError(
                f"concepts {conditioned} need attributes; pass attrs with {[ATTRIBUTE_OF_CONCEPT[c][0] for c in conditioned]}"
            )

    return FaceDictionary(
        concepts=tuple(concepts),
        regions=tuple(LOCAL_CONCEPT_REGION[c] for c in concepts),
        mask_size=mask_size,
        confidence=confidence,
        means=means.to(torch.float32),
        covariances=covariances.to(torch.float32),
        present=present,
        groups=groups,
    )


def dictionary_for_table(
    table,
    indices: np.ndarray | None = None,
    grayscale: np.ndarray | None = None,
    **options,
) -> FaceDictionary:
    """The Face Dictionary of a FaceTable's faces (all, or ``indices``); options as face_dictionary.

    The table's landmarks must be in the aligned 178x218 frame (CelebA's aligned set, SynthFaces).
    ``grayscale`` (0/1 per selected face) adds the grayscale group, which is a transform, not an
    attribute of the source.
    """
    if table.landmarks is None:
        raise ValueError(
            f"{table.source} table at {table.image_dir} has no landmarks; the Face Dictionary needs the five "
            f"aligned landmarks per face (CelebA's list_landmarks_align_celeba.txt or SynthFaces)"
        )
    rows = np.arange(len(table)) if indices is None else np.asarray(indices)
    attrs = {name: table.attrs[rows, i] for i, name in enumerate(table.attr_names)}
    if grayscale is not None:
        attrs["grayscale"] = np.asarray(grayscale)
    return face_dictionary(table.landmarks[rows], attrs, **options)


def exact_masks_to_crop(masks: torch.Tensor, size: int) -> torch.Tensor:
    """Aligned-frame masks (n, C, 218, 178) -> crop-frame masks (n, C, size, size), bool.

    The crop is rows 57..185, cols 25..153 (128x128); it is resized by area averaging and a pixel is
    on when at least half of the area it covers is on.
    """
    from facebias.faces.geometry import ALIGNED_HEIGHT, ALIGNED_WIDTH, CROP_BOTTOM, CROP_RIGHT

    masks = torch.as_tensor(masks)
    if masks.ndim != 4 or masks.shape[-2:] != (ALIGNED_HEIGHT, ALIGNED_WIDTH):
        raise ValueError(
            f"exact masks must have shape (n, C, {ALIGNED_HEIGHT}, {ALIGNED_WIDTH}) in the aligned frame; "
            f"got {tuple(masks.shape)}"
        )
    crop = masks[..., CROP_TOP:CROP_BOTTOM, CROP_LEFT:CROP_RIGHT].to(torch.float32)
    if size == CROP_SIZE:
        return crop >= 0.5
    n, c = crop.shape[:2]
    resized = torch.nn.functional.adaptive_avg_pool2d(crop.reshape(n * c, 1, CROP_SIZE, CROP_SIZE), size)
    return resized.reshape(n, c, size, size) >= 0.5


def score_against_exact(
    dictionary: FaceDictionary,
    exact_masks: torch.Tensor,
    exact_concepts: Sequence[str] = LOCAL_CONCEPTS,
) -> dict[str, float]:
    """Mean per-image IoU of each dictionary concept against exact aligned-frame masks.

    Images where both masks are empty (an absent attribute, correctly left empty) are skipped;
    a concept with no such image scores NaN.
    """
    exact_masks = torch.as_tensor(exact_masks)
    if exact_masks.shape[0] != len(dictionary):
        raise ValueError(
            f"exact masks are for {exact_masks.shape[0]} faces; the dictionary has {len(dictionary)}"
        )
    if exact_masks.ndim != 4 or exact_masks.shape[1] != len(exact_concepts):
        raise ValueError(
            f"exact masks have {tuple(exact_masks.shape)}; expected (n, {len(exact_concepts)}, 218, 178) "
            f"with channels {list(exact_concepts)}"
        )
    exact = exact_masks_to_crop(exact_masks, dictionary.mask_size)
    drawn = dictionary.masks
    scores: dict[str, float] = {}
    for ci, concept in enumerate(dictionary.concepts):
        if concept not in exact_concepts:
            continue
        truth = exact[:, exact_concepts.index(concept)]
        guess = drawn[:, ci]
        inter = (truth & guess).flatten(1).sum(1).double()
        union = (truth | guess).flatten(1).sum(1).double()
        keep = union > 0
        scores[concept] = float((inter[keep] / union[keep]).mean()) if keep.any() else float("nan")
    return scores


# CelebA's mean aligned landmarks (rounded): the frame random faces are jittered around.
_MEAN_LANDMARKS = ((69.0, 111.0), (108.0, 111.0), (88.5, 134.0), (72.0, 152.0), (105.0, 152.0))


def random_landmarks(n: int, seed: int = 0, jitter: float = 1.0) -> np.ndarray:
    """Plausible aligned landmarks (n, 5, 2) for tests and benchmarks when no face set is at hand.

    CelebA's mean shape under a random similarity (scale ~ 1 +- 0.06, roll ~ +-4 degrees, shift ~
    +-3 px) plus +-1.5 px per point, all scaled by ``jitter``.
    """
    rng = np.random.default_rng(seed)
    mean = np.asarray(_MEAN_LANDMARKS)
    centre = mean.mean(axis=0)
    scale = 1.0 + 0.06 * jitter * rng.standard_normal(n)
    angle = np.deg2rad(4.0 * jitter) * rng.standard_normal(n)
    rotation = np.stack(
        [np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2
    )
    shape = np.einsum("nij,pj->npi", rotation, mean - centre) * scale[:, None, None]
    shift = 3.0 * jitter * rng.standard_normal((n, 1, 2))
    noise = 1.5 * jitter * rng.standard_normal((n, 5, 2))
    return (centre + shape + shift + noise).astype(np.float32)
