"""Generated training images as one more data source: the output of the latent de-biasing stage.

An augmented set is a directory written by ``facebias.debias.stage`` (atomically, keyed by generator,
classifiers, sizes and seed): ``images.npy`` (uint8, (2n, S, S, 3), memory-mapped: G(z) then G(z')),
``labels.npz`` (``target``, ``protected``, ``part``: 0 for G(z), 1 for G(z'), and ``agreed``: whether f_t kept
the target on G(z') and f_g saw the protected attribute flip, the same for both faces of a pair) and ``meta.json``.
``AugmentedBatches`` serves it with the same batch dict as the real images, and ``JoinedBatches`` puts
real and generated rows behind one index, so one shuffled loader mixes them (no weighting), as the
method prescribes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

PARTS = {"z": 0, "zprime": 1}  # G(z): labels from f_t and f_g; G(z'): z's target label, flipped protected
# all: every pair (the method); agreed: only pairs the classifiers see as the method means them (an extension:
# a z' that also changed the target teaches the wrong label for it)
PAIRS = ("all", "agreed")


class AugmentedBatches(Dataset):
    """The chosen parts of an augmented set, as batch dicts (``row`` = -1 - index: not a source row); ``pairs``:
    all, or only the agreed pairs (both faces of each)."""

    def __init__(self, path: str | Path, parts: Sequence[str] = ("z", "zprime"), pairs: str = "all"):
        path = Path(path)
        unknown = [p for p in parts if p not in PARTS]
        if unknown or not parts:
            raise ValueError(f"augmented parts {list(parts)}: use a non-empty subset of {list(PARTS)}")
        if pairs not in PAIRS:
            raise ValueError(f"augmented pairs={pairs!r}: use one of {list(PAIRS)}")
        missing = [name for name in ("images.npy", "labels.npz", "meta.json") if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} is not a finished augmented set: {', '.join(missing)} missing; "
                                    "rerun the de-biasing stage (it resumes where it stopped)")
        self.path, self.parts = path, list(parts)
        self.meta = json.loads((path / "meta.json").read_text())
        self.images = np.load(path / "images.npy", mmap_mode="r")
        labels = np.load(path / "labels.npz")
        keep = np.isin(labels["part"], [PARTS[p] for p in parts])
        if pairs == "agreed":
            if "agreed" not in labels.files:
                raise ValueError(f"{path} was built before pairs were marked agreed (labels.npz has no 'agreed'); "
                                 "delete the folder and rerun: the de-biasing stage rebuilds it")
            keep &= labels["agreed"].astype(bool)
        self.index = np.flatnonzero(keep)
        self.targets = labels["target"][keep].reshape(len(self.index), -1).astype(np.uint8)
        self.protected = labels["protected"][keep].astype(np.uint8)
        self.part = labels["part"][keep].astype(np.uint8)

    def __len__(self) -> int:
        return len(self.index)

    def __getitems__(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx)
        rows = self.index[idx]
        protected = torch.from_numpy(self.protected[idx].astype(np.int64))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self.images[rows])),
            "target": torch.from_numpy(self.targets[idx].astype(np.float32)),
            "protected": protected,
            "concept": protected.clone(),  # the de-biased concept is the protected attribute
            "row": torch.from_numpy(-1 - rows.astype(np.int64)),
            "gray": torch.zeros(len(idx), dtype=torch.bool),
        }


class JoinedBatches(Dataset):
    """Real rows then generated rows behind one index; a batch drawn across both is one batch dict."""

    def __init__(self, real: Dataset, generated: AugmentedBatches):
        self.real, self.generated = real, generated
        self.n_real = len(real)

    def __len__(self) -> int:
        return self.n_real + len(self.generated)

    def __getitems__(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx)
        from_real, from_generated = idx[idx < self.n_real], idx[idx >= self.n_real] - self.n_real
        parts = [d.__getitems__(i) for d, i in ((self.real, from_real), (self.generated, from_generated)) if len(i)]
        if len(parts) == 1:
            return parts[0]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
