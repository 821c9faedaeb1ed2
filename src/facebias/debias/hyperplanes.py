"""Latent-space geometry of GAN-augmented de-biasing (Ramaswamy, Kim & Russakovsky, CVPR 2021; docs/design.md §6).

Pure NumPy / scikit-learn, no images: binarise classifier scores at the F1-optimal threshold
(`f1_threshold`), fit unit-normal linear SVM hyperplanes h_t, h_g in latent space (`fit_hyperplane`),
and pair each z with z' = z - 2 (w_g.z + b_g) / (1 - c^2) (w_g - c w_t), c = w_g.w_t (`perturb`),
which keeps h_t(z') = h_t(z) and flips h_g(z') = -h_g(z) exactly (in exact arithmetic, for any c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

COARSE_GRID = tuple(k / 10 for k in range(1, 10))  # 0.1 .. 0.9
MIN_SIN2 = 0.1  # default guard: 1 - c^2 below this means |c| > 0.949 (planes < 18 deg apart). Measured on
# SynthFaces (small_cnn, 32 px): 1 - c^2 = 0.85 at P = 80, 0.52 at P = 90 and 0.0051 at P = 100, where z'
# flipped the true Eyeglasses in 0.08 % of pairs; with GANs 0.078 and 0.056, where z' left the latent shell
# (|z' - z| ~ 2|margin| / sqrt(1 - c^2)) and G(z') collapsed to a few saturated faces: neither de-biased.


class OneClassSampleError(ValueError):
    """The latents to fit a hyperplane on carry one label only: there is no boundary to find."""


class ParallelHyperplanesError(ValueError):
    """h_t and h_g are (nearly) parallel: no z' can flip the protected attribute and keep the target."""


class LatentDimensionError(ValueError):
    """Latents and hyperplanes (or the two hyperplanes) live in spaces of different dimension."""


class F1Threshold(NamedTuple):
    threshold: float
    f1: float


@dataclass(frozen=True)
class Hyperplane:
    """h(z) = w . z + b with ||w|| = 1 (so h is the signed Euclidean distance to the plane).

    holdout_accuracy: accuracy of sign(h) on latents kept out of the fit (None when none were).
    """

    w: np.ndarray
    b: float
    holdout_accuracy: float | None = None
    n_fit: int = 0
    n_holdout: int = 0

    @property
    def dim(self) -> int:
        return int(self.w.shape[0])

    def margin(self, z: np.ndarray) -> np.ndarray:
        """(n,) float64 signed distances of latents z (n, dim) to the plane."""
        z = _latents(z, "margin")
        _check_dims(z, self.w, "the hyperplane")
        return z @ self.w + self.b

    def predict(self, z: np.ndarray) -> np.ndarray:
        """(n,) bool: the side w . z + b > 0."""
        return self.margin(z) > 0

    def to_dict(self) -> dict:
        return {"w": self.w.tolist(), "b": self.b, "holdout_accuracy": self.holdout_accuracy,
                "n_fit": self.n_fit, "n_holdout": self.n_holdout}

    @classmethod
    def from_dict(cls, data: dict) -> Hyperplane:
        return cls(np.asarray(data["w"], dtype=np.float64), float(data["b"]), data.get("holdout_accuracy"),
                   int(data.get("n_fit", 0)), int(data.get("n_holdout", 0)))


# ---------------------------------------------------------------------------------------------------------
# Scores -> labels


def _f1_at(scores: np.ndarray, positives: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 of `score > t` for each t, 0 where it is undefined (no predicted and no true positive)."""
    predicted = scores[None, :] > thresholds[:, None]
    tp = (predicted & positives[None, :]).sum(axis=1)
    fp = predicted.sum(axis=1) - tp
    fn = positives.sum() - tp
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def f1_threshold(scores: np.ndarray, labels: np.ndarray, search: str = "reference") -> F1Threshold:
    """The threshold t maximising F1 of `score > t`; `search` says over which thresholds.

    "reference" (the reference's `get_threshold`): the coarse grid 0.1, 0.2 .. 0.9, then the 0.01 grid
    t* - 0.09 .. t* + 0.09 around the coarse best t*. Ties keep the earlier candidate: the lowest coarse
    threshold among equals, and a fine threshold replaces it only when strictly better (then the lowest
    such). The search is local: where F1 has a separate, higher peak more than 0.09 from t* it misses it
    (on noisy random data about 1 case in 20, losing up to ~0.02 F1); it matches the full grid otherwise.
    "grid": every hundredth 0.01 .. 0.99, the lowest among equal bests: the true optimum on that grid.
    Grid points are exact hundredths (k / 100), not accumulated sums; scores are meant to be probabilities.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"f1_threshold: {scores.size} scores but {labels.size} labels")
    if not np.isfinite(scores).all():
        raise ValueError("f1_threshold: scores contain NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("f1_threshold: labels must be 0/1 (or bool)")
    if search not in ("reference", "grid"):
        raise ValueError(f"f1_threshold: search={search!r}; use 'reference' or 'grid'")
    positives = labels.astype(bool)
    if not positives.any():
        raise ValueError(f"f1_threshold: none of the {labels.size} labels is positive, so F1 is 0 at every "
                         "threshold; the validation split needs positives of this attribute")
    if search == "grid":
        grid = np.arange(1, 100) / 100
        f1s = _f1_at(scores, positives, grid)
        best = int(np.argmax(f1s))  # the first maximum: the lowest threshold among equals
        threshold, f1 = float(grid[best]), float(f1s[best])
    else:
        coarse = np.array(COARSE_GRID)
        coarse_f1 = _f1_at(scores, positives, coarse)
        best = int(np.argmax(coarse_f1))
        centre = round(coarse[best] * 100)
        fine = np.arange(centre - 9, centre + 10) / 100
        fine_f1 = _f1_at(scores, positives, fine)
        threshold, f1 = float(coarse[best]), float(coarse_f1[best])
        better = np.flatnonzero(fine_f1 > f1)
        if better.size:
            pick = better[np.argmax(fine_f1[better])]
            threshold, f1 = float(fine[pick]), float(fine_f1[pick])
    if f1 == 0.0:
        raise ValueError(f"f1_threshold: no threshold in 0.01 .. 0.99 gives a positive F1 (max score "
                         f"{scores.max():.3g}): the classifier scores every positive at or below 0.01; check it")
    return F1Threshold(threshold, f1)


# ---------------------------------------------------------------------------------------------------------
# Latents + labels -> hyperplane


def fit_hyperplane(z: np.ndarray, labels: np.ndarray, C: float = 1.0, seed: int = 0, holdout: float = 0.2,
                   max_iter: int = 100_000) -> Hyperplane:
    """A linear SVM (scikit-learn LinearSVC, C = 1 as the reference) on (z, labels), scaled to ||w|| = 1.

    Held out: a seeded, stratified `holdout` share of each class (at least one sample of a class stays
    in the fit) is kept out of the fit; the returned plane is the one fitted on the rest, and its
    holdout_accuracy is sign(h) against those labels. holdout=0 fits on everything (accuracy None).
    """
    from sklearn.svm import LinearSVC

    z = _latents(z, "fit_hyperplane")
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != z.shape[0]:
        raise ValueError(f"fit_hyperplane: {z.shape[0]} latents but {labels.shape[0]} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("fit_hyperplane: labels must be 0/1 (or bool)")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"fit_hyperplane: holdout={holdout} must lie in [0, 1)")
    if labels.size < 2:
        raise ValueError(f"fit_hyperplane: {labels.size} latent(s) are too few to fit a hyperplane")
    labels = labels.astype(bool)
    n_pos = int(labels.sum())
    if n_pos in (0, labels.size):
        which = "positive" if n_pos else "negative"
        raise OneClassSampleError(
            f"the SVM sample has only {which} labels ({labels.size} of {labels.size} latents): there is no "
            f"boundary to fit; sample more latents or check the classifier (its threshold may lie outside "
            f"the range of its scores on generated images)"
        )
    rng = np.random.default_rng(seed)
    held = np.zeros(labels.size, dtype=bool)
    for value in (False, True):
        rows = rng.permutation(np.flatnonzero(labels == value))
        held[rows[: min(round(holdout * rows.size), rows.size - 1)]] = True
    svm = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    svm.fit(z[~held], labels[~held])
    w, b = svm.coef_[0].astype(np.float64), float(svm.intercept_[0])
    norm = float(np.linalg.norm(w))
    if not norm > 0:
        raise ValueError("fit_hyperplane: the SVM found a zero normal (labels unrelated to z?)")
    w, b = w / norm, b / norm
    accuracy = float(((z[held] @ w + b > 0) == labels[held]).mean()) if held.any() else None
    return Hyperplane(w, b, accuracy, int((~held).sum()), int(held.sum()))


# ---------------------------------------------------------------------------------------------------------
# The pairing z -> z'


def _plane(plane, name: str) -> tuple[np.ndarray, float]:
    """(unit w, b) of a Hyperplane or a (w, b) pair; scaling both by 1/||w|| leaves the plane as it is."""
    w, b = (plane.w, plane.b) if isinstance(plane, Hyperplane) else plane
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(w))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"perturb: the {name} hyperplane has a zero or non-finite normal")
    return w / norm, float(b) / norm


def plane_cosine(target_plane, protected_plane) -> float:
    """c = w_g . w_t of the unit normals: how far the target boundary has aligned with the protected one."""
    w_t, _ = _plane(target_plane, "target")
    w_g, _ = _plane(protected_plane, "protected")
    if w_t.shape != w_g.shape:
        raise LatentDimensionError(
            f"the target hyperplane has {w_t.size} dimensions and the protected one {w_g.size}: they were "
            "fitted in different latent spaces; refit both on latents of one generator"
        )
    return float(w_g @ w_t)


def perturb(z: np.ndarray, target_plane, protected_plane, min_sin2: float = MIN_SIN2) -> np.ndarray:
    """z' = z - 2 (w_g.z + b_g) / (1 - c^2) (w_g - c w_t), c = w_g.w_t: the paired latents, (n, D) float64.

    The step is along the part of w_g orthogonal to w_t, so h_t(z') = h_t(z) and h_g(z') = -h_g(z).
    Returned in float64 because those identities hold to ~1e-15 there; rendering casts to float32,
    which moves a margin by ~1e-7. Planes are Hyperplane objects or (w, b) pairs (normalised here).
    min_sin2: the guard rail on 1 - c^2 (the step grows as 1 / (1 - c^2)).
    """
    z = _latents(z, "perturb")
    c = plane_cosine(target_plane, protected_plane)
    w_t, _ = _plane(target_plane, "target")
    w_g, b_g = _plane(protected_plane, "protected")
    _check_dims(z, w_g, "the hyperplanes")
    sin2 = 1.0 - c * c
    if sin2 < min_sin2:
        raise ParallelHyperplanesError(
            f"the target and protected hyperplanes are (anti)parallel: c = w_g.w_t = {c:+.6f}, 1 - c^2 = "
            f"{sin2:.2e} < min_sin2 = {min_sin2:g}. The target classifier has become a protected-attribute "
            "detector (as at P = 100, or on a generator's faces whose target labels follow the protected "
            "attribute): no z' can flip the protected attribute while keeping the target, and "
            "z' would be pushed towards infinity. Train the target classifier on less biased data (lower P), "
            "or choose another protected attribute; lower min_sin2 only if you accept very distant z'."
        )
    distance = z @ w_g + b_g
    return z - np.outer(2.0 * distance / sin2, w_g - c * w_t)


def _latents(z: np.ndarray, where: str) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"{where}: latents must be an (n, D) array, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError(f"{where}: latents contain NaN or infinite values")
    return z


def _check_dims(z: np.ndarray, w: np.ndarray, what: str) -> None:
    if z.shape[1] != w.shape[0]:
        raise LatentDimensionError(
            f"latents have {z.shape[1]} dimensions but {what} {w.shape[0]}: the hyperplanes were fitted in "
            "another generator's latent space; refit them on latents of this generator"
        )
