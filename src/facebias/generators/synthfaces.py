"""The SynthFaces renderer as a generator with ground truth (docs/design.md §3 and §6).

Every binary attribute is a half-space (or a gated conjunction of half-spaces) of z, so this generator
answers each latent's *true* attributes and, for the plain half-space attributes, the exact hyperplane:
the known answer the latent de-biasing geometry is checked against.

Why `latent_pool`: a GAN trained on a P-biased training set inherits its correlation, which is why the
method needs z'. z ~ N(0, I) through the renderer does not (its faces wear glasses independently of
gender), so G(z) alone would de-bias and prove nothing. Standing in for a GAN, the renderer therefore
samples the training rows' own latents, with replacement, plus a small seeded Gaussian jitter that
keeps every true attribute of the row (new faces, same cell), so G(z) carries the planted correlation
exactly (issue 10, "The renderer must be as biased as a GAN would be").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Generator, check_count_and_seed, check_image_options, crop_and_resize, normal_latents

DEFAULT_JITTER = 0.1  # std of the Gaussian added to resampled latents (each margin moves by ~0.1)
REDRAWS = 10  # attempts at a jitter that keeps a face's attributes before falling back to no jitter


def resample_latents(latents: np.ndarray, n: int, seed: int, jitter: float = DEFAULT_JITTER,
                     labels_of=None) -> np.ndarray:
    """n rows drawn with replacement from `latents`, plus N(0, jitter^2 I) noise; float32, seeded.

    The jitter keeps G(z) from repeating training faces exactly. On its own it moves every attribute
    margin by ~jitter and so flips the faces near a boundary (SynthFaces, jitter 0.1: ~3.5 % of Male and
    of Eyeglasses), which dilutes a planted P = 80 to ~75. With `labels_of` (a function z -> (n, A)
    labels) a row whose labels change is redrawn, up to REDRAWS times, then left unjittered, so every
    sample keeps the labels of the row it came from and the pool's correlations are kept exactly.
    """
    pool = np.asarray(latents)
    if pool.ndim != 2 or pool.shape[0] == 0:
        raise ValueError(f"resample_latents: latents must be a non-empty (m, D) array, got shape {pool.shape}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"resample_latents: n={n!r} must be a non-negative int")
    if not float(jitter) >= 0.0 or not np.isfinite(jitter):
        raise ValueError(f"resample_latents: jitter={jitter!r} must be a finite number >= 0")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, pool.shape[0], size=n)
    base = pool[rows].astype(np.float32)
    z = base + np.float32(jitter) * rng.standard_normal(base.shape, dtype=np.float32)
    if labels_of is None or n == 0:
        return z
    wanted = labels_of(base)
    changed = np.flatnonzero((labels_of(z) != wanted).any(axis=1))
    for _ in range(REDRAWS):
        if changed.size == 0:
            break
        z[changed] = base[changed] + np.float32(jitter) * rng.standard_normal((changed.size, base.shape[1]),
                                                                                dtype=np.float32)
        changed = changed[(labels_of(z[changed]) != wanted[changed]).any(axis=1)]
    z[changed] = base[changed]
    return z


class SynthFacesGenerator(Generator):
    """The SynthFaces renderer behind the Generator interface, plus its ground truth.

    model: the set's LatentModel (default: build_model(), i.e. default options); use `from_dataset`
    so the half-spaces are the ones a generated set was written with. latent_pool: if given, `sample`
    resamples it (see module docstring) instead of drawing N(0, I); keep_attributes=False lets the
    jitter change attributes (plain `resample_latents`).
    """

    def __init__(self, image_size: int = 64, crop: str = "celeba", model=None,
                 latent_pool: np.ndarray | None = None, jitter: float = DEFAULT_JITTER,
                 keep_attributes: bool = True):
        from facebias.data.synthfaces import build_model

        check_image_options(image_size, crop)
        self.model = build_model() if model is None else model
        self.latent_dim = int(self.model.dim)
        self.image_size, self.crop = image_size, crop
        if latent_pool is not None:
            latent_pool = np.asarray(latent_pool, dtype=np.float32)
            if latent_pool.ndim != 2 or latent_pool.shape[1] != self.latent_dim or len(latent_pool) == 0:
                raise ValueError(
                    f"latent_pool must be a non-empty (m, {self.latent_dim}) array, got shape {latent_pool.shape}"
                )
        if not float(jitter) >= 0.0 or not np.isfinite(jitter):
            raise ValueError(f"jitter={jitter!r} must be a finite number >= 0")
        self.latent_pool, self.jitter, self.keep_attributes = latent_pool, float(jitter), bool(keep_attributes)

    @classmethod
    def from_dataset(cls, root: str | Path, image_size: int = 64, crop: str = "celeba", rows=None,
                     jitter: float = DEFAULT_JITTER, keep_attributes: bool = True) -> SynthFacesGenerator:
        """The generator of a generated set: its latent model, and (given `rows`, 0-based table rows,
        e.g. a biased training split's) a pool of those rows' stored latents to resample."""
        from facebias.data.synthfaces import load_latents, load_model

        pool = None
        if rows is not None:
            latents = load_latents(root)
            idx = np.asarray(rows, dtype=np.int64).reshape(-1)
            if idx.size == 0 or idx.min() < 0 or idx.max() >= latents.shape[0]:
                raise IndexError(f"from_dataset: rows must be non-empty indices in [0, {latents.shape[0]}) of {root}")
            pool = np.asarray(latents[idx])
        return cls(image_size, crop, model=load_model(root), latent_pool=pool, jitter=jitter,
                   keep_attributes=keep_attributes)

    # -- Generator --------------------------------------------------------------------------------------
    def sample(self, n: int, seed: int) -> np.ndarray:
        """N(0, I) latents, or (with a latent_pool) the pool resampled and jittered; seeded either way."""
        if self.latent_pool is None:
            return normal_latents(n, seed, self.latent_dim)
        check_count_and_seed(n, seed)
        labels_of = self._attribute_matrix if self.keep_attributes else None
        return resample_latents(self.latent_pool, int(n), int(seed), self.jitter, labels_of)

    def _render_batch(self, z: np.ndarray) -> np.ndarray:
        import torch

        from facebias.data.synthfaces import render

        frames = render(torch.from_numpy(z), self.model, with_masks=False).images.numpy()
        return crop_and_resize(frames, self.image_size, self.crop)

    # -- ground truth -----------------------------------------------------------------------------------
    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(self.model.attribute_names)

    def true_attributes(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Each attribute of the face render(z) draws, as (n,) bool, exact (from the half-spaces).

        Computed from float32(z), which is what `render` draws, so labels and pictures always agree.
        """
        flags = self._attribute_matrix(self.check_latents(z))
        return {name: flags[:, i].copy() for i, name in enumerate(self.model.attribute_names)}

    def _attribute_matrix(self, z: np.ndarray) -> np.ndarray:
        """(n, A) bool attributes of float32 latents (columns in attribute_names order)."""
        import torch

        return self.model.attributes(torch.from_numpy(np.array(z, dtype=np.float32))).numpy()

    def plain_attributes(self) -> tuple[str, ...]:
        """Attributes that are one half-space of z (not gated conjunctions): they have a true normal."""
        return tuple(name for name, (terms, negate) in self.model.rules.items()
                     if not negate and len(terms) == 1 and terms[0][1] > 0)

    def attribute_normal(self, name: str) -> tuple[np.ndarray, float]:
        """(w, b) with ||w|| = 1 and `name` on exactly where w . z + b > 0: the true hyperplane."""
        if name not in self.model.rules:
            raise KeyError(f"unknown SynthFaces attribute {name!r}; available: {', '.join(self.attribute_names)}")
        if name not in self.plain_attributes():
            terms, negate = self.model.rules[name]
            parts = " and ".join(f"{'' if sign > 0 else 'not '}{hs}" for hs, sign in terms)
            raise ValueError(
                f"{name} is not a single half-space ({'not (' if negate else ''}{parts}{')' if negate else ''}), "
                f"so it has no true normal; attributes that have one: {', '.join(self.plain_attributes())}"
            )
        half_space = self.model.rules[name][0][0][0]
        w = np.asarray(self.model.half_space_w[half_space], dtype=np.float64)
        return w, float(self.model.half_space_b[half_space])
