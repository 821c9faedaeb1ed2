"""Every random state a run draws from, as a checkpoint-safe dict, and back.

A training run draws from torch's CPU generator (the random flips of `random_hflip`, dropout), the CUDA
generators (cuDNN dropout), numpy's and python's global generators; the training order is not among them (it
is a function of (seed, epoch), `facebias.data.datamodule.EpochShuffle`). `capture()` returns them as tensors,
lists and plain numbers, so checkpoints holding them still load with `torch.load(..., weights_only=True)`;
`restore()` puts them back. `facebias.training.callbacks.ModelCheckpoint` stores them in every checkpoint.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    """The current torch (CPU and every CUDA device), numpy and python random states."""
    key, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": str(key), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore(state: dict[str, Any]) -> None:
    """Put back the states `capture()` returned (a part it lacks is left as it is)."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        n = state["numpy"]
        keys = np.asarray(torch.as_tensor(n["keys"]).numpy(), dtype=np.int64).astype(np.uint32)
        np.random.set_state((n["key"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"])))
    if "python" in state:
        p = state["python"]
        gauss_next = p["gauss_next"]
        random.setstate((int(p["version"]), tuple(int(v) for v in p["internal"]),
                         None if gauss_next is None else float(gauss_next)))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for device, saved in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(torch.as_tensor(saved, dtype=torch.uint8).cpu(), device)
