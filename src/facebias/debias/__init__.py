"""Latent-space de-biasing (Ramaswamy et al., CVPR 2021): the geometry here; the augmentation stage later."""

from .hyperplanes import (
    F1Threshold,
    Hyperplane,
    LatentDimensionError,
    OneClassSampleError,
    ParallelHyperplanesError,
    f1_threshold,
    fit_hyperplane,
    perturb,
    plane_cosine,
)

__all__ = [
    "F1Threshold",
    "Hyperplane",
    "LatentDimensionError",
    "OneClassSampleError",
    "ParallelHyperplanesError",
    "f1_threshold",
    "fit_hyperplane",
    "perturb",
    "plane_cosine",
]
