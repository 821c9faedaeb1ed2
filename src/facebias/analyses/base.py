"""What every analysis is: the hooks the driver calls, and the context a stage runs in.

An analysis says what its per-run output is (``kind`` in run.json, the ``result_file`` holding its
numbers, the ``subdir`` of a training run a sweep writes it to, the W&B ``job_type``) and implements
``settings`` (the options that change its numbers: a sweep reuses a result only when they are equal),
``run`` (one trained run into ``ctx.out``; returns what ``result_file`` holds) and ``summarize``
(the results of a sweep; returns what ``summary_file`` holds). The driver does the rest: finding runs,
reusing current results, run.json, the W&B session. An analysis with ``user_model = True`` also takes a model
the user brings (``model.file=``): its ``run`` then gets a ``runs.UserModelRun``, which reads like a
``TrainedRun`` through ``load_model``, ``build_datamodule``, ``targets``, ``config.data`` and ``provenance()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from facebias.reporting.wandb import WandbSession
from facebias.runs import RunRecord, TrainedRun, UserModelRun


@dataclass
class Context:
    """Where a stage writes (``out``), the composed config it runs under, and its W&B session."""

    cfg: DictConfig
    out: Path
    wandb: WandbSession = field(default_factory=WandbSession)
    identity: dict[str, str] = field(default_factory=dict)  # W&B group and name of this stage
    roots: list[Path] = field(default_factory=list)  # a sweep: the sweep dirs it summarises

    def option(self, key: str, default: Any = None) -> Any:
        value = OmegaConf.select(self.cfg, key, default=default)
        return default if value is None else value

    def data_overrides(self, keys: Sequence[str]) -> dict[str, Any]:
        """The `data.<key>` options given to this stage (null: as the training run had it)."""
        return {key: OmegaConf.select(self.cfg, f"data.{key}") for key in keys}

    def search_dirs(self) -> tuple[Path, ...]:
        """Where relative run=/ckpt=/sweep= paths may also live: the project root (paths.root_dir)."""
        root = OmegaConf.select(self.cfg, "paths.root_dir", throw_on_resolution_failure=False)
        return (Path(root),) if root else ()


@dataclass
class Result:
    """One analysis output as a sweep sees it: its dir, manifest and the numbers of its result file."""

    dir: Path
    record: RunRecord
    payload: dict[str, Any]


class Analysis(ABC):
    """Base of every analysis (see the module docstring)."""

    name: ClassVar[str]
    kind: ClassVar[str]
    result_file: ClassVar[str]
    subdir: ClassVar[str]
    summary_file: ClassVar[str | None] = None  # None: the analysis has no sweep form
    job_type: ClassVar[str | None] = None  # None: nothing is logged to W&B
    user_model: ClassVar[bool] = False  # True: also analyses a model the user brings (model.file=)
    # True: a user model's output must be (batch, len(model.heads)) logits, checked as it is loaded; False: the
    # analysis checks the output itself (counterfactual: logits of a head, or a map, as its objective needs)
    user_model_logits: ClassVar[bool] = True

    def settings(self, cfg: DictConfig) -> dict[str, Any]:
        return {}

    @abstractmethod
    def run(self, run: TrainedRun | UserModelRun, settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        """One trained run (or user model) into ``ctx.out``; returns what ``result_file`` holds."""

    def summarize(self, results: Sequence[Result], skipped: Sequence[Mapping[str, str]],
                  settings: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
        raise ValueError(f"analysis={self.name} has no sweep form: name one run with run= (or ckpt=)")

    def wandb_config(self, run: TrainedRun | UserModelRun, settings: Mapping[str, Any]) -> dict[str, Any]:
        from facebias.reporting.wandb import plain_config

        return {self.name: dict(settings), "source": run.parent(), "train": plain_config(run.config)}

    def print_run(self, payload: Mapping[str, Any], ctx: Context) -> None:
        """The console summary of one run (after W&B has finished, so the sync command is known); optional."""
        return None

    def print_sweep(self, summary: Mapping[str, Any], ctx: Context) -> None:
        """The console summary of a sweep; optional."""
        return None


def count_option(cfg: DictConfig, key: str, default: int | None, minimum: int, allow_none: bool = False) -> int | None:
    """An integer option >= minimum (or null where allowed), else a message naming the option."""
    value = cfg.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = " or null" if allow_none else ""
        raise ValueError(f"{key}={value!r}: use an integer >= {minimum}{allowed}")
    return value
