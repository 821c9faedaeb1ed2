"""Callbacks from the `callbacks` config group: one `_target_` entry per callback, built with Hydra.

conf/callbacks/default.yaml holds the best-by-val/AP and last checkpoints (`ModelCheckpoint` below: random
states saved, the best carried over on resume) and a progress bar; an entry set to null is skipped, so
`callbacks.progress_bar=null` (or `~callbacks.progress_bar`) drops the bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint


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



class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, made for resuming exactly: random states saved, best-so-far carried over.

    - Random states: every checkpoint holds the torch (CPU, CUDA), numpy and python random states as of its
      writing (the end of a training epoch, after validation; `facebias.training.rng`, tensors and lists, so
      `weights_only=True` loads still work); resuming puts them back when training starts, after Lightning has
      restored weights, optimizer, scheduler and loops. With the training order a function of (seed, epoch)
      (`facebias.data.datamodule.EpochShuffle`), `ckpt_path=<run>/checkpoints/last.ckpt` then continues exactly
      as the uninterrupted run (same flips, same batches, same metrics.json; tests/test_resume.py). Under DDP
      every rank draws the same states (one seed), so rank 0's serve them all. `random_state=False`: off.
    - Best so far: a resumed run writes a new run dir, and Lightning's callback forgets the best score when its
      `dirpath` changes, so the first epoch after resuming would become "best" whatever its score. This one
      copies the old run's top-k files (best.ckpt) into the new `dirpath` (rank 0, when training starts) with
      their scores, and the resumed run keeps the checkpoint the uninterrupted run would keep. An unmonitored
      one (last.ckpt) has nothing to carry: it is written anew at the next epoch's end.
    """

    def __init__(self, *args, random_state: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.random_state = random_state
        self._pending_random_state: dict | None = None
        self._carry: dict[str, str] = {}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.random_state:
            from facebias.training.rng import capture

            state["random_state"] = capture()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        random_state = state_dict.pop("random_state", None)
        if self.random_state and random_state is not None:
            self._pending_random_state = random_state
        old_dir = state_dict.get("dirpath", self.dirpath)
        if self.dirpath is None or old_dir == self.dirpath:
            return super().load_state_dict(state_dict)
        if self.monitor is None:  # last.ckpt: nothing to carry, and no warning about it
            return None
        best_k = dict(state_dict.get("best_k_models") or {})
        if not best_k or not all(Path(path).is_file() for path in best_k):
            return super().load_state_dict(state_dict)  # Lightning's warning: the old files are gone

        def moved(path: str | None) -> str | None:
            return str(Path(self.dirpath) / Path(path).name) if path else path

        self._carry = {path: moved(path) for path in best_k}
        super().load_state_dict({**state_dict, "dirpath": self.dirpath,
                                 "best_k_models": {moved(path): score for path, score in best_k.items()},
                                 "best_model_path": moved(state_dict.get("best_model_path")),
                                 "kth_best_model_path": moved(state_dict.get("kth_best_model_path")),
                                 "last_model_path": ""})

    def on_train_start(self, trainer, pl_module) -> None:
        if self._carry:
            import shutil

            if trainer.is_global_zero:
                for old, new in self._carry.items():
                    Path(new).parent.mkdir(parents=True, exist_ok=True)
                    if Path(old).resolve() != Path(new).resolve():
                        shutil.copy2(old, new)
            trainer.strategy.barrier("facebias.ModelCheckpoint.carry")
            self._carry = {}
        if self._pending_random_state is not None:
            from facebias.training.rng import restore

            restore(self._pending_random_state)
            self._pending_random_state = None
        super().on_train_start(trainer, pl_module)
