"""The run-directory contract: every stage writes a ``run.json`` manifest; every analysis reads runs through it.

A manifest says what a directory is (``kind``: train, eval, dissect, layers, and the sweep summaries),
under which ``schema`` it was written, the resolved ``config``, its ``checkpoints`` (relative to the run
dir), the ``data`` identity, the ``wandb`` group and name, and for an analysis the ``parent`` run (its
dir and the checkpoint's path, size and mtime) and the ``settings`` that change its numbers. From these:

* ``find_runs(path, kind)`` lists runs under a run dir, a sweep dir or a tree of sweeps;
* ``is_current(record, run, settings)`` says whether an analysis result still describes a training run;
* ``locate_run`` / ``build_datamodule`` / ``load_model`` rebuild a training run for an analysis.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from facebias.reporting.files import read_json, write_json_atomic

RUN_FILE = "run.json"
SCHEMA_VERSION = 1
TRAIN = "train"
CHECKPOINT_NAMES = ("best", "last")
_SKIP_DIRS = {"wandb", ".hydra", "checkpoints", "plots", "__pycache__", "csv"}


class RunNotFoundError(FileNotFoundError):
    """A run dir or checkpoint that is missing or incomplete (the message names the path and what is expected)."""


@dataclass
class RunRecord:
    """The contents of run.json."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "finished"  # running | finished
    checkpoints: dict[str, str] = field(default_factory=dict)  # name -> path relative to the run dir
    data: dict[str, Any] = field(default_factory=dict)
    wandb: dict[str, str] = field(default_factory=dict)
    parent: dict[str, Any] | None = None  # an analysis: the training run and checkpoint it read
    settings: dict[str, Any] = field(default_factory=dict)  # an analysis: the options that change its numbers
    result: str | None = None  # the file holding the stage's numbers (metrics.json, dissect.json, ...)
    schema: int = SCHEMA_VERSION
    created: float = field(default_factory=time.time)

    def write(self, run_dir: Path) -> Path:
        return write_json_atomic(Path(run_dir) / RUN_FILE, asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        path = Path(run_dir) / RUN_FILE
        try:
            payload = read_json(path)
        except (OSError, ValueError) as error:
            raise RunNotFoundError(f"{path}: unreadable run manifest ({error})") from error
        if not isinstance(payload, dict) or "kind" not in payload:
            raise RunNotFoundError(f"{path}: not a facebias run manifest (no 'kind')")
        if payload.get("schema", 0) > SCHEMA_VERSION:
            raise RunNotFoundError(f"{path}: written by a newer facebias (schema {payload['schema']} > "
                                   f"{SCHEMA_VERSION}); upgrade facebias to read it")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in payload.items() if k in known})

    def result_payload(self, run_dir: Path) -> dict[str, Any] | None:
        if not self.result:
            return None
        path = Path(run_dir) / self.result
        return read_json(path) if path.is_file() else None


def output_dir() -> Path:
    """This job's Hydra output dir (Hydra 1.3 does not chdir: every stage writes through this)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def run_records(path: Path) -> dict[Path, RunRecord]:
    """Every run under ``path`` (itself included): its resolved dir -> its manifest, read once."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(Path(path)):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        if RUN_FILE in filenames:
            try:
                found[Path(dirpath).resolve()] = RunRecord.read(Path(dirpath))
            except RunNotFoundError as error:
                warnings.warn(f"skipping {dirpath}: {error}", RuntimeWarning, stacklevel=2)
    return found


def find_runs(path: Path, kind: str | None = None) -> list[Path]:
    """Every dir with a run.json under ``path`` (itself included), optionally of one ``kind``, sorted."""
    return sorted(d for d, record in run_records(path).items() if kind is None or record.kind == kind)


def checkpoint_identity(checkpoint: Path) -> dict[str, Any]:
    """What identifies a checkpoint file's contents cheaply: path, size and mtime."""
    stat = Path(checkpoint).stat()
    return {"checkpoint": str(checkpoint), "checkpoint_mtime": stat.st_mtime, "checkpoint_size": stat.st_size}


@dataclass(frozen=True)
class TrainedRun:
    """A training run as an analysis reads it: its dir, the chosen checkpoint, config and training metrics."""

    run_dir: Path
    checkpoint: Path
    config: DictConfig  # the training run's resolved config
    train_metrics: dict[str, Any] | None  # its metrics.json, when it got that far
    record: RunRecord | None = None

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

    @property
    def experiment(self) -> str:
        return str(self.config.get("exp_name") or self.run_dir.name)

    def parent(self) -> dict[str, Any]:
        """How an analysis names this run in its manifest: the dir and the checkpoint's identity."""
        return {"run_dir": str(self.run_dir), **checkpoint_identity(self.checkpoint)}

    def provenance(self) -> dict[str, Any]:
        """Which run and checkpoint an analysis came from, and what the run was (family, P, targets)."""
        return {"source": self.parent(), "experiment": self.experiment, "family": self.family, "P": self.p,
                "concept": self.concept, "targets": self.targets, "train_seed": self.config.get("seed")}

    def wandb_identity(self, stage: str) -> dict[str, str]:
        """The training run's W&B group, so an analysis sits beside its training run; named '<stage> <run>'."""
        recorded = (self.record.wandb if self.record else None) or (self.train_metrics or {}).get("wandb") or {}
        group = recorded.get("group") or self.config.get("exp_name") or self.run_dir.name
        name = recorded.get("name") or self.experiment
        return {"group": str(group), "name": f"{stage} {name}"}


def is_current(record: RunRecord, run: TrainedRun, settings: Mapping[str, Any]) -> bool:
    """An analysis result still describes ``run``: same checkpoint file (path, size, mtime), same settings."""
    parent = record.parent or {}
    mine = run.parent()
    same_checkpoint = all(parent.get(k) == mine[k] for k in ("checkpoint", "checkpoint_size", "checkpoint_mtime"))
    return (record.status == "finished" and same_checkpoint
            and all(record.settings.get(key) == value for key, value in settings.items()))


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
        raise ValueError("name what to analyse: run=<training run dir> (outputs/train/...), "
                         "ckpt=<checkpoint file> or sweep=<multirun dir>")
    ckpt_path = resolve_path(ckpt, "ckpt", search) if ckpt is not None else None
    if ckpt_path is not None and not ckpt_path.is_file():
        raise RunNotFoundError(f"ckpt={ckpt}: {ckpt_path} is not a file; pass a checkpoint such as "
                               "<run>/checkpoints/best.ckpt")
    if run is not None:
        run_dir = resolve_path(run, "run", search)
        if not (run_dir / RUN_FILE).is_file() and not (run_dir / "config.yaml").is_file():
            raise RunNotFoundError(_missing_manifest_message(run_dir, f"run={run}"))
    else:
        candidates = [ckpt_path.parent, ckpt_path.parent.parent]
        run_dir = next((c for c in candidates if (c / RUN_FILE).is_file() or (c / "config.yaml").is_file()), None)
        if run_dir is None:
            raise RunNotFoundError(
                f"ckpt={ckpt}: no training run manifest next to the checkpoint (looked for "
                f"{' and '.join(str(c / RUN_FILE) for c in candidates)}); the checkpoint must sit in its training run "
                "dir (<run>/checkpoints/*.ckpt beside <run>/run.json), or pass run=<that dir> as well")
    record = RunRecord.read(run_dir) if (run_dir / RUN_FILE).is_file() else None
    if record is not None and record.kind != TRAIN:
        raise RunNotFoundError(f"{run_dir} holds a '{record.kind}' run, not a training run; point run= at a "
                               f"directory written by train.py (its {RUN_FILE} names the parent: "
                               f"{(record.parent or {}).get('run_dir')})")
    if record is not None:
        config = OmegaConf.create(record.config)
    else:  # a run written before manifests existed: its config.yaml
        config = OmegaConf.load(run_dir / "config.yaml")
    if "data" not in config or "targets" not in config.data:
        raise RunNotFoundError(f"{run_dir} is not a train.py run (no data.targets in its config); "
                               "point run= at a directory written by train.py")
    if ckpt_path is None:
        ckpt_path = _run_checkpoint(run_dir, checkpoint, record)
    metrics_path = run_dir / "metrics.json"
    train_metrics = read_json(metrics_path) if metrics_path.is_file() else None
    return TrainedRun(run_dir.resolve(), ckpt_path, config, train_metrics, record)


def _missing_manifest_message(run_dir: Path, option: str) -> str:
    nested = find_runs(run_dir, TRAIN) if run_dir.is_dir() else []
    hint = (f"; it holds {len(nested)} training runs (e.g. {nested[0]}): it looks like a multirun dir, "
            f"use sweep={run_dir} to analyse them all") if nested else ""
    return (f"{option}: {run_dir / RUN_FILE} is missing; a training run dir (written by train.py) holds "
            f"{RUN_FILE}, config.yaml, checkpoints/best.ckpt and metrics.json{hint}")


def _run_checkpoint(run_dir: Path, which: str, record: RunRecord | None) -> Path:
    named = (record.checkpoints if record else None) or {n: f"checkpoints/{n}.ckpt" for n in CHECKPOINT_NAMES}
    wanted = run_dir / named.get(which, f"checkpoints/{which}.ckpt")
    if wanted.is_file():
        return wanted
    others = [run_dir / path for name, path in named.items() if name != which]
    fallback = next((o for o in others if o.is_file()), None)
    if fallback is None:
        raise RunNotFoundError(
            f"{run_dir}: no checkpoint; expected {wanted} (or {', '.join(map(str, others))}): did training "
            "finish its first epoch? Pass ckpt=<file> to analyse another checkpoint")
    warnings.warn(f"{wanted} is missing; using {fallback} instead", RuntimeWarning, stacklevel=2)
    return fallback


def build_datamodule(run: TrainedRun, overrides: Mapping[str, Any] | None = None):
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
        raise ValueError(f"{run.checkpoint} has heads {heads} but the config of {run.run_dir} trains "
                         f"{run.targets}: the checkpoint belongs to another run; pass run= and ckpt= that match")
    return model.eval()
