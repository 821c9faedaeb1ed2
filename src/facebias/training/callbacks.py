"""Callbacks from the `callbacks` config group: one `_target_` entry per callback, built with Hydra.

conf/callbacks/default.yaml holds the best-by-val/AP and last checkpoints and a progress bar; an entry set
to null is skipped, so `callbacks.progress_bar=null` (or `~callbacks.progress_bar`) drops the bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig


def build_callbacks(cfg: DictConfig | None, output_dir: Path) -> list:
    """Instantiate every entry of `cfg` that has a `_target_`; null entries are skipped.

    A relative `dirpath` (e.g. `checkpoints/`, as other templates write it) is taken under `output_dir`,
    the run dir, not the working directory (Hydra 1.3 does not chdir).
    """
    import hydra
    from pytorch_lightning.callbacks import Callback

    callbacks = []
    for name, entry in (cfg or {}).items():
        if entry is None:
            continue
        if not isinstance(entry, Mapping) or "_target_" not in entry:
            raise ValueError(
                f"callbacks.{name}={entry!r}: each callbacks entry must be a config with a _target_ "
                f"(e.g. callbacks.{name}._target_=pytorch_lightning.callbacks.TQDMProgressBar) or null; "
                f"drop it with ~callbacks.{name} or callbacks.{name}=null")
        overrides = {}
        dirpath = entry.get("dirpath")
        if dirpath is not None and not Path(str(dirpath)).is_absolute():
            overrides["dirpath"] = str(Path(output_dir) / str(dirpath))
        callback = hydra.utils.instantiate(entry, **overrides)
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks.{name}: {entry['_target_']} gave a {type(callback).__name__}, "
                            f"not a pytorch_lightning Callback")
        callbacks.append(callback)
    return callbacks
