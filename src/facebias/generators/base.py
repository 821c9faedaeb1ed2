"""The generator interface every de-biasing and counterfactual stage takes (docs/design.md §2 and §6).

A generator maps latents z (n, latent_dim) float32 to uint8 faces (n, S, S, 3) at the data's face crop
and ``image_size``: the same pixels the decoded-image cache (data/cache.py) would store for the same
picture, so generated and real faces reach a classifier through one pipeline and differ only in content.
Rendering is batched, and ``render(..., out=memmap)`` writes straight into a caller's array, so a stage
augmenting 10^5 latents never holds them all in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from facebias.data.cache import CROPS


class Generator(ABC):
    """latent_dim, sample(n, seed) and batched render(z); subclasses implement `_render_batch`."""

    latent_dim: int
    image_size: int
    crop: str

    @abstractmethod
    def sample(self, n: int, seed: int) -> np.ndarray:
        """(n, latent_dim) float32 latents, a pure function of (n, seed)."""

    @abstractmethod
    def _render_batch(self, z: np.ndarray) -> np.ndarray:
        """(b, image_size, image_size, 3) uint8 for validated float32 latents (b, latent_dim)."""

    def render(self, z: np.ndarray, batch_size: int = 256, out: np.ndarray | None = None) -> np.ndarray:
        """Faces of z, rendered batch_size at a time; `out` (e.g. a memmap) receives them if given."""
        z = self.check_latents(z)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"render: batch_size={batch_size!r} must be a positive int")
        shape = (z.shape[0], self.image_size, self.image_size, 3)
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif out.shape != shape or out.dtype != np.uint8:
            raise ValueError(f"render: out is {out.shape} {out.dtype}, expected {shape} uint8")
        for start in range(0, z.shape[0], batch_size):
            out[start : start + batch_size] = self._render_batch(z[start : start + batch_size])
        return out

    def check_latents(self, z: np.ndarray) -> np.ndarray:
        """z as a (n, latent_dim) float32 array, or an error naming what is wrong with it."""
        array = np.asarray(z)
        if array.ndim != 2 or array.shape[1] != self.latent_dim:
            raise ValueError(
                f"{type(self).__name__}: latents must be (n, {self.latent_dim}), got shape {array.shape}"
                + (" (a latent-dimension mismatch: were they sampled from another generator?)"
                   if array.ndim == 2 else "")
            )
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise ValueError(f"{type(self).__name__}: latents must be real numbers, got dtype {array.dtype}")
        array = np.array(array, dtype=np.float32, order="C")  # a writable copy (torch refuses read-only memmaps)
        if not np.isfinite(array).all():
            raise ValueError(f"{type(self).__name__}: latents contain NaN or infinite values")
        return array


def check_image_options(image_size: int, crop: str) -> None:
    """Fail early, with the option's name, on a size or crop the image cache would not accept."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size={image_size!r} must be a positive int (pixels)")
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; use one of {CROPS}")


def check_count_and_seed(n: int, seed: int) -> None:
    """sample()'s arguments: a count and a seed, both non-negative ints."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"sample: n={n!r} must be a non-negative int")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"sample: seed={seed!r} must be a non-negative int")


def normal_latents(n: int, seed: int, dim: int) -> np.ndarray:
    """(n, dim) float32 z ~ N(0, I) from NumPy's PCG64 stream (the stream SynthFaces' own latents use)."""
    check_count_and_seed(n, seed)
    n, seed = int(n), int(seed)
    return np.random.default_rng(int(seed)).standard_normal((n, dim), dtype=np.float32)


def crop_and_resize(images: np.ndarray, size: int, crop: str) -> np.ndarray:
    """(n, H, W, 3) uint8 pictures -> (n, size, size, 3) uint8 through the image cache's own crop and resize
    (`data.cache.crop_and_resize_image`), so generated faces are cropped exactly like the cached real ones."""
    from PIL import Image

    from facebias.data.cache import crop_and_resize_image

    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"crop_and_resize: expected (n, H, W, 3) uint8 pictures, got {images.shape} {images.dtype}")
    out = np.empty((images.shape[0], size, size, 3), dtype=np.uint8)
    for i, picture in enumerate(images):
        out[i] = crop_and_resize_image(Image.fromarray(np.ascontiguousarray(picture)), size, crop, f"generated picture {i}")
    return out
