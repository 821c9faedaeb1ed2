"""Find and rebuild what a training run left behind: its config, checkpoint, data splits and model.

A training run dir (train.py) holds ``config.yaml`` (the resolved config), ``checkpoints/best.ckpt``
and ``last.ckpt`` and ``metrics.json`` (with the W&B group and name of the run). The data module is
rebuilt from the saved config, which gives the very same splits (they are deterministic per seed).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CHECKPOINT_NAMES = ("best", "last")


class RunNotFoundError(FileNotFoundError):
    """A run dir or checkpoint that is missing or incomplete (the message names the path and what is expected)."""


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    checkpoint: Path
    config: DictConfig  # the training run's resolved config
    train_metrics: dict[str, Any] | None  # its metrics.json, when it got that far

    @property
    def targets(self) -> list[str]:
        return list(self.config.data.targets)

    @property
    def data_description(self) -> dict[str, Any]:
        return (self.train_metrics or {}).get("data") or {}

    @property
    def concept(self) -> str | None:
        return self.config.data.get("concept")

    @property
    def p(self) -> float | None:
        return None if self.concept is None else float(self.config.data.p)

    @property
    def family(self) -> str:
        return str(self.config.get("family") or self.concept or "unbiased")

    def provenance(self) -> dict[str, Any]:
        """Which run and checkpoint (by size and mtime) an analysis came from: the key to reuse or redo it."""
        stat = self.checkpoint.stat()
        return {
            "source": {"run_dir": str(self.run_dir), "checkpoint": str(self.checkpoint),
                       "checkpoint_mtime": stat.st_mtime, "checkpoint_size": stat.st_size},
            "experiment": self.experiment, "family": self.family, "P": self.p, "concept": self.concept,
            "targets": self.targets, "train_seed": self.config.get("seed"),
        }

    @property
    def experiment(self) -> str:
        return str(self.config.get("exp_name") or self.run_dir.name)

    def wandb_identity(self) -> dict[str, str]:
        """The training run's W&B group and name (from its metrics.json), so evaluations join its group."""
        recorded = (self.train_metrics or {}).get("wandb") or {}
        group = recorded.get("group") or self.config.get("exp_name") or self.run_dir.name
        name = recorded.get("name") or self.experiment
        return {"group": str(group), "name": f"eval {name}"}


def resolve_path(value: str, option: str, search: tuple[Path, ...] = ()) -> Path:
    """An existing path given on the command line: absolute, or relative to the working dir or `search` dirs."""
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, *(base / path for base in search)]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise RunNotFoundError(f"{option}={value}: no such file or directory (looked at {looked})")


def locate_run(run: str | None = None, ckpt: str | None = None, checkpoint: str = "best",
               search: tuple[Path, ...] = ()) -> TrainedRun:
    """The training run named by ``run=<dir>`` and/or ``ckpt=<file>``; clear errors for incomplete runs."""
    if checkpoint not in CHECKPOINT_NAMES:
        raise ValueError(f"checkpoint={checkpoint!r}: use one of {', '.join(CHECKPOINT_NAMES)}")
    if run is None and ckpt is None:
        raise ValueError("name what to evaluate: run=<training run dir> (outputs/train/...), "
                         "ckpt=<checkpoint file> or sweep=<multirun dir>")
    ckpt_path = resolve_path(ckpt, "ckpt", search) if ckpt is not None else None
    if ckpt_path is not None and not ckpt_path.is_file():
        raise RunNotFoundError(f"ckpt={ckpt}: {ckpt_path} is not a file; pass a checkpoint such as "
                               "<run>/checkpoints/best.ckpt")
    if run is not None:
        run_dir = resolve_path(run, "run", search)
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise RunNotFoundError(_missing_config_message(run_dir, f"run={run}"))
    else:
        candidates = [ckpt_path.parent / "config.yaml", ckpt_path.parent.parent / "config.yaml"]
        config_path = next((c for c in candidates if c.is_file()), None)
        if config_path is None:
            raise RunNotFoundError(
                f"ckpt={ckpt}: no training config next to the checkpoint (looked for "
                f"{' and '.join(str(c) for c in candidates)}); the checkpoint must sit in its training run dir "
                "(<run>/checkpoints/*.ckpt beside <run>/config.yaml), or pass run=<that dir> as well")
        run_dir = config_path.parent
    if ckpt_path is None:
        ckpt_path = _run_checkpoint(run_dir, checkpoint)
    config = OmegaConf.load(config_path)
    if "data" not in config or "targets" not in config.data:
        raise RunNotFoundError(f"{config_path} is not a train.py config (no data.targets); "
                               "point run= at a directory written by train.py")
    metrics_path = run_dir / "metrics.json"
    train_metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return TrainedRun(run_dir, ckpt_path, config, train_metrics)


def _missing_config_message(run_dir: Path, option: str) -> str:
    nested = sorted(p.parent for p in run_dir.glob("*/config.yaml"))
    hint = (f"; it holds {len(nested)} run dirs (e.g. {nested[0]}): it looks like a multirun dir, "
            f"use sweep={run_dir} to evaluate them all") if nested else ""
    return (f"{option}: {run_dir / 'config.yaml'} is missing; a training run dir (written by train.py) holds "
            f"config.yaml, checkpoints/best.ckpt and metrics.json{hint}")


def _run_checkpoint(run_dir: Path, which: str) -> Path:
    wanted = run_dir / "checkpoints" / f"{which}.ckpt"
    if wanted.is_file():
        return wanted
    others = [run_dir / "checkpoints" / f"{name}.ckpt" for name in CHECKPOINT_NAMES if name != which]
    fallback = next((o for o in others if o.is_file()), None)
    if fallback is None:
        raise RunNotFoundError(
            f"{run_dir}: no checkpoint; expected {wanted} (or {', '.join(map(str, others))}): did training "
            "finish its first epoch? Pass ckpt=<file> to evaluate another checkpoint")
    warnings.warn(f"{wanted} is missing; evaluating {fallback} instead", RuntimeWarning, stacklevel=2)
    return fallback


def build_datamodule(run: TrainedRun, overrides: dict[str, Any] | None = None):
    """The run's FaceDataModule, set up: the same splits as in training (options in `overrides` that are
    not None replace the saved ones; only use it for what does not change the splits, e.g. batch size)."""
    from facebias.data.datamodule import FaceDataModule

    data = OmegaConf.to_container(run.config.data, resolve=True)
    data.pop("_target_", None)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    datamodule = FaceDataModule(**data)
    datamodule.setup("predict")
    return datamodule


def load_model(run: TrainedRun):
    """The checkpoint's model (class from the run's `model._target_`), on the CPU, in eval mode."""
    from hydra.utils import get_class

    model_class = get_class(run.config.model._target_)
    try:
        model = model_class.load_from_checkpoint(run.checkpoint, weights_only=True, map_location="cpu")
    except Exception as error:  # name the file: torch's own message rarely does
        raise RuntimeError(f"could not load {run.checkpoint} as {run.config.model._target_}: {error}") from error
    heads = list(getattr(model, "targets", run.targets))
    if heads != run.targets:
        raise ValueError(f"{run.checkpoint} has heads {heads} but {run.run_dir / 'config.yaml'} trains "
                         f"{run.targets}: the checkpoint belongs to another run; pass run= and ckpt= that match")
    return model.eval()
