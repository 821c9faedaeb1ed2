"""Render SynthFaces portraits, landmarks, labels and exact concept masks from latents.

`render(z)` is a pure function of z (and the latent model): the same z gives the same pixels and
masks whatever batch it is rendered in, because every per-face parameter and every pixel value is
computed with exactly rounded IEEE operations (see shapes.py) and latents are projected with a
fixed-order sum. Faces are drawn in a canonical face frame (u, v), in output pixels with the origin
at the midpoint of the eyes, and placed into CelebA's aligned 178x218 frame with a small shift, roll
and scale. Shapes are evaluated at half resolution, each group only on a fixed window of the image
that holds it for every pose, then the picture is upsampled bilinearly to 178x218: a few
milliseconds per face on one CPU core.

Masks follow one rule: a face part (eyes, brows, nose, mouth, cheeks, chin, forehead) is where that
part lies on the face, occluded or not, like a landmark-derived mask; an accessory or attribute
concept (Eyeglasses, Mustache, Beard, Wearing_Lipstick, Wearing_Hat, Bangs, Wearing_Earrings) is
where it is drawn and is empty where the attribute is off; `hair` is the hair left visible. A mask
pixel is on where the shape's coverage, upsampled like the picture, exceeds 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from facebias.faces.concepts import LOCAL_CONCEPTS
from facebias.faces.geometry import ALIGNED_HEIGHT as H
from facebias.faces.geometry import ALIGNED_WIDTH as W

from . import shapes as sh
from .latent import AXES, LatentModel, build_model, softsign

ORIGIN_X, ORIGIN_Y = 88.0, 111.0  # midpoint of the eyes in CelebA's aligned frame
MAX_SHIFT, MAX_SCALE_DEV, MAX_ROLL_T = 2.5, 0.05, 0.035  # roll: tan(angle / 2), about 4 degrees
HH, HW = H // 2, W // 2  # the half-resolution drawing grid; its pixel (i, j) is centred on (2j + .5, 2i + .5)
CHUNK = 16  # faces per internal batch: keeps every tensor small enough to stay in cache


def _window(u0: float, u1: float, v0: float, v1: float, pad: int = 2) -> tuple[int, int, int, int]:
    """Half-res rows/cols (r0, r1, c0, c1) holding the face-frame box [u0, u1] x [v0, v1] for every pose."""
    xs, ys = [], []
    for tx in (-MAX_SHIFT, MAX_SHIFT):
        for ty in (-MAX_SHIFT, MAX_SHIFT):
            for s in (1 - MAX_SCALE_DEV, 1 + MAX_SCALE_DEV):
                for t in (-MAX_ROLL_T, 0.0, MAX_ROLL_T):
                    c, sn = (1 - t * t) / (1 + t * t), 2 * t / (1 + t * t)
                    for u in (u0, u1):
                        for v in (v0, v1):
                            xs.append(ORIGIN_X + tx + s * (c * u - sn * v))
                            ys.append(ORIGIN_Y + ty + s * (sn * u + c * v))
    r0 = max(0, math.floor(min(ys) / 2) - pad)
    r1 = min(HH, math.ceil(max(ys) / 2) + pad + 1)
    c0 = max(0, math.floor(min(xs) / 2) - pad)
    c1 = min(HW, math.ceil(max(xs) / 2) + pad + 1)
    return r0, r1, c0, c1


# Windows (half-res pixel boxes) that contain each group of shapes for every face z can produce.
WIN = {
    "full": (0, HH, 0, HW),
    "face": _window(-58, 58, -64, 86),  # face, cheeks, beard, folds
    "ears": _window(-60, 60, -10, 36),  # ears, earrings
    "eyes": _window(-52, 52, -22, 16),  # eyes, brows, glasses
    "nose": _window(-12, 12, -2, 32),
    "mouth": _window(-26, 26, 22, 60),  # lips, teeth, lipstick, moustache
    "crease": _window(-24, 24, -44, -24),  # forehead wrinkles
    "top": _window(-82, 82, -120, -2),  # front hair, bangs, hat
    "body": _window(-110, 110, 36, 150),  # neck, clothes
}


def _texture(seed: int, streak: int) -> torch.Tensor:
    """A fixed (HH, HW) texture in [0, 1]: vertical streaks plus grain (hair, beard)."""
    rng = np.random.default_rng(seed)
    cols = rng.random(HW + 2 * streak)
    kernel = np.ones(2 * streak + 1) / (2 * streak + 1)
    cols = np.convolve(cols, kernel, mode="valid")[:HW]
    grain = rng.random((HH, HW))
    tex = 0.6 * (cols - cols.min()) / (np.ptp(cols) + 1e-9) + 0.4 * grain
    return torch.from_numpy(tex.astype(np.float32))


HAIR_TEXTURE = _texture(1234, 1)
BEARD_TEXTURE = _texture(4321, 0)

HAIR_COLOURS = {  # dark .. light end of each hair colour
    "gray": [(0.55, 0.55, 0.54), (0.82, 0.82, 0.80)],
    "blond": [(0.72, 0.56, 0.30), (0.93, 0.82, 0.56)],
    "black": [(0.04, 0.035, 0.03), (0.14, 0.11, 0.09)],
    "brown": [(0.20, 0.12, 0.06), (0.50, 0.32, 0.17)],
}
SKIN = [(0.33, 0.21, 0.14), (0.55, 0.38, 0.27), (0.78, 0.60, 0.48), (0.93, 0.78, 0.68)]
PALE_SKIN = torch.tensor([0.98, 0.90, 0.86])


@dataclass(frozen=True)
class RenderOutput:
    images: torch.Tensor  # (B, H, W, 3) uint8 RGB
    landmarks: torch.Tensor  # (B, 5, 2) float32 (x, y): lefteye, righteye, nose, leftmouth, rightmouth
    attrs: torch.Tensor  # (B, A) uint8, columns = ATTRIBUTE_NAMES
    masks: torch.Tensor | None  # (B, len(LOCAL_CONCEPTS), H, W) bool, or None when not asked for


def render(z: torch.Tensor, model: LatentModel | None = None, with_masks: bool = True) -> RenderOutput:
    """Draw the faces of latents z (B, D). Deterministic and batch-invariant (see module docstring)."""
    model = build_model() if model is None else model
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != model.dim:
        raise ValueError(f"render: z must be a (B, {model.dim}) tensor, got {getattr(z, 'shape', type(z))}")
    if not torch.isfinite(z).all():
        raise ValueError("render: z contains NaN or infinite values")
    z = z.to(torch.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors are cache-sized: threads only add contention (10x slower under load)
    try:
        parts = [_render_chunk(z[i : i + CHUNK], model, with_masks) for i in range(0, z.shape[0], CHUNK)]
    finally:
        torch.set_num_threads(threads)
    if not parts:
        empty_masks = torch.zeros(0, len(LOCAL_CONCEPTS), H, W, dtype=torch.bool) if with_masks else None
        return RenderOutput(
            torch.zeros(0, H, W, 3, dtype=torch.uint8),
            torch.zeros(0, 5, 2),
            torch.zeros(0, len(model.attribute_names), dtype=torch.uint8),
            empty_masks,
        )
    return RenderOutput(
        images=torch.cat([p.images for p in parts]),
        landmarks=torch.cat([p.landmarks for p in parts]),
        attrs=torch.cat([p.attrs for p in parts]),
        masks=torch.cat([p.masks for p in parts]) if with_masks else None,
    )


# ---------------------------------------------------------------------------------------------
# Per-face parameters (float64, (B,)) from latents.


def face_parameters(z: torch.Tensor, model: LatentModel) -> dict[str, torch.Tensor]:
    """Every number the drawing needs, as smooth bounded functions of z plus attribute flags."""
    margins = model.margins(z)
    attrs = model.attributes(z, margins)
    col = {name: attrs[:, i] for i, name in enumerate(model.attribute_names)}
    z64 = z.to(torch.float64)

    def ax(name: str) -> torch.Tensor:
        return z64[:, AXES.index(name)]

    def on(name: str) -> torch.Tensor:
        return col[name].to(torch.float64)

    s = softsign
    mc = model.masculinity(z, margins)  # (-1, 1), the continuous gender cue
    p: dict[str, torch.Tensor] = {"mc": mc}
    # pose: rotation by a rational parametrisation t = tan(angle / 2) (no sin/cos needed)
    t = MAX_ROLL_T * s(ax("roll"))
    p["cos"] = (1 - t * t) / (1 + t * t)
    p["sin"] = 2 * t / (1 + t * t)
    p["scale"] = 1 + MAX_SCALE_DEV * s(ax("scale"))
    p["ox"] = ORIGIN_X + MAX_SHIFT * s(ax("pose_x"))
    p["oy"] = ORIGIN_Y + MAX_SHIFT * s(ax("pose_y"))
    build = s(ax("build"))
    p["face_w"] = 42.0 + 3.2 * mc + 1.5 * build
    p["face_cy"] = torch.full_like(mc, 14.0)
    p["face_top"] = 70.0 + 1.0 * build
    p["face_low"] = 58.0 + 2.0 * mc + 1.0 * s(ax("build") - ax("scale"))
    p["jaw"] = 0.45 + 0.4 * mc
    age = 0.5 - 0.5 * s(1.2 * margins["young"])  # (0, 1); below 0.5 exactly when Young
    p["age"] = age
    p["wrinkle"] = torch.clamp((age - 0.5) * 2.5, 0.0, 1.0) * 0.55
    # skin: a tone from dark to light; Pale_Skin pushes further to pale exactly when its half-space holds
    tone = 0.55 + 0.45 * s(0.9 * ax("skin"))
    p["tone"] = tone
    p["pale"] = torch.clamp(margins["pale"] * 2.0, 0.0, 1.0) * on("Pale_Skin")
    # eyes and brows
    p["eye_sep"] = 19.0 + 0.8 * s(ax("build") + ax("eye_colour"))
    squint = 1.0 - 0.12 * on("Smiling")
    p["eye_open"] = (3.7 - 0.3 * mc + 0.3 * s(ax("light_y") - ax("eye_colour"))) * squint
    p["lid"] = 1.2 - 0.45 * mc
    p["brow_t"] = 3.0 + 1.1 * mc
    p["brow_y"] = -10.5 + 1.2 * mc
    p["brow_arch"] = 0.012 - 0.007 * mc
    # nose and mouth
    p["nose_len"] = 24.0 + 1.5 * s(ax("build") + ax("hair_shade"))
    p["nose_w"] = 7.5 + 0.8 * mc
    smile = margins["smiling"]
    p["smile_k"] = torch.where(col["Smiling"], 0.010 + 0.006 * s(smile), torch.full_like(smile, -0.0015))
    p["mouth_y"] = 42.5 + 1.2 * s(ax("scale") + ax("light_x"))
    p["mouth_w"] = 16.5 + 1.0 * s(ax("build") - ax("eye_colour")) + 1.2 * on("Smiling")
    p["mouth_open"] = on("Mouth_Slightly_Open") * (2.0 + 3.0 * s(margins["mouth_open"]))
    p["lip_h"] = 3.4 - 0.6 * mc
    # hair
    p["hair_len"] = 22.0 - 50.0 * mc + 22.0 * s(ax("hair_length"))
    p["hair_vol"] = 3.0 + 3.0 * s(0.8 * ax("hair_length") - mc)
    p["hairline"] = torch.where(col["Bangs"], torch.full_like(mc, -20.0), -47.0 + 2.0 * mc)
    p["hairline_k"] = torch.where(col["Bangs"], torch.full_like(mc, 0.004), torch.full_like(mc, 0.012))
    p["hair_shade"] = 0.5 + 0.5 * s(ax("hair_shade"))
    p["neck_w"] = 17.0 + 3.0 * mc
    # accessories
    p["frame_sq"] = 0.5 + 0.5 * s(ax("frame_style"))
    p["frame_t"] = 3.4 + 0.5 * s(ax("frame_style") + ax("lens_tint"))
    p["lens_a"] = 12.5 + 1.0 * s(ax("frame_style") - ax("accessory_colour"))
    p["lens_b"] = 9.5 + 1.0 * s(ax("lens_tint") - ax("frame_style"))
    p["sunglasses"] = (ax("lens_tint") > 1.0).to(torch.float64)
    p["beard_density"] = 0.8 + 0.15 * s(ax("beard"))
    p["light_x"] = 0.12 * s(ax("light_x"))
    p["light_y"] = 0.08 * s(ax("light_y"))
    p["bright"] = 1.0 + 0.08 * s(0.5 * ax("bg_light") + ax("light_x"))
    for name in ("Eyeglasses", "Wearing_Hat", "Mustache", "Wearing_Lipstick", "Wearing_Earrings",
                 "Bangs", "Smiling", "Mouth_Slightly_Open", "Gray_Hair", "Blond_Hair", "Black_Hair"):  # fmt: skip
        p["on_" + name] = on(name)
    p["on_Beard"] = 1.0 - on("No_Beard")
    p["_attrs"] = attrs
    # unit-interval selectors for colour ramps
    for name in ("bg_hue", "bg_light", "accessory_colour", "eye_colour", "clothing", "frame_style"):
        p["t_" + name] = 0.5 + 0.5 * s(ax(name))
    return p


def landmarks_from_parameters(p: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 5, 2) float32 landmark pixels: eye centres, nose tip, mouth corners (CelebA order)."""
    es, mw = p["eye_sep"], p["mouth_w"]
    corner_v = p["mouth_y"] - p["smile_k"] * mw * mw
    zero = torch.zeros_like(es)
    us = torch.stack([-es, es, zero, -mw, mw], dim=1)
    vs = torch.stack([zero, zero, p["nose_len"], corner_v, corner_v], dim=1)
    c, sn, sc = p["cos"][:, None], p["sin"][:, None], p["scale"][:, None]
    x = p["ox"][:, None] + sc * (c * us - sn * vs)
    y = p["oy"][:, None] + sc * (sn * us + c * vs)
    return torch.stack([x, y], dim=2).to(torch.float32)


# iBUG 300-W / dlib 68-point layout, image-left first (the subject's right): jaw 0-16 (0 at the image-left
# ear, 8 the chin), brows 17-21 and 22-26 (each from image-left to image-right), nose bridge 27-30 (top to
# tip), nostrils 31-35, eyes 36-41 and 42-47 (each clockwise from its image-left corner: 36 and 42),
# outer lips 48-59 (clockwise from the image-left corner 48; 51 the top, 54 the right corner, 57 the
# bottom), inner lips 60-67 (60 and 64 the inner corners, 61-63 upper, 65-67 lower).
LANDMARKS_68 = 68
_EYE_HALF_WIDTH = 7.6  # the drawn eye white's half-axes are (7.6, eye_open)
_BROW_HALF_LENGTH = 10.5  # the drawn brow's half-length
_LID_X = 0.5  # lid points at half the eye's half-width from its centre
_BROW_X = (-0.7, -0.35, 0.0, 0.35, 0.7)  # brow points, in brow half-lengths from the brow's centre
_OUTER_LIP = 0.9  # outer-lip points at 0.9 of the lips' half-height: on the drawn lip, just inside its edge
_INNER_CORNER = 0.78  # the mouth opening's half-width, in mouth half-widths (as drawn)


def _jaw_outline(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) of jaw points 0-8 (image-left side to the chin), each (B, 9), on the drawn face outline.

    The outline (``_face_distance``) is centred at v = face_cy: above it an ellipse (face_w, face_top), below
    it the shape rho = 1 of ``shapes.rounded`` (face_w, face_low, squareness jaw), whose boundary in the
    direction t of the unit-square frame lies at radius 1 / (1 + jaw ((cos^4 t + sin^4 t)^(1/4) - 1)).
    Point 0 is where the outline crosses the eye line (v = 0), point 8 the chin (t = pi/2), and the points
    between are spaced evenly in t.
    """
    t0 = -torch.asin(p["face_cy"] / p["face_top"])  # v = 0 on the upper ellipse
    steps = torch.arange(9, dtype=torch.float64)[None, :] / 8.0
    t = t0[:, None] + steps * (math.pi / 2 - t0[:, None])
    cos, sin = torch.cos(t), torch.sin(t)
    squircle = torch.sqrt(torch.sqrt(cos**4 + sin**4))
    radius = torch.where(t < 0, torch.ones_like(t), 1.0 / (1.0 + p["jaw"][:, None] * (squircle - 1.0)))
    half_height = torch.where(t < 0, p["face_top"][:, None], p["face_low"][:, None])
    u = -p["face_w"][:, None] * radius * cos
    v = p["face_cy"][:, None] + half_height * radius * sin
    return u, v


def face_points_68(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) face-frame coordinates (B, 68) of the 68 points; ``landmarks68_from_parameters`` places them."""
    es, eo, mw = p["eye_sep"], p["eye_open"], p["mouth_w"]
    nl, nw = p["nose_len"], p["nose_w"]
    B = es.shape[0]
    u = torch.zeros(B, LANDMARKS_68, dtype=torch.float64)
    v = torch.zeros(B, LANDMARKS_68, dtype=torch.float64)
    # jaw: 0-8 on the image-left side down to the chin, 16-8 their mirror images
    jaw_u, jaw_v = _jaw_outline(p)
    u[:, 0:9], v[:, 0:9] = jaw_u, jaw_v
    u[:, 9:17], v[:, 9:17] = -jaw_u[:, 0:8].flip(1), jaw_v[:, 0:8].flip(1)
    # brows: on the drawn brow's arched mid-line
    for first, side in ((17, -1.0), (22, 1.0)):
        centre = side * (es + 0.5)
        for k, x in enumerate(_BROW_X):
            du = x * _BROW_HALF_LENGTH
            u[:, first + k] = centre + du
            v[:, first + k] = p["brow_y"] + p["brow_arch"] * (du * du)
    # nose: bridge from the eye line (27) to the tip (30); nostrils 31-35 along the base of the nose
    for k in range(4):
        v[:, 27 + k] = nl * (k / 3.0)
    for index, x, dv in ((31, -0.85, 0.0), (32, -0.45, 1.8), (33, 0.0, 2.2), (34, 0.45, 1.8), (35, 0.85, 0.0)):
        u[:, index] = x * nw
        v[:, index] = nl + dv
    # eyes: corners at the white's ends, lids at half its half-width on its outline
    lid = eo * math.sqrt(1.0 - _LID_X * _LID_X)
    for first, side in ((36, -1.0), (42, 1.0)):
        cx = side * es
        for k, (du, dv) in enumerate(((-1.0, 0.0), (-_LID_X, -1.0), (_LID_X, -1.0), (1.0, 0.0),
                                      (_LID_X, 1.0), (-_LID_X, 1.0))):  # fmt: skip
            u[:, first + k] = cx + du * _EYE_HALF_WIDTH
            v[:, first + k] = dv * lid if dv else torch.zeros_like(es)
    # mouth: the lips are an ellipse (mouth_w, lip_h + open / 2) about the bent mid-line
    # v = centre - smile_k u^2; the corners are the five-point ones (48, 54)
    opening = p["mouth_open"]
    centre = p["mouth_y"] + opening * 0.25
    half_height = p["lip_h"] + opening * 0.5
    corner_v = p["mouth_y"] - p["smile_k"] * mw * mw
    u[:, 48], v[:, 48], u[:, 54], v[:, 54] = -mw, corner_v, mw, corner_v

    def on_lips(index: int, x: float, sign: float, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        du = x * a
        u[:, index] = du
        v[:, index] = centre - p["smile_k"] * (du * du) + sign * scale * b * math.sqrt(1.0 - x * x)

    thirds = (-2.0 / 3.0, -1.0 / 3.0, 0.0, 1.0 / 3.0, 2.0 / 3.0)
    for k, x in enumerate(thirds):
        on_lips(49 + k, x, -1.0, mw, half_height, _OUTER_LIP)  # 49-53, upper outer, left to right
        on_lips(59 - k, x, 1.0, mw, half_height, _OUTER_LIP)  # 55-59, lower outer, right to left
    # inner lips: the opening's outline (half-height open / 2; on the mid-line when the mouth is shut)
    inner_a, inner_b = _INNER_CORNER * mw, opening * 0.5
    on_lips(60, -1.0, 0.0, inner_a, inner_b, 1.0)
    on_lips(64, 1.0, 0.0, inner_a, inner_b, 1.0)
    for k, x in enumerate((-0.5, 0.0, 0.5)):
        on_lips(61 + k, x, -1.0, inner_a, inner_b, 1.0)  # 61-63, upper inner, left to right
        on_lips(67 - k, x, 1.0, inner_a, inner_b, 1.0)  # 65-67, lower inner, right to left
    return u, v


def landmarks68_from_parameters(p: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 68, 2) float32 pixels of the iBUG/dlib 68 points, exact from the face parameters.

    Same frame and conventions as ``landmarks_from_parameters`` (CelebA's aligned 178x218 frame, a pixel
    index is the pixel's centre). The five points follow from them as dlib's do (``five_from_68``): the
    means of 36-41 and 42-47 are the eye centres, 30 the nose tip, 48 and 54 the mouth corners.
    """
    us, vs = face_points_68(p)
    c, sn, sc = p["cos"][:, None], p["sin"][:, None], p["scale"][:, None]
    x = p["ox"][:, None] + sc * (c * us - sn * vs)
    y = p["oy"][:, None] + sc * (sn * us + c * vs)
    return torch.stack([x, y], dim=2).to(torch.float32)


# Concepts the renderer knows exactly but draws no mask channel for: split or cut out of the exact masks by
# the face geometry (``derived_masks``). Not part of LOCAL_CONCEPTS, so the mask channels stay as they are.
DERIVED_CONCEPTS = ("left_eye", "right_eye", "upper_lip", "lower_lip", "Mouth_Slightly_Open")


def derived_masks(p: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """(B, len(DERIVED_CONCEPTS), H, W) bool, from the exact masks (B, len(LOCAL_CONCEPTS), H, W).

    left_eye / right_eye: the eyes mask on the image-left (u < 0) / image-right side of the face's
    mid-line; the mouth opening: the drawn cavity ellipse (0.78 mouth_w, open / 2 about the lips' bent
    mid-line), within the mouth mask, on faces with Mouth_Slightly_Open; upper_lip / lower_lip: the mouth
    mask above / below that mid-line, less the opening. Evaluated per output pixel in the face frame (the
    exact masks are drawn at half resolution and upsampled, so the cuts are exact, the outer edges as drawn).
    """
    B = masks.shape[0]
    x = torch.arange(W, dtype=torch.float64)[None, None, :] - p["ox"][:, None, None]
    y = torch.arange(H, dtype=torch.float64)[None, :, None] - p["oy"][:, None, None]
    c, s, scale = (p[k][:, None, None] for k in ("cos", "sin", "scale"))
    u = (c * x + s * y) / scale
    v = (c * y - s * x) / scale
    eyes = masks[:, LOCAL_CONCEPTS.index("eyes")]
    mouth = masks[:, LOCAL_CONCEPTS.index("mouth")]
    f = {k: p[k][:, None, None] for k in ("mouth_y", "mouth_open", "smile_k", "mouth_w")}
    mid = f["mouth_y"] + f["mouth_open"] * 0.25 - f["smile_k"] * u * u
    inner_b = torch.clamp(f["mouth_open"] * 0.5, min=0.5)
    opening = ((u / (_INNER_CORNER * f["mouth_w"])) ** 2 + ((v - mid) / inner_b) ** 2 < 1.0) & (f["mouth_open"] > 0)
    opening = opening & mouth
    out = torch.zeros(B, len(DERIVED_CONCEPTS), H, W, dtype=torch.bool)
    out[:, 0] = eyes & (u < 0)
    out[:, 1] = eyes & (u >= 0)
    out[:, 2] = mouth & (v < mid) & ~opening
    out[:, 3] = mouth & (v >= mid) & ~opening
    out[:, 4] = opening
    return out


# ---------------------------------------------------------------------------------------------
# Drawing.


class _Canvas:
    """The batch's half-res image, face-frame coordinates per window, and painting into windows."""

    def __init__(self, p: dict[str, torch.Tensor], background: torch.Tensor):
        self.p = p
        self.img = background
        self._uv: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def uv(self, win: str) -> tuple[torch.Tensor, torch.Tensor]:
        if win not in self._uv:
            r0, r1, c0, c1 = WIN[win]
            x = (torch.arange(c0, c1, dtype=torch.float32) * 2.0 + 0.5)[None, None, :] - self.p["ox"]
            y = (torch.arange(r0, r1, dtype=torch.float32) * 2.0 + 0.5)[None, :, None] - self.p["oy"]
            inv = 1.0 / self.p["scale"]
            c, s = self.p["cos"], self.p["sin"]
            self._uv[win] = ((c * x + s * y) * inv, (c * y - s * x) * inv)
        return self._uv[win]

    def paint(self, win: str, alpha: torch.Tensor, colour: torch.Tensor) -> None:
        r0, r1, c0, c1 = WIN[win]
        region = self.img[:, :, r0:r1, c0:c1]  # a view: blended in place
        region.add_(alpha[:, None] * (colour - region))


def _tex(tex: torch.Tensor, win: str) -> torch.Tensor:
    r0, r1, c0, c1 = WIN[win]
    return tex[None, None, r0:r1, c0:c1]


def _embed(win: str, alpha: torch.Tensor) -> torch.Tensor:
    r0, r1, c0, c1 = WIN[win]
    full = torch.zeros(alpha.shape[0], HH, HW, dtype=alpha.dtype)
    full[:, r0:r1, c0:c1] = alpha
    return full


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling of the last two dims (half-pixel centres, edges clamped), from exact ops.

    Equals F.interpolate(scale_factor=2, mode="bilinear", align_corners=False) up to rounding, but
    every output value is computed the same way wherever it sits in the batch.
    """
    for dim in (-2, -1):
        n = x.shape[dim]
        main = x * 0.75
        quarter = x * 0.25
        shape = list(x.shape)
        shape[dim] = 2 * n
        out = torch.empty(shape, dtype=x.dtype)
        even = out.narrow(dim, 0, 2 * n - 1)[(slice(None),) * (out.ndim + dim) + (slice(None, None, 2),)]
        odd = out.narrow(dim, 1, 2 * n - 1)[(slice(None),) * (out.ndim + dim) + (slice(None, None, 2),)]
        # even output 2i mixes input i with i - 1, odd output 2i + 1 with i + 1 (the edge with itself)
        even.narrow(dim, 1, n - 1).copy_(main.narrow(dim, 1, n - 1) + quarter.narrow(dim, 0, n - 1))
        even.narrow(dim, 0, 1).copy_(main.narrow(dim, 0, 1) + quarter.narrow(dim, 0, 1))
        odd.narrow(dim, 0, n - 1).copy_(main.narrow(dim, 0, n - 1) + quarter.narrow(dim, 1, n - 1))
        odd.narrow(dim, n - 1, 1).copy_(main.narrow(dim, n - 1, 1) + quarter.narrow(dim, n - 1, 1))
        x = out
    return x


def _hair_colour(p: dict[str, torch.Tensor]) -> torch.Tensor:
    shade = p["hair_shade"]
    cols = {k: sh.ramp(shade, v) for k, v in HAIR_COLOURS.items()}
    g, bl, bk = (p[k][:, None, None, None] > 0 for k in ("on_Gray_Hair", "on_Blond_Hair", "on_Black_Hair"))
    return torch.where(g, cols["gray"], torch.where(bl, cols["blond"], torch.where(bk, cols["black"], cols["brown"])))


def _rgb(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.float32)[None, :, None, None]


def _face_distance(u: torch.Tensor, v: torch.Tensor, f: dict[str, torch.Tensor]) -> torch.Tensor:
    """Signed distance to the face outline: oval forehead, jaw between oval and square below."""
    dy = v - f["face_cy"]
    upper = dy < 0
    fb = torch.where(upper, f["face_top"], f["face_low"])
    return sh.rounded(u, dy, 0.0, 0.0, f["face_w"], fb, torch.where(upper, 0.0, f["jaw"]))


def _render_chunk(z: torch.Tensor, model: LatentModel, with_masks: bool) -> RenderOutput:
    p64 = face_parameters(z, model)
    attrs = p64.pop("_attrs")
    landmarks = landmarks_from_parameters(p64)
    B = z.shape[0]
    f = {k: v.to(torch.float32)[:, None, None] for k, v in p64.items()}  # (B, 1, 1) float32
    t32 = {k: v.to(torch.float32) for k, v in p64.items()}  # (B,) for colour ramps
    cov = sh.coverage

    # colours, (B, 3, 1, 1)
    skin = sh.ramp(t32["tone"], SKIN)
    skin = skin + f["pale"][:, None] * (PALE_SKIN[None, :, None, None] - skin)
    skin = skin * (1.0 - 0.06 * f["wrinkle"][:, None])
    hair = _hair_colour(t32)
    bg_top = sh.ramp(t32["t_bg_hue"], [(0.25, 0.32, 0.45), (0.55, 0.55, 0.50), (0.72, 0.60, 0.48), (0.30, 0.42, 0.30)])
    bg_top = bg_top * (0.55 + 0.7 * t32["t_bg_light"])[:, None, None, None]
    rows = torch.linspace(0.0, 1.0, HH)[None, None, :, None]
    background = (bg_top + rows * (bg_top * 0.8 - bg_top)).expand(B, 3, HH, HW).contiguous()
    cv = _Canvas(f, background)
    masks: dict[str, list[tuple[str, torch.Tensor]]] = {c: [] for c in LOCAL_CONCEPTS}

    # body: clothes and neck
    u, v = cv.uv("body")
    clothes = sh.ramp(t32["t_clothing"], [(0.10, 0.10, 0.12), (0.55, 0.15, 0.15), (0.85, 0.85, 0.82), (0.20, 0.30, 0.55)])
    cv.paint("body", cov(sh.ellipse(u, v, 0.0, 150.0, 92.0, 60.0)), clothes)
    cv.paint("body", cov(sh.rounded(u, v, 0.0, 80.0, f["neck_w"], 42.0, 0.8)), skin * 0.8)

    # hair behind the head: skull cap plus long hair down to hair_len
    u, v = cv.uv("full")
    hw = f["face_w"] + 7.0 + f["hair_vol"]
    skull = cov(sh.ellipse(u, v, 0.0, -14.0, hw, 64.0 + f["hair_vol"]))
    # long hair: a rounded box from inside the skull down to hair_len, as wide as the skull only once
    # it is longer than the skull, so short hair stays inside the cap
    half = torch.clamp((f["hair_len"] + 30.0) * 0.5, min=10.0)
    box_w = hw - 12.0 + 15.0 * torch.clamp((f["hair_len"] - 10.0) / 30.0, 0.0, 1.0)
    hair_back = sh.union(skull, cov(sh.rounded(u, v, 0.0, f["hair_len"] - half, box_w, half, 0.85)))
    cv.paint("full", hair_back, hair * (0.8 + 0.4 * _tex(HAIR_TEXTURE, "full")))

    # ears
    u, v = cv.uv("ears")
    ear_x = f["face_w"] + 1.0
    ears = sh.union(cov(sh.ellipse(u, v, -ear_x, 7.0, 6.5, 12.5)), cov(sh.ellipse(u, v, ear_x, 7.0, 6.5, 12.5)))
    cv.paint("ears", ears, skin * 0.9)

    # face, its regions, folds, blush, beard
    u, v = cv.uv("face")
    face_d = _face_distance(u, v, f)
    face = cov(face_d)
    cv.paint("face", face, skin)
    if with_masks:
        cheeks = sh.union(cov(sh.ellipse(u, v, -23.0, 23.0, 10.0, 10.0)), cov(sh.ellipse(u, v, 23.0, 23.0, 10.0, 10.0)))
        masks["cheeks"].append(("face", face * cheeks))
        chin = cov(sh.ellipse(u, v, 0.0, f["face_cy"] + f["face_low"] - 9.0, 15.0, 8.0))
        masks["chin"].append(("face", face * chin))
        masks["forehead"].append(("face", face * cov(sh.ellipse(u, v, 0.0, -32.0, 27.0, 13.0))))
    folds = (
        sh.ring(sh.ellipse(u, v, 0.0, 35.0, f["mouth_w"] + 3.0, 12.0), 1.2)
        * cov(f["mouth_w"] - 3.0 - torch.abs(u))
        * cov(v - 44.0)
        * sh.below(v, 25.0)
    )
    cv.paint("face", folds * f["wrinkle"], skin * 0.7)
    blush = f["on_Wearing_Lipstick"] * sh.union(
        cov(sh.ellipse(u, v, -22.0, 24.0, 9.0, 7.0)), cov(sh.ellipse(u, v, 22.0, 24.0, 9.0, 7.0))
    )
    cv.paint("face", blush * 0.2, _rgb(0.85, 0.35, 0.35))
    mouth_zone = cov(sh.ellipse(u, v, 0.0, f["mouth_y"] - 2.0, f["mouth_w"] + 2.5, f["lip_h"] + 7.0))
    beard = f["on_Beard"] * sh.minus(cov(face_d - 3.0) * sh.below(v, 30.0 - 0.012 * (u * u)), mouth_zone)
    beard_alpha = beard * f["beard_density"] * (0.75 + 0.25 * _tex(BEARD_TEXTURE, "face")[:, 0])
    cv.paint("face", beard_alpha, hair)
    masks["Beard"].append(("face", beard))

    # earrings
    u, v = cv.uv("ears")
    ring_x = f["face_w"] + 1.5
    earrings = f["on_Wearing_Earrings"] * sh.union(
        sh.union(cov(sh.ellipse(u, v, -ring_x, 21.0, 2.6, 2.6)), cov(sh.ellipse(u, v, ring_x, 21.0, 2.6, 2.6))),
        sh.union(cov(sh.ellipse(u, v, -ring_x, 26.5, 1.9, 2.4)), cov(sh.ellipse(u, v, ring_x, 26.5, 1.9, 2.4))),
    )
    metal = sh.ramp(t32["t_accessory_colour"], [(0.88, 0.72, 0.30), (0.80, 0.80, 0.84), (0.95, 0.85, 0.40)])
    cv.paint("ears", earrings, metal)
    masks["Wearing_Earrings"].append(("ears", earrings))

    # nose
    u, v = cv.uv("nose")
    nose_region = cov(sh.ellipse(u, v, 0.0, f["nose_len"] - 10.0, f["nose_w"], 13.5))
    cv.paint("nose", nose_region * 0.35, skin * 0.85)
    cv.paint("nose", cov(sh.ellipse(u, v, 0.0, f["nose_len"] - 3.0, 5.0, 3.5)) * 0.5, skin * 1.08)
    nostrils = sh.union(cov(sh.ellipse(u, v, -4.2, f["nose_len"] + 1.5, 2.3, 1.2)),
                        cov(sh.ellipse(u, v, 4.2, f["nose_len"] + 1.5, 2.3, 1.2)))  # fmt: skip
    cv.paint("nose", nostrils, skin * 0.4)
    masks["nose"].append(("nose", nose_region))

    # mouth: lips, opening, teeth, lipstick; moustache
    u, v = cv.uv("mouth")
    bend = -f["smile_k"]
    opening = f["mouth_open"]
    centre = f["mouth_y"] + opening * 0.25
    lips = cov(sh.ellipse(u, v, 0.0, centre, f["mouth_w"], f["lip_h"] + opening * 0.5, bend))
    natural = skin * _rgb(0.80, 0.55, 0.55)
    lipstick = sh.ramp(t32["t_accessory_colour"], [(0.72, 0.08, 0.14), (0.86, 0.36, 0.50), (0.45, 0.08, 0.22)])
    lip_col = natural + f["on_Wearing_Lipstick"][:, None] * (lipstick - natural)
    cv.paint("mouth", lips, lip_col)
    is_open = (opening > 0).float()
    cavity = is_open * cov(sh.ellipse(u, v, 0.0, centre, f["mouth_w"] * 0.78, torch.clamp(opening * 0.5, min=0.5), bend))
    cv.paint("mouth", cavity, _rgb(0.30, 0.06, 0.08))
    dy = v - centre - bend * (u * u)
    teeth = cavity * cov(dy) * f["on_Smiling"]
    cv.paint("mouth", teeth, _rgb(0.93, 0.91, 0.86))
    line = sh.ring(dy, 1.2) * cov(torch.abs(u) - f["mouth_w"] * 0.9)
    cv.paint("mouth", line * (1.0 - is_open), lip_col * 0.5)
    masks["mouth"].append(("mouth", lips))
    masks["Wearing_Lipstick"].append(("mouth", lips * f["on_Wearing_Lipstick"]))
    mus = f["on_Mustache"] * cov(sh.ellipse(u, v, 0.0, f["mouth_y"] - f["lip_h"] - 2.6, f["mouth_w"] + 1.5, 2.8, 0.008))
    cv.paint("mouth", mus * 0.95, hair)
    masks["Mustache"].append(("mouth", mus))

    # eyes and brows
    u, v = cv.uv("eyes")
    es, eo = f["eye_sep"], f["eye_open"]
    iris_col = sh.ramp(t32["t_eye_colour"], [(0.22, 0.12, 0.06), (0.40, 0.26, 0.12), (0.35, 0.45, 0.30), (0.30, 0.45, 0.62)])
    for side in (-1.0, 1.0):
        cx = side * es
        d_eye = sh.ellipse(u, v, cx, 0.0, 7.6, eo)
        white = cov(d_eye)
        cv.paint("eyes", white, _rgb(0.93, 0.92, 0.90))
        iris_d = sh.ellipse(u, v, cx, 0.3, 3.4, 3.4)
        cv.paint("eyes", white * cov(iris_d), iris_col)
        cv.paint("eyes", white * cov(iris_d + 1.9), _rgb(0.0, 0.0, 0.0))
        cv.paint("eyes", sh.ring(d_eye, f["lid"]) * sh.below(-v, -0.5), _rgb(0.10, 0.07, 0.06))
        masks["eyes"].append(("eyes", cov(sh.ellipse(u, v, cx, 0.0, 9.0, eo + 1.5))))
        brow = cov(sh.ellipse(u, v, side * (es + 0.5), f["brow_y"], 10.5, f["brow_t"] * 0.5, f["brow_arch"]))
        cv.paint("eyes", brow * 0.95, hair * 0.75)
        masks["brows"].append(("eyes", brow))

    # forehead wrinkles, front hair (bangs), hat
    u, v = cv.uv("crease")
    for level in (-30.0, -36.5):
        crease = sh.ring(sh.ellipse(u, v, 0.0, level, 17.0, 1.2, 0.004), 1.2)
        cv.paint("crease", crease * f["wrinkle"] * 0.8, skin * 0.75)
    u, v = cv.uv("top")
    skull_top = cov(sh.ellipse(u, v, 0.0, -14.0, hw, 64.0 + f["hair_vol"]))
    hairline = torch.clamp(f["hairline"] + f["hairline_k"] * (u * u), max=-8.0)
    front = skull_top * sh.below(-v, -hairline)  # v < hairline
    cv.paint("top", front, hair * (0.8 + 0.4 * _tex(HAIR_TEXTURE, "top")))
    normal_line = torch.clamp(-47.0 + 2.0 * f["mc"] + 0.012 * (u * u), max=-8.0)
    masks["Bangs"].append(("top", front * sh.below(v, normal_line) * f["on_Bangs"]))
    hat_w = f["face_w"] + 11.0
    crown = cov(sh.ellipse(u, v, 0.0, -52.0, hat_w, 40.0)) * sh.below(-v, 34.0 - 0.004 * (u * u))
    brim_d = sh.ellipse(u, v, 0.0, -34.0, hat_w + 9.0, 4.5, -0.004)
    hat = f["on_Wearing_Hat"] * sh.union(crown, cov(brim_d))
    hat_col = sh.ramp(1.0 - t32["t_accessory_colour"], [(0.12, 0.12, 0.14), (0.60, 0.15, 0.12), (0.80, 0.72, 0.55), (0.15, 0.25, 0.45)])
    cv.paint("top", hat, hat_col)
    cv.paint("top", hat * sh.ring(brim_d, 1.5) * 0.5, hat_col * 0.6)
    masks["Wearing_Hat"].append(("top", hat))

    # glasses: frames, bridge and temples always dark; clear or dark lenses
    u, v = cv.uv("eyes")
    ft = f["frame_t"]
    lens_d = [sh.rounded(u, v, side * es, 1.0, f["lens_a"], f["lens_b"], f["frame_sq"]) for side in (-1.0, 1.0)]
    lens = sh.union(cov(lens_d[0] - ft * 0.5), cov(lens_d[1] - ft * 0.5))
    frame = sh.union(sh.ring(lens_d[0], ft), sh.ring(lens_d[1], ft))
    bridge = sh.ring(v - (-2.0 + 0.03 * (u * u)), ft) * cov(torch.abs(u) - (es - f["lens_a"] + 1.0))
    temples = sh.ring(v + 2.0, ft) * cov(es + f["lens_a"] - 1.0 - torch.abs(u)) * cov(
        torch.abs(u) - (f["face_w"] + 1.0)
    )
    on_g = f["on_Eyeglasses"]
    sun = f["sunglasses"][:, None]
    cv.paint("eyes", lens * (0.15 + 0.7 * f["sunglasses"]) * on_g, _rgb(0.75, 0.82, 0.88) + sun * _rgb(-0.68, -0.74, -0.78))
    frame_col = sh.ramp(t32["t_frame_style"], [(0.04, 0.04, 0.05), (0.28, 0.15, 0.07), (0.08, 0.10, 0.28)])
    cv.paint("eyes", sh.union(sh.union(frame, bridge), temples) * on_g, frame_col)
    masks["Eyeglasses"].append(("eyes", sh.union(sh.union(lens, bridge), temples) * on_g))

    # hair mask: what is left visible of the back and front hair
    if with_masks:
        back_vis = hair_back * (1.0 - _embed("face", face)) * (1.0 - _embed("ears", ears))
        masks["hair"].append(("full", sh.union(back_vis, _embed("top", front)) * (1.0 - _embed("top", hat))))

    # light, upsampling, 8 bits
    xs = (torch.arange(HW, dtype=torch.float32) * 2.0 + 0.5)[None, None, None, :]
    ys = (torch.arange(HH, dtype=torch.float32) * 2.0 + 0.5)[None, None, :, None]
    light = (f["bright"][:, None] + f["light_x"][:, None] * ((xs - 88.0) / 89.0)) + f["light_y"][:, None] * (
        (ys - 109.0) / 109.0
    )
    img = upsample2(torch.clamp(cv.img * light, 0.0, 1.0) * 255.0)
    images = (img + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # round half up (values >= 0)

    out_masks = None
    if with_masks:
        out_masks = torch.zeros(B, len(LOCAL_CONCEPTS), H, W, dtype=torch.bool)
        for ci, concept in enumerate(LOCAL_CONCEPTS):
            alpha = torch.zeros(B, HH, HW)
            for win, a in masks[concept]:
                r0, r1, c0, c1 = WIN[win]
                alpha[:, r0:r1, c0:c1] = torch.maximum(alpha[:, r0:r1, c0:c1], a)
            out_masks[:, ci] = upsample2(alpha) > 0.5
    return RenderOutput(images, landmarks, attrs.to(torch.uint8), out_masks)
