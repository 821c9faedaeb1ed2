"""The run-directory contract: every stage writes a ``run.json`` manifest; every analysis reads runs through it.

A manifest says what a directory is (``kind``: train, eval, dissect, layers, and the sweep summaries),
under which ``schema`` it was written, the resolved ``config``, its ``checkpoints`` (relative to the run
dir), the ``data`` identity, the ``wandb`` group and name, and for an analysis the ``parent`` run (its
dir and the checkpoint's path, size and mtime) and the ``settings`` that change its numbers. From these:

* ``find_runs(path, kind)`` lists runs under a run dir, a sweep dir or a tree of sweeps;
* ``is_current(record, run, settings)`` says whether an analysis result still describes a training run;
* ``locate_run`` / ``build_datamodule`` / ``load_model`` rebuild a training run for an analysis;
* ``locate_user_model`` does the same for a model the user brings (dissect.py ``model.file=``): a
  ``UserModelRun`` reads like a ``TrainedRun`` (targets, config.data, provenance, W&B identity), with the data
  from the dissect config's ``data`` group, since there is no training run.
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
    def label(self) -> str:
        """How messages and console summaries name it."""
        return str(self.run_dir)

    @property
    def data_record(self) -> dict[str, Any]:
        """The data identity an analysis copies into its run.json."""
        return dict(self.record.data) if self.record else {}

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


USER_MODEL_FAMILY = "user-model"
RUN_DATA_KEYS = ("data_dir", "num_workers", "progress", "protected")  # the data options a run= analysis may change


@dataclass(frozen=True, eq=False)
class UserModelRun:
    """A model the user brings (dissect.py ``model.file=... model.class_name=... model.state_dict=...``) as an
    analysis reads it. ``config.model`` holds its options, ``config.data`` the FaceDataModule options it is analysed
    on (the dissect config's data group, at the model's input size, its heads as the targets); ``model`` is the
    loaded ``facebias.models.user.UserModel``. No run dir, training metrics or manifest: results go to the
    analysis's own output dir."""

    file: Path
    class_name: str
    state_dict: Path
    config: DictConfig
    model: Any
    name: str | None = None  # exp_name, if given
    run_dir: None = None
    record: None = None
    train_metrics: None = None

    @property
    def checkpoint(self) -> Path:
        return self.state_dict

    @property
    def targets(self) -> list[str]:
        return list(self.config.model.heads)

    @property
    def label(self) -> str:
        return f"{self.class_name} from {self.file}"

    @property
    def data_record(self) -> dict[str, Any]:
        return {"source": self.config.data.get("source"), "options": OmegaConf.to_container(self.config.data)}

    @property
    def concept(self) -> str | None:
        return self.config.data.get("concept")

    @property
    def p(self) -> float | None:
        return None

    @property
    def family(self) -> str:
        return USER_MODEL_FAMILY

    @property
    def experiment(self) -> str:
        return str(self.name or f"{self.class_name} ({self.file.name})")

    def parent(self) -> dict[str, Any]:
        """The model's file, class and weights (path, size, mtime), in place of a training run."""
        return {"run_dir": None, "model_file": str(self.file), "class_name": self.class_name,
                **checkpoint_identity(self.state_dict)}

    def provenance(self) -> dict[str, Any]:
        return {"source": self.parent(), "experiment": self.experiment, "family": self.family, "P": None,
                "concept": self.concept, "targets": self.targets, "train_seed": None,
                "model": OmegaConf.to_container(self.config.model)}

    def wandb_identity(self, stage: str) -> dict[str, str]:
        return {"group": str(self.name or USER_MODEL_FAMILY), "name": f"{stage} {self.experiment}"}


def locate_user_model(cfg: DictConfig, search: tuple[Path, ...] = (), check_output: bool = True) -> UserModelRun:
    """The model named by ``model.file`` / ``model.class_name`` / ``model.state_dict`` (and its other ``model.*``
    options), loaded and checked, with the data options it will be analysed on (``data.*``, checked against the
    model's). Everything that can be checked without the images is checked here: nothing is read or generated.
    ``check_output=False``: the output is not required to be (batch, len(model.heads)) logits here; the analysis
    checks it (analysis=counterfactual: against its objective, which may read a map)."""
    from facebias.models.user import ModelLoadError, load_user_model, model_options

    node = OmegaConf.to_container(cfg.model, resolve=True) if isinstance(cfg.get("model"), DictConfig) else {}
    options = model_options(node)
    file = resolve_path(str(options["file"]), "model.file", search)
    if not file.is_file():
        raise ModelLoadError(f"model.file={options['file']}: {file} is not a file; give the .py file that defines "
                             f"{options['class_name']}")
    state_dict = resolve_path(str(options["state_dict"]), "model.state_dict", search)
    if not state_dict.is_file():
        raise ModelLoadError(f"model.state_dict={options['state_dict']}: {state_dict} is not a file; save the "
                             "weights with torch.save(net.state_dict(), path)")
    data = user_model_data(cfg, options)
    model = load_user_model(file, options["class_name"], state_dict, options["heads"], options["image_size"],
                            options["mean"], options["std"], options["kwargs"], check=check_output)
    config = OmegaConf.create({"model": {**options, "file": str(file), "state_dict": str(state_dict)},
                               "data": data})
    return UserModelRun(file, options["class_name"], state_dict, config, model, cfg.get("exp_name"))


def user_model_data(cfg: DictConfig, options: dict[str, Any]) -> dict[str, Any]:
    """The FaceDataModule options of a user model: the config's ``data`` node (a data group: synthfaces, celeba,
    folder) with the model's heads as targets and its input size as the image size."""
    node = cfg.get("data")
    if not isinstance(node, DictConfig) or "source" not in node:
        raise ValueError("a model you bring needs data options: choose a data source with data=synthfaces (the "
                         "default), data=celeba data.root=<dir> or data=folder data.root=<images> "
                         "data.folder.csv_path=<labels.csv>")
    source = node.get("source")
    missing = {key if key.startswith("data.") else f"data.{key}" for key in OmegaConf.missing_keys(node)}
    if source != "synthfaces" and node.get("root") is None:
        missing.add("data.root")
    if missing:
        raise ValueError(f"data={source} needs {', '.join(sorted(missing))}: e.g. "
                         + ("data.root=/images data.folder.csv_path=/labels.csv (an image root and a CSV of "
                            "relative paths and 0/1 labels)" if source == "folder"
                            else "data.root=/datasets/celeba (CelebA's official layout)"))
    data = OmegaConf.to_container(node, resolve=True)
    data.pop("_target_", None)
    heads, size = options["heads"], options["image_size"]
    targets = data.get("targets")
    targets = [targets] if isinstance(targets, str) else targets
    if targets is not None and list(targets) != heads:
        raise ValueError(f"data.targets={list(targets)} differs from model.heads={heads}: with a model you "
                         "bring, the data's targets are its heads (output column i is heads[i]); set model.heads "
                         "and leave data.targets alone")
    if data.get("image_size") is not None and int(data["image_size"]) != size:
        raise ValueError(f"data.image_size={data['image_size']} differs from model.image_size={size}: the images are "
                         "resized to the model's input size; set model.image_size and leave data.image_size alone")
    data["targets"], data["image_size"] = heads, size
    data["data_dir"] = data.get("data_dir") or OmegaConf.select(cfg, "paths.data_dir", default=None) or "data"
    data["num_workers"] = data.get("num_workers") or 0
    return data


def check_user_data(datamodule, run: UserModelRun) -> None:
    """Folder data for a user model: the columns named as heads, protected attribute and concept hold binary
    labels (one error naming the option and the values found), checked on the CSV before any image is read."""
    if datamodule.source != "folder" or not datamodule.folder.get("csv_path"):
        return
    from facebias.data.folder import column_values, is_binary_label

    named = [("model.heads", f"model.heads names {head!r}", head) for head in run.targets]
    protected = datamodule.protected
    if protected is not None:
        subject = (f"data.protected={protected!r}" if datamodule.protected_given
                   else f"data.protected is null, so the protected attribute defaults to {protected!r}")
        named.append(("data.protected", subject, protected))
    if datamodule.concept not in (None, "grayscale"):
        named.append(("data.concept", f"data.concept={datamodule.concept!r}", datamodule.concept))
    csv_path = Path(datamodule.folder["csv_path"])
    values = column_values(csv_path, [column for _, _, column in named])
    for option, subject, column in named:
        found = values.get(column)
        if found is None:
            continue  # not a column: the attribute check after reading the table names it
        if not all(is_binary_label(v) for v in found):
            shown = ", ".join(repr(v) for v in found[:12]) + (", ..." if len(found) > 12 else "")
            raise ValueError(f"{subject}: column {column!r} of {csv_path} is not binary; values found: {shown}. "
                             f"Code it as 0/1 (or -1/1, true/false), or choose another column with {option}=")


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


def build_datamodule(run: TrainedRun | UserModelRun, overrides: Mapping[str, Any] | None = None, setup: bool = True):
    """The run's FaceDataModule: the same splits as in training (options in `overrides` that are not None replace
    the saved ones; only use it for what does not change the splits, e.g. batch size). For a user model, the
    data options it was located with (its folder labels checked first). ``setup=False``: constructed only (no
    table read, no image decoded), for checks before the work; call ``setup("predict")`` after them."""
    from facebias.data.datamodule import FaceDataModule

    data = OmegaConf.to_container(run.config.data, resolve=True)
    data.pop("_target_", None)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    datamodule = FaceDataModule(**data)
    if isinstance(run, UserModelRun):
        check_user_data(datamodule, run)
    if setup:
        datamodule.setup("predict")
    return datamodule


def load_model(run: TrainedRun | UserModelRun):
    """The checkpoint's model (class from the run's `model._target_`), on the CPU, in eval mode; for a user
    model, the UserModel it was located with."""
    from hydra.utils import get_class

    if isinstance(run, UserModelRun):
        return run.model.eval()
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
