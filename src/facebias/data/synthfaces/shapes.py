"""Anti-aliased 2-D shapes as coverage fields, evaluated on batches of pixel grids.

Every shape is an approximate signed distance d (in face units, about one output pixel, negative
inside) turned into coverage clamp(0.5 - RES * d, 0, 1): a one-pixel anti-aliased edge at the
rendering resolution (RES render pixels per face unit; the renderer works at half resolution). Only +, -, *, /, sqrt, abs, min/max and
comparisons are used: IEEE 754 rounds each of them exactly, so a pixel's value does not depend on
whether a SIMD lane or a scalar tail loop computed it, i.e. not on the batch size or on which other
faces share the batch. That is what lets SynthFaces re-render exact masks from stored latents.
Per-face parameters are (B, 1, 1) tensors (or Python floats) broadcast over (B, h, w) grids.
"""

from __future__ import annotations

import torch

Param = torch.Tensor | float
_EPS = 1e-6
RES = 0.5  # render pixels per face unit: shapes are evaluated at half the output resolution


def coverage(d: torch.Tensor) -> torch.Tensor:
    """Signed distance (face units, negative inside) -> anti-aliased coverage in [0, 1]."""
    return torch.clamp(0.5 - RES * d, 0.0, 1.0)


def ring(d: torch.Tensor, thickness: Param) -> torch.Tensor:
    """Coverage of a band of the given thickness centred on the shape's outline."""
    return torch.clamp((thickness * 0.5 - torch.abs(d)) * RES + 0.5, 0.0, 1.0)


def ellipse(u: torch.Tensor, v: torch.Tensor, cx: Param, cy: Param, a: Param, b: Param,
            bend: Param | None = None) -> torch.Tensor:  # fmt: skip
    """Signed distance to an axis-aligned ellipse; `bend` shifts rows by bend * (u - cx)^2 (arcs, smiles)."""
    dx = u - cx
    dy = v - cy
    if bend is not None:
        dy = dy - bend * (dx * dx)
    x = dx / a
    y = dy / b
    f = x * x + y * y - 1.0
    gx = x / a
    gy = y / b
    return f / (2.0 * torch.sqrt(gx * gx + gy * gy) + _EPS)


def rounded(u: torch.Tensor, v: torch.Tensor, cx: Param, cy: Param, a: Param, b: Param,
            squareness: Param) -> torch.Tensor:  # fmt: skip
    """Signed distance to a shape between an ellipse (squareness 0) and a squircle (1)."""
    x = (u - cx) / a
    y = (v - cy) / b
    x2 = x * x
    y2 = y * y
    r2 = torch.sqrt(x2 + y2)
    r4 = torch.sqrt(torch.sqrt(x2 * x2 + y2 * y2))
    rho = r2 + squareness * (r4 - r2)
    gx = x / a
    gy = y / b
    return (rho - 1.0) * r2 / (torch.sqrt(gx * gx + gy * gy) + _EPS)


def below(v: torch.Tensor, level: Param) -> torch.Tensor:
    """Coverage of the half-plane v > level (image rows grow downwards: 'below' the level)."""
    return coverage(level - v)


def union(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.maximum(a, b)


def minus(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a * (1.0 - b)


def ramp(t: torch.Tensor, anchors: list[tuple[float, float, float]]) -> torch.Tensor:
    """Piecewise-linear colour map: t in [0, 1] (shape (B,)) -> (B, 3, 1, 1) through the anchors."""
    cols = torch.tensor(anchors, dtype=t.dtype)  # (n, 3)
    n = len(anchors) - 1
    out = cols[0].expand(t.shape[0], 3)
    scaled = t * float(n)
    for i in range(n):
        w = torch.clamp(scaled - float(i), 0.0, 1.0)[:, None]
        out = out + w * (cols[i + 1] - cols[i])
    return out[:, :, None, None]
