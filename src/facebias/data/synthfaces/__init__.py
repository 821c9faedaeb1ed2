"""SynthFaces: the embedded procedural face data set (docs/design.md §3).

Faces are drawn from latents z ~ N(0, I_32) (latent.py: attributes are half-spaces of z, traits
smooth functions of it), rendered in CelebA's aligned 178x218 frame (render.py) and written in
CelebA's file layout (generate.py). Concept masks are not stored: `load_masks` re-renders them from
the stored latents, exactly, because rendering is a pure, batch-invariant function of z.
"""

from .generate import VERSION, generate, load_landmarks68, load_latents, load_masks, load_model
from .latent import ATTRIBUTE_NAMES, LATENT_DIM, LatentModel, build_model, sample_latents
from .render import DERIVED_CONCEPTS, RenderOutput, landmarks68_from_parameters, render

__all__ = [
    "ATTRIBUTE_NAMES",
    "DERIVED_CONCEPTS",
    "LATENT_DIM",
    "LatentModel",
    "RenderOutput",
    "VERSION",
    "build_model",
    "generate",
    "landmarks68_from_parameters",
    "load_landmarks68",
    "load_latents",
    "load_masks",
    "load_model",
    "render",
    "sample_latents",
]
