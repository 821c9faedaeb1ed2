"""Face Dictionary: per-image binary concept masks drawn from CelebA's five landmarks or the 68 iBUG points.

Two anchor sets feed one engine: CONCEPT_POINTS places every concept from the five landmarks (below),
CONCEPT_POINTS_68 from the 68 points (further down: "The 68-point anchor set"); ``face_dictionary`` takes
(n, 5, 2) or (n, 68, 2) landmarks, and draws a face whose 68 points are missing (NaN: dlib could not place
it) from its five (``five=``), so every face gets every concept. ``dictionary_for_table(landmarks=68)`` finds
the points per source (SynthFaces: exact; otherwise dlib, cached) and records which faces fell back; on a table
without five landmarks (a plain folder) the faces dlib cannot place are left out instead (``FaceDictionary.kept``,
``left_out``), and a source where more than half fail stops (``faces.landmarks.TooManyFailuresError``).

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

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebias.faces.concepts import (
    ALL_CONCEPTS,
    ATTRIBUTE_OF_CONCEPT,
    CONCEPT_REGION,
    FACE_PARTS,
    LANDMARK68_CONCEPTS,
    LANDMARK68_PARTS,
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


# ---------------------------------------------------------------------------------------------
# The 68-point anchor set (Face Dictionary v2).
#
# An anchor is an affine combination of the 68 iBUG points, written {index: weight} with the weights
# summing to 1 (a vector between anchors: weights summing to 0). The face frame is the five-point one,
# from the five points dlib's 68 imply (faces.landmarks.five_from_68: eye centres = means of 36-41 and
# 42-47, mouth corners 48 and 54), so a point (anchor, a, b) means anchor + a*u + b*v as above, and the
# ellipse fit, the regulariser and the confidence are the same: one engine, two anchor sets.

N_POINTS_68 = 68
Anchor68 = dict[int, float]
Point68 = tuple[Anchor68, float, float]

# i -> its mirror image about the face's midline (iBUG order).
MIRROR_68 = (
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
)  # fmt: skip

# The mean 68-point face in the five-point frame: point i = E + a_i u + b_i v. Measured with dlib
# (faces.landmarks.landmarks_68) on the ten CelebA images of tests/data/celeba_sample, each face in the
# frame of its own five_from_68 points, averaged and made mirror-symmetric (test_dictionary68 recomputes
# it). It draws the 68-point concepts from five landmarks, for faces dlib cannot place.
MEAN_SHAPE_68 = (
    (-1.180, -0.021), (-1.170, 0.265), (-1.128, 0.551), (-1.060, 0.833),
    (-0.950, 1.095), (-0.761, 1.328), (-0.540, 1.525), (-0.285, 1.682),
    (0.000, 1.728), (0.285, 1.682), (0.540, 1.525), (0.761, 1.328),
    (0.950, 1.095), (1.060, 0.833), (1.128, 0.551), (1.170, 0.265),
    (1.180, -0.021), (-0.933, -0.233), (-0.781, -0.332), (-0.585, -0.345),
    (-0.390, -0.301), (-0.200, -0.227), (0.200, -0.227), (0.390, -0.301),
    (0.585, -0.345), (0.781, -0.332), (0.933, -0.233), (0.000, -0.014),
    (0.000, 0.167), (0.000, 0.346), (0.000, 0.531), (-0.209, 0.657),
    (-0.112, 0.694), (0.000, 0.725), (0.112, 0.694), (0.209, 0.657),
    (-0.695, -0.005), (-0.571, -0.068), (-0.417, -0.061), (-0.295, 0.030),
    (-0.439, 0.054), (-0.583, 0.051), (0.295, 0.030), (0.417, -0.061),
    (0.571, -0.068), (0.695, -0.005), (0.583, 0.051), (0.439, 0.054),
    (-0.440, 1.000), (-0.277, 0.930), (-0.116, 0.897), (0.000, 0.920),
    (0.116, 0.897), (0.277, 0.930), (0.440, 1.000), (0.289, 1.168),
    (0.124, 1.245), (0.000, 1.264), (-0.124, 1.245), (-0.289, 1.168),
    (-0.363, 1.014), (-0.119, 0.998), (0.000, 1.003), (0.119, 0.998),
    (0.363, 1.014), (0.117, 1.091), (0.000, 1.106), (-0.117, 1.091),
)  # fmt: skip


def _at(*indices: int) -> Anchor68:
    """The mean of some of the 68 points."""
    return {i: 1.0 / len(indices) for i in indices}


def _mix(*terms: tuple[float, Anchor68]) -> Anchor68:
    """sum of coefficient * anchor (affine when the coefficients of the anchors sum to 1)."""
    out: dict[int, float] = {}
    for coefficient, anchor in terms:
        for i, w in anchor.items():
            out[i] = out.get(i, 0.0) + coefficient * w
    return {i: w for i, w in out.items() if w != 0.0}


def _lerp(a: Anchor68, b: Anchor68, t: float) -> Anchor68:
    return _mix((1.0 - t, a), (t, b))


def _about(point: Anchor68, centre: Anchor68, k: float) -> Anchor68:
    """centre + k (point - centre): a point pushed out from (k > 1) or pulled towards a centre."""
    return _mix((k, point), (1.0 - k, centre))


def _cross(centre: Anchor68, across: tuple[float, Anchor68, Anchor68], down: tuple[float, Anchor68, Anchor68],
           a: float = 0.0, b: float = 0.0) -> list[Point68]:  # fmt: skip
    """Four vertices centre +- s (to - from) for the half-axes across = (s, to, from) and down likewise:
    an ellipse whose axes follow the face's own landmarks (its fit at r^2 = 2 passes through them)."""
    vertices = []
    for s, to, frm in (across, down):
        for sign in (-1.0, 1.0):
            vertices.append((_mix((1.0, centre), (sign * s, to), (-sign * s, frm)), a, b))
    return vertices


def _band(centre: Anchor68, across: tuple[float, Anchor68, Anchor68], b: float, half_b: float) -> list[Point68]:
    """An ellipse about centre + b v, half-axis s (to - from) across (a width from the landmarks) and half_b v
    down (a height in eye-to-mouth distances)."""
    s, to, frm = across
    return [(_mix((1.0, centre), (-s, to), (s, frm)), 0.0, b), (_mix((1.0, centre), (s, to), (-s, frm)), 0.0, b),
            (centre, 0.0, b - half_b), (centre, 0.0, b + half_b)]  # fmt: skip


def _around(centre: Anchor68, a: float, b: float, half_a: float, half_b: float) -> list[Point68]:
    """The four vertices of a face-frame axis-aligned ellipse about a 68-point anchor (cf. _diamond)."""
    return [(centre, a - half_a, b), (centre, a + half_a, b), (centre, a, b - half_b), (centre, a, b + half_b)]


def _points(indices, about: Anchor68 | None = None, k: float = 1.0, a: float = 0.0, b: float = 0.0) -> list[Point68]:
    """Landmarks as they are, or pushed out from / pulled towards ``about`` by k."""
    return [(_at(i) if about is None else _about(_at(i), about, k), a, b) for i in indices]


def _mirror68(points: list[Point68]) -> list[Point68]:
    return [({MIRROR_68[i]: w for i, w in anchor.items()}, -a, b) for anchor, a, b in points]


def _paired68(points_on_left: list[Point68]) -> list[list[Point68]]:
    return [points_on_left, _mirror68(points_on_left)]


# The five-point anchors as 68-point ones (what five_from_68 takes), so five-point components carry over.
_FIVE_AS_68 = {
    "LE": _at(36, 37, 38, 39, 40, 41), "RE": _at(42, 43, 44, 45, 46, 47), "N": _at(30), "LM": _at(48),
    "RM": _at(54),
}  # fmt: skip
_FIVE_AS_68["E"] = _mix((0.5, _FIVE_AS_68["LE"]), (0.5, _FIVE_AS_68["RE"]))
_FIVE_AS_68["M"] = _mix((0.5, _FIVE_AS_68["LM"]), (0.5, _FIVE_AS_68["RM"]))
_FIVE_AS_68["EN"] = _mix((0.5, _FIVE_AS_68["E"]), (0.5, _FIVE_AS_68["N"]))


def _from_five(components: list[list[Point]]) -> list[list[Point68]]:
    return [[(_FIVE_AS_68[anchor], a, b) for anchor, a, b in points] for points in components]


def _to_five(components: list[list[Point68]]) -> list[list[Point]]:
    """A 68-point definition drawn on the mean face placed by five landmarks: (W, a, b) -> (E, a + sum w_i a_i,
    b + sum w_i b_i). Exact for the mean face; the five-point fallback of the 68-point concepts."""
    out = []
    for points in components:
        converted = []
        for anchor, a, b in points:
            da = sum(w * MEAN_SHAPE_68[i][0] for i, w in anchor.items())
            db = sum(w * MEAN_SHAPE_68[i][1] for i, w in anchor.items())
            converted.append(("E", round(a + da, 6), round(b + db, 6)))
        out.append(converted)
    return out


_LEFT_BROW = range(17, 22)
_BROWS = _at(*range(17, 27))
_NOSE_TIP, _SUBNASALE = _at(30), _at(33)
_MOUTH_CENTRE = _at(48, 51, 54, 57)


def _eye68(first: int = 36) -> list[Point68]:
    """An eye: its corners 1.2x and its lids (means of 37-38, 40-41) 1.5x out from its centre: the eye
    opening with the lids around it."""
    centre = _at(*range(first, first + 6))
    return [(_about(_at(first), centre, 1.2), 0.0, 0.0), (_about(_at(first + 3), centre, 1.2), 0.0, 0.0),
            (_about(_at(first + 1, first + 2), centre, 1.5), 0.0, 0.0),
            (_about(_at(first + 4, first + 5), centre, 1.5), 0.0, 0.0)]  # fmt: skip


_EYES_68 = _paired68(_eye68())
_EYE_BAGS_68 = _paired68(_cross(_at(40, 41), (0.45, _at(39), _at(36)), (0.06, _at(40, 41), _at(37, 38)), b=0.10))
_BROWS_68 = _paired68(_points(_LEFT_BROW, _at(*_LEFT_BROW), 1.25))
_NOSE_68 = [_cross(_at(27, 33), (0.59, _at(35), _at(31)), (0.53, _at(33), _at(27)), b=0.02)]
_MOUTH_68 = [[(_about(_at(i), _MOUTH_CENTRE, k), 0.0, 0.0) for i, k in ((48, 1.0), (54, 1.0), (51, 1.15), (57, 1.15))]]
_CHEEKS_68 = _paired68(_cross(_at(41, 31, 48, 1), (0.27, _at(31), _at(1)), (0.26, _at(48), _at(41))))
_BEARD_68 = [[*_points(range(1, 16)), *_points((31, 35))]]
_JAW_68 = [[*_points(range(s, s + 5)), *_points(range(s, s + 5), _NOSE_TIP, 0.88)] for s in (0, 4, 8, 12)]

# concept -> components -> points, over the 68 points. Offsets (a, b) as in CONCEPT_POINTS; the comment
# says which landmarks outline the concept.
CONCEPT_POINTS_68: dict[str, list[list[Point68]]] = {
    # each eye: its six points (corners, lids), widened to the lids around the opening
    "eyes": _EYES_68,
    "left_eye": _EYES_68[:1],
    "right_eye": _EYES_68[1:],
    # eye bags: a band under each lower lid (40-41), as wide as the eye (36-39)
    "eye_bags": _EYE_BAGS_68,
    # brows: each brow's five points, 1.25x along the brow (the points stop short of its ends)
    "brows": _BROWS_68,
    # nose: from the bridge top (27) to the subnasale (33), as wide as 1.18x the alae (31-35)
    "nose": _NOSE_68,
    # nose bridge: 27-30, a band 0.12 inter-ocular distances wide
    "nose_bridge": [[*_points(range(27, 31), a=-0.06), *_points(range(27, 31), a=0.06)]],
    # nostrils: the base of the nose, 31-35 widened 1.2x, 0.16 eye-to-mouth tall
    "nostrils": [_band(_at(31, 32, 33, 34, 35), (0.6, _at(35), _at(31)), 0.0, 0.08)],
    # mouth: the corners (48, 54), the top of the upper lip (51) and the bottom of the lower (57), 1.15x
    "mouth": _MOUTH_68,
    # upper lip: the outer upper contour 48-54 and the inner upper contour 60-64
    "upper_lip": [_points((*range(48, 55), *range(60, 65)))],
    # lower lip: the outer lower contour 54-59, 48 and the inner lower contour 64-67, 60
    "lower_lip": [_points((*range(54, 60), 48, *range(64, 68), 60))],
    # mouth corners: a spot 0.12 inter-ocular wide at each corner (48, 54)
    "mouth_corners": _paired68(_around(_at(48), 0.0, 0.0, 0.06, 0.05)),
    # cheeks: between the lower lid (41), the ala (31), the mouth corner (48) and the jaw (1)
    "cheeks": _CHEEKS_68,
    # chin: below the lower lip (57) two thirds of the way to the chin point (8), 0.8x as wide as 6-10
    "chin": [_cross(_lerp(_at(57), _at(8), 0.65), (0.4, _at(10), _at(6)), (0.3, _at(8), _at(57)))],
    # jaw: the jaw line 0-16 in four pieces, a band reaching 12 % of the way in towards the nose tip
    "jaw": _JAW_68,
    # forehead: above the brows (17-26), as wide as they are, 0.64 eye-to-mouth distances tall
    "forehead": [_band(_BROWS, (0.5, _at(26), _at(17)), -0.55, 0.32)],
    # hair: as the five-point dictionary draws it (68 points add nothing above the brows)
    "hair": _from_five(CONCEPT_POINTS["hair"]),
    # eyeglasses: a band over both eyes, 0.96x the face's width at eye level (jaw 0-16), 0.6 eye-to-mouth tall
    "Eyeglasses": [_band(_at(*range(36, 48)), (0.48, _at(16), _at(0)), 0.02, 0.3)],
    # mustache: between the subnasale (33) and the top of the upper lip (50-52), as wide as the mouth
    "Mustache": [_cross(_lerp(_at(50, 51, 52), _SUBNASALE, 0.2), (0.5, _at(54), _at(48)),
                        (0.25, _at(51), _SUBNASALE))],
    # beard: the lower face: the jaw 1-15 and the alae (31, 35)
    "Beard": _BEARD_68,
    "5_o_Clock_Shadow": _BEARD_68,
    # goatee: between the lower lip (57) and the chin (8), a little over half as wide as 5-11
    "Goatee": [_cross(_lerp(_at(57), _at(8), 0.45), (0.28, _at(11), _at(5)), (0.45, _at(8), _at(57)))],
    # double chin: under the chin point (8)
    "Double_Chin": [_band(_at(8), (0.3, _at(11), _at(5)), 0.12, 0.12)],
    "Wearing_Lipstick": _MOUTH_68,
    "Big_Lips": _MOUTH_68,
    # the mouth opening: the inner lips 60-67
    "Mouth_Slightly_Open": [_points(range(60, 68))],
    # hat: the crown above the brows, 1.4x the face's width (0-16)
    "Wearing_Hat": [_band(_BROWS, (0.7, _at(16), _at(0)), -1.0, 0.6)],
    # bangs: hair over the forehead down to the brows, as wide as the face
    "Bangs": [_band(_BROWS, (0.5, _at(16), _at(0)), -0.5, 0.4)],
    "Receding_Hairline": [_band(_BROWS, (0.45, _at(16), _at(0)), -0.85, 0.2)],
    # earrings: the ear lobes, just outside the jaw line between 1 and 2 (15 and 14)
    "Wearing_Earrings": _paired68(_around(_lerp(_at(1), _at(2), 0.6), -0.06, 0.0, 0.06, 0.14)),
    # sideburns: inside the jaw line from above the eye line (0) down to 2
    "Sideburns": _paired68([(_at(0), 0.04, -0.35), (_at(0), 0.12, -0.35), (_at(2), 0.04, 0.0), (_at(2), 0.12, 0.0)]),
    "Bags_Under_Eyes": _EYE_BAGS_68,
    "Narrow_Eyes": _EYES_68,
    "Arched_Eyebrows": _BROWS_68,
    "Bushy_Eyebrows": _BROWS_68,
    "Big_Nose": _NOSE_68,
    # pointy nose: the tip, from half-way up 29-30 to the subnasale, 0.6x the alae's width
    "Pointy_Nose": [[(_lerp(_at(29), _NOSE_TIP, 0.5), 0.0, 0.0), (_SUBNASALE, 0.0, 0.02),
                     (_about(_at(31), _NOSE_TIP, 0.6), 0.0, 0.0), (_about(_at(35), _NOSE_TIP, 0.6), 0.0, 0.0)]],
    # high cheekbones: below the outer eye corner towards the jaw (41 -> 1)
    "High_Cheekbones": _paired68(_around(_lerp(_at(41), _at(1), 0.45), 0.0, 0.10, 0.18, 0.12)),
    "Rosy_Cheeks": _CHEEKS_68,
}
assert set(CONCEPT_POINTS_68) == set(ALL_CONCEPTS), set(ALL_CONCEPTS) ^ set(CONCEPT_POINTS_68)
# the five-point dictionary draws the 68-point concepts on the mean 68-point face (its fallback for them)
CONCEPT_POINTS.update({c: _to_five(CONCEPT_POINTS_68[c]) for c in LANDMARK68_CONCEPTS})


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
    landmarks: the landmark set asked for (5 or 68); fallback: (n,) bool, True where a face was drawn
    from its five landmarks instead of 68 (all False for landmarks=5); landmark_info: where the points
    came from and which faces fell back, for the run's record (``describe_landmarks``).
    kept: (rows asked for,) bool from ``dictionary_for_table``, False where a face was left out (dlib placed
    no face and the table has no five landmarks to draw it from): the dictionary's n faces are the kept
    rows, in order, and a caller restricts its images to them; None where nothing was asked to be left out.
    left_out: file name -> why, for every face left out (``describe_left_out``).
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
    landmarks: int = 5
    fallback: torch.Tensor | None = None
    landmark_info: dict[str, Any] = field(default_factory=dict)
    kept: np.ndarray | None = None
    left_out: dict[str, str] = field(default_factory=dict)

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

    def describe_landmarks(self) -> dict[str, Any]:
        """Which landmarks drew the masks: the set asked for, how many faces got 68 points and how many fell
        back to five (with the first files and reasons where the caller gave them)."""
        fallback = int(self.fallback.sum()) if self.fallback is not None else 0
        with_68 = len(self) - fallback if self.landmarks == N_POINTS_68 else 0
        return {"requested": self.landmarks, "faces": len(self), "with_68": with_68, "fallback_5": fallback,
                **self.landmark_info}

    def describe_left_out(self) -> dict[str, Any]:
        """The faces left out of the dictionary (and so of the analysis), for the run's record: how many, every
        one by file name, and why."""
        return {"count": len(self.left_out), "files": list(self.left_out), "reasons": dict(self.left_out),
                "rule": "faces dlib places no 68 points on, where the table has no five landmarks to draw them "
                        "from (a folder without landmark columns), are left out of the dictionary and the analysis"}


_SHAPE_HELP = ("landmarks must have shape (n, 5, 2) (x, y of lefteye, righteye, nose, leftmouth, rightmouth in "
               "aligned-image pixels) or (n, 68, 2) (the iBUG 68 points)")


def _validate_five(points: torch.Tensor, what: str = "landmarks") -> torch.Tensor:
    if not torch.isfinite(points).all():
        bad = torch.nonzero(~torch.isfinite(points).all(dim=(1, 2))).flatten()[:5].tolist()
        raise ValueError(f"{what} contain NaN/inf at rows {bad}; drop those faces or fix the landmark file")
    iod = (points[:, 1] - points[:, 0]).norm(dim=1)
    if (iod <= 0).any():
        bad = torch.nonzero(iod <= 0).flatten()[:5].tolist()
        raise ValueError(f"{what} at rows {bad} have both eyes at the same point; the face frame is undefined")
    return points


def _five_of_68(points: torch.Tensor) -> torch.Tensor:
    """(n, 68, 2) -> (n, 5, 2) as faces.landmarks.five_from_68 (eye centres, nose tip 30, corners 48, 54)."""
    return torch.stack([points[:, 36:42].mean(dim=1), points[:, 42:48].mean(dim=1), points[:, 30], points[:, 48],
                        points[:, 54]], dim=1)  # fmt: skip


def _frame_points(landmarks, five) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(five-point frame (n, 5, 2), 68 points or None, fallback rows (n,) bool), validated."""
    points = torch.as_tensor(np.asarray(landmarks), dtype=torch.float64)
    if points.ndim != 3 or points.shape[1:] not in ((5, 2), (N_POINTS_68, 2)):
        raise ValueError(f"{_SHAPE_HELP}; got {tuple(points.shape)}")
    n = points.shape[0]
    if points.shape[1] == 5:
        return _validate_five(points), None, torch.zeros(n, dtype=torch.bool)
    fallback = ~torch.isfinite(points).all(dim=(1, 2))
    frame = _five_of_68(torch.where(fallback[:, None, None], torch.zeros_like(points), points))
    if fallback.any():
        rows = torch.nonzero(fallback).flatten()
        if five is None:
            raise ValueError(f"faces at rows {rows[:5].tolist()} have no 68 points (NaN: dlib could not place "
                             f"them); pass their five landmarks (five=, (n, 5, 2)) to draw them from those")
        five = torch.as_tensor(np.asarray(five), dtype=torch.float64)
        if five.shape != (n, 5, 2):
            raise ValueError(f"five= must have shape ({n}, 5, 2) like the 68 points' faces; got {tuple(five.shape)}")
        frame[rows] = _validate_five(five[rows], "five landmarks of the fallback faces")
    _validate_five(frame, "landmarks (the five points of the 68)")
    return frame, points, fallback


def _attribute_column(attrs: Mapping[str, np.ndarray], name: str, n: int, why: str) -> np.ndarray:
    if name not in attrs:
        raise KeyError(f"attribute {name!r} is needed for {why} but attrs has only {sorted(attrs)}")
    column = np.asarray(attrs[name])
    if column.shape != (n,):
        raise ValueError(f"attribute {name!r} has shape {column.shape}; expected ({n},), one value per face")
    if not np.isin(column, (0, 1)).all():
        raise ValueError(f"attribute {name!r} must be 0/1 (convert CelebA's -1 to 0 first)")
    return column.astype(np.int64)


def _anchor_vector(anchor: str | Anchor68, n_points: int) -> tuple[float, ...]:
    if isinstance(anchor, str):
        return _ANCHOR_WEIGHTS[anchor]
    weights = [0.0] * n_points
    for i, w in anchor.items():
        weights[i] = w
    return tuple(weights)


@functools.lru_cache(maxsize=32)
def _component_table(concepts: tuple[str, ...], n_points: int = 5
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:  # fmt: skip
    """Dense tables for the points of all concepts, padded to K components and P points.

    n_points = 5: CONCEPT_POINTS over the five landmarks; 68: CONCEPT_POINTS_68 over the 68. Returns anchor
    weights (C, K, P, L) over the L landmarks, offsets (C, K, P, 2) and point weights (C, K, P) (1 for a
    real point, 0 for padding) plus K. A concept with fewer components repeats its first one.
    """
    table = CONCEPT_POINTS if n_points == 5 else CONCEPT_POINTS_68
    components = [table[c] for c in concepts]
    k_max = max(len(c) for c in components)
    p_max = max(len(points) for comps in components for points in comps)
    weights = torch.zeros(len(concepts), k_max, p_max, n_points, dtype=torch.float64)
    offsets = torch.zeros(len(concepts), k_max, p_max, 2, dtype=torch.float64)
    used = torch.zeros(len(concepts), k_max, p_max, dtype=torch.float64)
    for ci, comps in enumerate(components):
        for k in range(k_max):
            points = comps[k] if k < len(comps) else comps[0]
            for p, (anchor, a, b) in enumerate(points):
                weights[ci, k, p] = torch.tensor(_anchor_vector(anchor, n_points), dtype=torch.float64)
                offsets[ci, k, p] = torch.tensor((a, b), dtype=torch.float64)
                used[ci, k, p] = 1.0
    return weights, offsets, used, k_max


def _to_mask_frame(points: torch.Tensor, mask_size: int) -> torch.Tensor:
    """Aligned-image pixel indices -> continuous mask coordinates of the crop (see the module docstring)."""
    shift = torch.tensor((CROP_LEFT - 0.5, CROP_TOP - 0.5), dtype=torch.float64)
    return (points - shift) * (mask_size / CROP_SIZE)


def _ellipses(points: torch.Tensor, frame: torch.Tensor, concepts: tuple[str, ...], n_points: int
              ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Means (m, C, K, 2) and regularised covariances (m, C, K, 2, 2) from landmarks in mask coordinates:
    points (m, L, 2) are the anchors' landmarks, frame (m, 5, 2) the five points spanning u and v."""
    u = frame[:, 1] - frame[:, 0]
    v = 0.5 * (frame[:, 3] + frame[:, 4]) - 0.5 * (frame[:, 0] + frame[:, 1])
    weights, offsets, used, _ = _component_table(concepts, n_points)
    anchors = torch.einsum("ckpl,nld->nckpd", weights, points)
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
    return means, covariances + min_var[:, None, None, None, None] * torch.eye(2, dtype=torch.float64)


def _pad_components(t: torch.Tensor, k: int) -> torch.Tensor:
    """Repeat the first component up to k components (the union is unchanged)."""
    if t.shape[2] == k:
        return t
    return torch.cat([t, t[:, :, :1].expand(-1, -1, k - t.shape[2], *t.shape[3:])], dim=2)


def default_concepts(attrs: Mapping[str, np.ndarray] | None, landmarks: int = 5) -> tuple[str, ...]:
    """What face_dictionary draws when not told: five points: every local concept (attrs given; each
    conditioning attribute is then required) or the face parts; 68 points: every concept of both
    dictionaries whose conditioning attribute attrs has (all parts without attrs)."""
    if landmarks == 5:
        return LOCAL_CONCEPTS if attrs is not None else FACE_PARTS
    if attrs is None:
        return (*FACE_PARTS, *LANDMARK68_PARTS)
    return tuple(c for c in ALL_CONCEPTS if c not in ATTRIBUTE_OF_CONCEPT or ATTRIBUTE_OF_CONCEPT[c][0] in attrs)


def face_dictionary(
    landmarks: np.ndarray | torch.Tensor,
    attrs: Mapping[str, np.ndarray] | None = None,
    mask_size: int = DEFAULT_MASK_SIZE,
    confidence: float = DEFAULT_CONFIDENCE,
    concepts: Sequence[str] | None = None,
    five: np.ndarray | torch.Tensor | None = None,
    landmark_info: Mapping[str, Any] | None = None,
) -> FaceDictionary:
    """Build the Face Dictionary of n faces.

    landmarks: (n, 5, 2) aligned-image pixels (CelebA order), or (n, 68, 2) iBUG points in the same frame,
    whose NaN rows (faces dlib could not place) are drawn from their ``five`` landmarks ((n, 5, 2); only
    those rows are read) with the five-point dictionary. attrs: 0/1 arrays by attribute name; needed for
    attribute-conditioned concepts (ATTRIBUTE_OF_CONCEPT) and used for the non-local groups (any of Male,
    Young, Pale_Skin, grayscale present in attrs). concepts: default ``default_concepts(attrs, 5 | 68)``.
    landmark_info: where the points came from, kept for ``describe_landmarks``.
    """
    frame, points68, fallback = _frame_points(landmarks, five)
    n_points = 5 if points68 is None else N_POINTS_68
    n = frame.shape[0]
    if concepts is None:
        concepts = default_concepts(attrs, n_points)
    concepts = tuple(concepts)
    unknown = [c for c in concepts if c not in CONCEPT_REGION]
    if unknown:
        raise ValueError(f"unknown concepts {unknown}; the Face Dictionary knows {list(ALL_CONCEPTS)}")
    if not concepts:
        raise ValueError("concepts is empty; name at least one of " + ", ".join(ALL_CONCEPTS))
    if mask_size < 1:
        raise ValueError(f"mask_size must be a positive number of pixels, got {mask_size}")
    chi2_radius_squared(confidence)  # validates the confidence before any work

    frame = _to_mask_frame(frame, mask_size)
    if points68 is None:
        means, covariances = _ellipses(frame, frame, concepts, 5)
    else:
        ok = ~fallback
        fitted = {}
        if ok.any():
            fitted[True] = _ellipses(_to_mask_frame(points68[ok], mask_size), frame[ok], concepts, N_POINTS_68)
        if fallback.any():
            fitted[False] = _ellipses(frame[fallback], frame[fallback], concepts, 5)
        k = max(m.shape[2] for m, _ in fitted.values())
        means = torch.zeros(n, len(concepts), k, 2, dtype=torch.float64)
        covariances = torch.zeros(n, len(concepts), k, 2, 2, dtype=torch.float64)
        for use68, (m, c) in fitted.items():
            rows = ok if use68 else fallback
            means[rows], covariances[rows] = _pad_components(m, k), _pad_components(c, k)

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
        concepts=concepts,
        regions=tuple(CONCEPT_REGION[c] for c in concepts),
        mask_size=mask_size,
        confidence=confidence,
        means=means.to(torch.float32),
        covariances=covariances.to(torch.float32),
        present=present,
        groups=groups,
        landmarks=n_points,
        fallback=fallback,
        landmark_info=dict(landmark_info or {}),
    )


LANDMARK_SETS = (68, 5)


def landmark_set(value) -> int:
    """The dictionary's landmark set from an option (68 or 5; '68' and '5' too), with a clear error."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number not in LANDMARK_SETS or isinstance(value, bool) or isinstance(value, float) and value != number:
        raise ValueError(f"dictionary.landmarks={value!r}: use 68 (iBUG points: exact on SynthFaces, dlib "
                         f"elsewhere, five-point fallback per face) or 5 (CelebA's five landmarks only)")
    return number


def dictionary_for_table(
    table,
    indices: np.ndarray | None = None,
    grayscale: np.ndarray | None = None,
    *,
    landmarks: int = 5,
    cache_dir: str | Path | None = None,
    crop: str = "celeba",
    workers: int = 2,
    progress: bool = False,
    **options,
) -> FaceDictionary:
    """The Face Dictionary of a FaceTable's faces (all, or ``indices``); options as face_dictionary.

    landmarks=5: the table's five landmarks (CelebA's aligned set, SynthFaces, a folder CSV's columns).
    landmarks=68: SynthFaces' exact 68 points, else dlib's (``faces.landmarks.landmarks_68_for``, cached
    under ``cache_dir``). Faces dlib cannot place (and every face, with a warning, when dlib is not
    installed) are drawn from their five landmarks and counted, where the table has them; where it has none
    (a folder without landmark columns) they are left out: the dictionary holds the other faces only, its
    ``kept`` marks them among the rows asked for and ``left_out`` names the others with the reason (a
    LandmarkFallbackWarning lists them too), and without dlib it raises LandmarkerMissingError. More than
    half of the rows without 68 points raises TooManyFailuresError. crop: the frame the images are fed in
    (``celeba``: the aligned 178x218 frame; ``none``: each image's centre square, to which the landmarks
    are mapped). ``grayscale`` (0/1 per selected face) adds the grayscale group, which is a transform, not
    an attribute of the source.
    """
    from facebias.faces.geometry import crop_frame_landmarks, image_sizes

    landmarks = landmark_set(landmarks)
    rows = np.arange(len(table)) if indices is None else np.asarray(indices)
    attrs = {name: table.attrs[rows, i] for i, name in enumerate(table.attr_names)}
    if grayscale is not None:
        attrs["grayscale"] = np.asarray(grayscale)
    five = None
    if table.landmarks is not None:
        five = np.asarray(table.landmarks[rows], dtype=np.float64)
        if crop == "none":
            five = crop_frame_landmarks(five, image_sizes(table, rows))
    elif crop not in ("celeba", "none"):
        raise ValueError(f"crop={crop!r}: the Face Dictionary is drawn for crop=celeba or crop=none")
    if landmarks == 5:
        if five is None:
            raise ValueError(
                f"{table.source} table at {table.image_dir} has no landmarks; the five-point Face Dictionary needs "
                f"the five aligned landmarks per face (CelebA's list_landmarks_align_celeba.txt, SynthFaces, or a "
                f"folder CSV's lefteye_x, lefteye_y, ... columns); dictionary.landmarks=68 finds them with dlib"
            )
        info = {"source": f"the {table.source} table's five landmarks"}
        return face_dictionary(five, attrs, landmark_info=info, **options)

    from facebias.faces.landmarks import landmarks_68_for

    # more than half without 68 points: TooManyFailuresError; no dlib and no five landmarks: LandmarkerMissingError
    found = landmarks_68_for(table, rows, cache_dir, crop=crop, workers=workers, progress=progress)
    failed = found.failed
    points, kept, left_out = found.points, np.ones(len(rows), dtype=bool), {}
    if five is None:  # nothing to draw them from: left out (the warning above lists them by name)
        kept, left_out = found.ok, {name: found.reasons[name] for name in failed}
        points, attrs = points[kept], {name: values[kept] for name, values in attrs.items()}
        failed = ()
    info = {"source": found.landmarker, "fallback_files": list(failed[:20]),
            "fallback_reasons": {name: found.reasons[name] for name in failed[:20]}}
    dictionary = face_dictionary(points, attrs, five=five, landmark_info=info, **options)
    dictionary.kept, dictionary.left_out = kept, left_out
    return dictionary


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


def per_image_iou(
    dictionary: FaceDictionary,
    exact_masks: torch.Tensor,
    exact_concepts: Sequence[str] = LOCAL_CONCEPTS,
) -> dict[str, np.ndarray]:
    """Per-image IoU (n,) of each dictionary concept that has an exact mask; NaN where both are empty."""
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
    scores: dict[str, np.ndarray] = {}
    for ci, concept in enumerate(dictionary.concepts):
        if concept not in exact_concepts:
            continue
        truth = exact[:, list(exact_concepts).index(concept)]
        guess = drawn[:, ci]
        inter = (truth & guess).flatten(1).sum(1).double()
        union = (truth | guess).flatten(1).sum(1).double()
        scores[concept] = torch.where(union > 0, inter / union.clamp_min(1), torch.nan).numpy()
    return scores


def score_against_exact(
    dictionary: FaceDictionary,
    exact_masks: torch.Tensor,
    exact_concepts: Sequence[str] = LOCAL_CONCEPTS,
) -> dict[str, float]:
    """Mean per-image IoU of each dictionary concept against exact aligned-frame masks.

    Images where both masks are empty (an absent attribute, correctly left empty) are skipped;
    a concept with no such image scores NaN.
    """
    scores = {}
    for concept, values in per_image_iou(dictionary, exact_masks, exact_concepts).items():
        kept = values[~np.isnan(values)]
        scores[concept] = float(kept.mean()) if kept.size else float("nan")
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


def random_landmarks_68(n: int, seed: int = 0, jitter: float = 1.0) -> np.ndarray:
    """Plausible 68 points (n, 68, 2): MEAN_SHAPE_68 placed by ``random_landmarks``' five-point frames plus
    +-1 px per point (scaled by ``jitter``); for tests and benchmarks."""
    five = random_landmarks(n, seed, jitter).astype(np.float64)
    eyes = (five[:, 0] + five[:, 1]) / 2
    u = five[:, 1] - five[:, 0]
    v = (five[:, 3] + five[:, 4]) / 2 - eyes
    shape = np.asarray(MEAN_SHAPE_68)
    points = eyes[:, None] + shape[None, :, 0:1] * u[:, None] + shape[None, :, 1:2] * v[:, None]
    noise = np.random.default_rng(seed + 1).standard_normal(points.shape)
    return (points + 1.0 * jitter * noise).astype(np.float32)
