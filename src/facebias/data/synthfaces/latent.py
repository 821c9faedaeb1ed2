"""The SynthFaces latent model: which face a latent vector z ~ N(0, I_D) stands for.

Every binary attribute is a conjunction of half-spaces of z (most are a single half-space):
half-space k holds when w_k . z + b_k > 0 with ||w_k|| = 1, so b_k = Phi^-1(rate) sets its base rate
and the angle between two w's sets how the two attributes correlate. A few attributes are *gated* so
that the picture stays plausible and the label is exactly what is drawn: a beard is drawn, and
No_Beard is 0, only where both the Male half-space and the beard half-space hold; lipstick and
earrings only where Male does not hold; hair colours are mutually exclusive (grey wins, then blond,
then black, the rest is brown). Male, Eyeglasses, Young, Smiling, Mouth_Slightly_Open, Wearing_Hat,
Bangs and Pale_Skin are plain half-spaces, so the de-biasing geometry of docs/design.md §6 holds exactly
for them.

Continuous traits (masculinity cues, age, skin tone, lighting, pose ...) are softsign functions
x / sqrt(1 + x^2) of projections of z: smooth, bounded, and built from IEEE-exact operations only,
so a face renders bit-identically whatever batch it is rendered in (see render.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import torch

LATENT_DIM = 32

# One named axis of z per independent factor; directions below are written in these axes.
AXES = (
    "male", "male_cue", "eyeglasses", "young", "smiling", "mouth_open", "hat", "mustache",
    "beard", "lipstick", "earrings", "skin", "bangs", "gray", "blond", "black",
    "build", "hair_length", "light_x", "light_y", "pose_x", "pose_y", "roll", "scale",
    "bg_hue", "bg_light", "accessory_colour", "eye_colour", "frame_style", "lens_tint", "hair_shade",
    "clothing",
)  # fmt: skip
assert len(AXES) == LATENT_DIM

# Own half-spaces: direction (axis -> weight, normalised to unit length) and own base rate.
# For gated attributes the rate is the rate *within the gate* (e.g. beards among men). Rates are
# CelebA-like except Eyeglasses: 30 % (CelebA 6.5 %), independent of Male, so that a P-bias sweep
# (P % of men and 100-P % of women wear glasses, P = 50..100) keeps thousands of training images.
DEFAULT_HALF_SPACES: dict[str, tuple[dict[str, float], float]] = {
    "male": ({"male": 1.0}, 0.42),
    "eyeglasses": ({"eyeglasses": 1.0}, 0.30),
    "young": ({"young": 1.0}, 0.77),
    "smiling": ({"smiling": 1.0}, 0.48),
    "mouth_open": ({"smiling": 0.6, "mouth_open": 0.8}, 0.45),
    "hat": ({"hat": 1.0}, 0.06),
    "bangs": ({"bangs": 1.0}, 0.15),
    "pale": ({"skin": 1.0}, 0.04),
    "mustache": ({"mustache": 1.0}, 0.15),
    "beard": ({"mustache": 0.5, "beard": 0.866}, 0.30),
    "lipstick": ({"lipstick": 1.0}, 0.60),
    "earrings": ({"lipstick": 0.3, "earrings": 0.954}, 0.30),
    "gray": ({"young": -0.6, "gray": 0.8}, 0.05),
    "blond": ({"blond": 0.9, "male": -0.3, "skin": 0.3}, 0.17),
    "black": ({"black": 0.95, "skin": -0.3}, 0.30),
}

# CelebA attribute -> (conjunction of (half-space, sign)), negated. sign -1 means "does not hold".
ATTRIBUTE_RULES: dict[str, tuple[tuple[tuple[str, int], ...], bool]] = {
    "Bangs": ((("bangs", 1),), False),
    "Black_Hair": ((("black", 1), ("blond", -1), ("gray", -1)), False),
    "Blond_Hair": ((("blond", 1), ("gray", -1)), False),
    "Brown_Hair": ((("black", -1), ("blond", -1), ("gray", -1)), False),
    "Eyeglasses": ((("eyeglasses", 1),), False),
    "Gray_Hair": ((("gray", 1),), False),
    "Male": ((("male", 1),), False),
    "Mouth_Slightly_Open": ((("mouth_open", 1),), False),
    "Mustache": ((("mustache", 1), ("male", 1)), False),
    "No_Beard": ((("beard", 1), ("male", 1)), True),
    "Pale_Skin": ((("pale", 1),), False),
    "Smiling": ((("smiling", 1),), False),
    "Wearing_Earrings": ((("earrings", 1), ("male", -1)), False),
    "Wearing_Hat": ((("hat", 1),), False),
    "Wearing_Lipstick": ((("lipstick", 1), ("male", -1)), False),
    "Young": ((("young", 1),), False),
}
# Columns in CelebA's own (alphabetical) order.
ATTRIBUTE_NAMES = tuple(ATTRIBUTE_RULES)

# Which own half-space each attribute's base rate refers to (the `rates` option is keyed by attribute).
RATE_OF_ATTRIBUTE = {
    "Bangs": "bangs", "Black_Hair": "black", "Blond_Hair": "blond", "Eyeglasses": "eyeglasses",
    "Gray_Hair": "gray", "Male": "male", "Mouth_Slightly_Open": "mouth_open", "Mustache": "mustache",
    "No_Beard": "beard", "Pale_Skin": "pale", "Smiling": "smiling", "Wearing_Earrings": "earrings",
    "Wearing_Hat": "hat", "Wearing_Lipstick": "lipstick", "Young": "young",
}  # fmt: skip

# Angle between the Male direction and the direction that drives the continuous masculinity cues
# (jaw, brow weight, face width, hair length, eye make-up). 0 would make them a perfect cue; this
# value was tuned with bench/synthfaces_learnability.py so a small CNN reaches ~85-93 % on Male.
DEFAULT_MALE_CUE_ANGLE = 45.0


def softsign(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(1 + x^2): a smooth squashing to (-1, 1) from correctly rounded operations only."""
    return x / torch.sqrt(1.0 + x * x)


def _unit(weights: dict[str, float]) -> list[float]:
    vec = [0.0] * LATENT_DIM
    for axis, weight in weights.items():
        vec[AXES.index(axis)] = float(weight)
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec]


@dataclass(frozen=True)
class LatentModel:
    """Half-spaces (unit w, bias b), attribute rules and the masculinity-cue angle. Plain data."""

    half_space_w: dict[str, list[float]]
    half_space_b: dict[str, float]
    male_cue_angle: float = DEFAULT_MALE_CUE_ANGLE
    dim: int = LATENT_DIM
    rules: dict[str, tuple[tuple[tuple[str, int], ...], bool]] = field(
        default_factory=lambda: dict(ATTRIBUTE_RULES)
    )

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(self.rules)

    def to_json(self) -> dict:
        """Everything needed to re-derive labels from latents, in plain JSON types."""
        return {
            "dim": self.dim,
            "axes": list(AXES),
            "male_cue_angle": self.male_cue_angle,
            "half_spaces": {
                k: {"w": self.half_space_w[k], "b": self.half_space_b[k]} for k in self.half_space_w
            },
            "attributes": {
                name: {"terms": [[hs, sign] for hs, sign in terms], "negate": negate}
                for name, (terms, negate) in self.rules.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> LatentModel:
        rules = {
            name: (tuple((hs, int(sign)) for hs, sign in spec["terms"]), bool(spec["negate"]))
            for name, spec in data["attributes"].items()
        }
        return cls(
            half_space_w={k: list(v["w"]) for k, v in data["half_spaces"].items()},
            half_space_b={k: float(v["b"]) for k, v in data["half_spaces"].items()},
            male_cue_angle=float(data["male_cue_angle"]),
            dim=int(data["dim"]),
            rules=rules,
        )

    # ---- evaluation (float64; fixed-order sums so results do not depend on the batch) ----

    def margins(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """w_k . z + b_k for every own half-space, (B,) float64 each."""
        names = list(self.half_space_w)
        w = torch.tensor([self.half_space_w[k] for k in names], dtype=torch.float64)  # (K, D)
        b = torch.tensor([self.half_space_b[k] for k in names], dtype=torch.float64)
        out = _project(_as_latents(z, self.dim), w) + b
        return {k: out[:, i] for i, k in enumerate(names)}

    def attributes(self, z: torch.Tensor, margins: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, A) bool, columns in `attribute_names` order."""
        m = self.margins(z) if margins is None else margins
        cols = []
        for terms, negate in self.rules.values():
            on = torch.ones_like(next(iter(m.values())), dtype=torch.bool)
            for hs, sign in terms:
                on = on & ((m[hs] > 0) if sign > 0 else (m[hs] <= 0))
            cols.append(~on if negate else on)
        return torch.stack(cols, dim=1)

    def axis(self, z: torch.Tensor, name: str) -> torch.Tensor:
        """The coordinate of z along one named axis, float64 (B,)."""
        return _as_latents(z, self.dim)[:, AXES.index(name)]

    def masculinity(self, z: torch.Tensor, margins: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Continuous masculinity cue in (-1, 1): positive on the Male side for most (not all) faces."""
        m = self.margins(z) if margins is None else margins
        angle = math.radians(self.male_cue_angle)
        raw = math.cos(angle) * m["male"] + math.sin(angle) * self.axis(z, "male_cue")
        return softsign(1.3 * raw)


def _as_latents(z: torch.Tensor, dim: int) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != dim:
        shape = tuple(z.shape) if hasattr(z, "shape") else type(z).__name__
        raise ValueError(f"latents must be a (B, {dim}) tensor, got {shape}")
    return z.to(torch.float64)


def _project(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """z @ w.T summed in a fixed order over the latent dimensions (BLAS may not be batch-invariant)."""
    out = torch.zeros(z.shape[0], w.shape[0], dtype=torch.float64)
    for d in range(z.shape[1]):
        out = out + z[:, d : d + 1] * w[:, d]
    return out


def build_model(
    rates: dict[str, float] | None = None,
    male_cue_angle: float = DEFAULT_MALE_CUE_ANGLE,
    eyeglasses_male_cos: float = 0.0,
) -> LatentModel:
    """The default attribute geometry, with base rates and the glasses-gender angle configurable.

    rates: CelebA attribute -> base rate of its own half-space (within its gate for gated ones,
    e.g. No_Beard's rate is the share of *men* with a beard; Brown_Hair has none, it is the rest).
    eyeglasses_male_cos: cosine between the Eyeglasses and Male directions (0: independent).
    """
    specs = {k: (dict(d), r) for k, (d, r) in DEFAULT_HALF_SPACES.items()}
    for attr, rate in (rates or {}).items():
        if attr not in RATE_OF_ATTRIBUTE:
            raise ValueError(
                f"option rates: unknown or rate-less attribute {attr!r}; use one of {sorted(RATE_OF_ATTRIBUTE)}"
            )
        if not 0.0 < float(rate) < 1.0:
            raise ValueError(f"option rates[{attr!r}] = {rate}: a base rate must lie strictly in (0, 1)")
        hs = RATE_OF_ATTRIBUTE[attr]
        specs[hs] = (specs[hs][0], float(rate))
    if not -1.0 < float(eyeglasses_male_cos) < 1.0:
        raise ValueError(f"option eyeglasses_male_cos = {eyeglasses_male_cos}: must lie strictly in (-1, 1)")
    if not 0.0 <= float(male_cue_angle) <= 90.0:
        raise ValueError(f"option male_cue_angle = {male_cue_angle}: must lie in [0, 90] degrees")
    c = float(eyeglasses_male_cos)
    specs["eyeglasses"] = ({"eyeglasses": math.sqrt(1.0 - c * c), "male": c}, specs["eyeglasses"][1])
    normal = NormalDist()
    return LatentModel(
        half_space_w={k: _unit(d) for k, (d, _) in specs.items()},
        half_space_b={k: normal.inv_cdf(r) for k, (_, r) in specs.items()},
        male_cue_angle=float(male_cue_angle),
    )


def sample_latents(n: int, seed: int) -> torch.Tensor:
    """n latents z ~ N(0, I) as float32, reproducible across platforms (NumPy's PCG64 stream)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((n, LATENT_DIM), dtype=np.float32))
