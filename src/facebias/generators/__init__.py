"""Generators: one interface over the SynthFaces renderer, a GAN run and a user module (docs/design.md §2, §6).

`build_generator(kind=..., **options)` is the one factory a Hydra config points at
(``_target_: facebias.generators.build_generator``). Kinds:

- ``synthfaces``: the renderer, with ground truth (options of SynthFacesGenerator; with ``root`` it
  is built from a generated set via `SynthFacesGenerator.from_dataset`, ``rows`` selecting the pool).
- ``user``: a Python file + class + state_dict (UserGenerator; the only outside code facebias runs).
- ``gan``: a GAN run trained by train.py (GanRunGenerator: ``run=<dir>``, the EMA generator of its checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import Generator, crop_and_resize, normal_latents
from .gan import GanRunGenerator, NotAGanRunError
from .synthfaces import SynthFacesGenerator, resample_latents
from .user import GeneratorLoadError, UserGenerator


def _synthfaces(**options) -> SynthFacesGenerator:
    if options.get("root") is not None:
        return SynthFacesGenerator.from_dataset(**options)
    options.pop("root", None)
    return SynthFacesGenerator(**options)


_BUILDERS = {"synthfaces": _synthfaces, "user": UserGenerator, "gan": GanRunGenerator.from_options}


def build_generator(config: Mapping | None = None, /, **options) -> Generator:
    """A generator from a config mapping (e.g. a DictConfig) and/or keyword options; `kind` picks it."""
    merged = {**dict(config or {}), **options}
    merged.pop("_target_", None)
    kind = merged.pop("kind", None)
    if kind not in _BUILDERS:
        raise ValueError(f"unknown generator kind {kind!r}; use one of {sorted(_BUILDERS)}")
    return _BUILDERS[kind](**merged)


__all__ = [
    "GanRunGenerator",
    "Generator",
    "GeneratorLoadError",
    "NotAGanRunError",
    "SynthFacesGenerator",
    "UserGenerator",
    "build_generator",
    "crop_and_resize",
    "normal_latents",
    "resample_latents",
]
