"""The W&B conventions of every facebias stage, and ``wandb_session``: the only place that starts and finishes a run.

Project ``facebias``; group = the experiment, or the sweep for multirun jobs (evaluations, dissections
and the other analyses join their training run's group); ``job_type`` = the stage (train, eval, dissect,
...). Offline unless the user has set W&B up. Hydra's basic launcher runs sweep jobs one after another in
one process, so a run is always finished on the way out (docs/design.md §11), whatever happened inside.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def wandb_mode(requested: str | None = None) -> str:
    """'online' only when asked for or when credentials exist (WANDB_API_KEY or a netrc entry), else offline."""
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return "offline"
    return "online" if any("wandb" in host for host in hosts) else "offline"


def run_identity(cfg: DictConfig) -> dict[str, str]:
    """Group and name of a training run: the sweep (multirun) or the experiment; the name lists the overrides."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith(("hydra.", "logger", "paths."))]
    name = " ".join(overrides) or cfg.get("exp_name") or cfg.task_name
    family = cfg.get("family") or cfg.get("exp_name") or cfg.task_name
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # computed from the sweep dir, so every job of one sweep shares it (${now:} may differ between jobs)
        group = f"{family}-sweep-{Path(hydra_cfg.sweep.dir).name}"
    else:
        group = cfg.get("exp_name") or cfg.task_name
    return {"group": str(group), "name": str(name)}


def plain_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as plain containers (W&B and checkpoints refuse DictConfig). Hydra's own node,
    present when a config is composed outside a Hydra job, is left out; a key whose interpolation cannot
    resolve there (`${hydra:...}` outside a job) is kept unresolved rather than lost. A sub-node (e.g.
    ``cfg.trainer``) resolves against its root, so ``${paths.output_dir}`` becomes the path."""
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    return {key: _plain_value(cfg, key) for key in cfg.keys()
            if not (key == "hydra" and cfg._get_parent() is None)}


def _plain_value(container: DictConfig | ListConfig, key: Any) -> Any:
    """One value resolved in its root's context; a leaf that cannot resolve stays as written."""
    from omegaconf.errors import OmegaConfBaseException

    node = container._get_node(key)
    if isinstance(node, DictConfig):
        return None if node._is_none() else {k: _plain_value(node, k) for k in node.keys()}
    if isinstance(node, ListConfig):
        return None if node._is_none() else [_plain_value(node, i) for i in range(len(node))]
    try:
        value = container[key]
    except (OmegaConfBaseException, ValueError):
        return node._value()
    if isinstance(value, DictConfig | ListConfig):  # an interpolation that resolved to a node
        return OmegaConf.to_container(value, resolve=True)
    return value


def wandb_enabled(cfg: DictConfig) -> bool:
    return "wandb" in (cfg.get("logger") or {})


@dataclass
class WandbSession:
    """The active run (None when the `logger` group has no wandb entry) and, after the session, how to upload it."""

    run: Any = None
    sync_command: str | None = None

    def log(self, tables: Mapping[str, list[Mapping[str, Any]]] | None = None,
            images: Mapping[str, Path] | None = None, summary: Mapping[str, Any] | None = None,
            html: Mapping[str, Path] | None = None) -> None:
        """Tables, PNGs and HTML pages in one history step, headline numbers in the run summary."""
        if self.run is None:
            return
        import wandb

        payload: dict[str, Any] = {key: table(rows) for key, rows in (tables or {}).items() if rows}
        payload.update({key: wandb.Image(str(path)) for key, path in (images or {}).items()})
        payload.update({key: wandb.Html(Path(path).read_text()) for key, path in (html or {}).items()
                        if Path(path).is_file()})
        if payload:
            self.run.log(payload)
        if summary:
            self.run.summary.update({k: _plain(v) for k, v in summary.items()})


@contextmanager
def wandb_session(cfg: DictConfig, output_dir: Path, identity: Mapping[str, str], job_type: str | None,
                  config: Mapping[str, Any] | None = None) -> Iterator[WandbSession]:
    """Start a W&B run for one stage (when the `logger` group has wandb), yield it, and always finish it.

    A Lightning ``WandbLogger`` built inside the session is handed ``session.run`` as its experiment, so
    training logs into this run rather than starting another. ``job_type=None``: a stage that logs nothing
    (e.g. listing layers).
    """
    session = WandbSession()
    if job_type is not None and wandb_enabled(cfg):
        import wandb

        w = cfg.logger.wandb
        mode = wandb_mode(w.get("mode"))
        if mode != "disabled":
            (Path(output_dir) / "wandb").mkdir(parents=True, exist_ok=True)
        session.run = wandb.init(project=w.project, entity=w.get("entity"), group=identity["group"],
                                 name=identity["name"], job_type=job_type, dir=str(output_dir), mode=mode,
                                 tags=list(w.get("tags") or []), config=dict(config or {}), reinit="finish_previous")
    try:
        yield session
    finally:
        session.sync_command = _finish(session.run)


def _finish(run) -> str | None:
    """Finish ``run`` (if any); the `wandb sync` command when it ran offline."""
    if run is None:
        return None
    import wandb

    offline = run.settings.mode == "offline" or getattr(run, "offline", False)
    run_dir = Path(run.dir).parent if offline else None
    wandb.finish()
    return f"wandb sync {run_dir}" if offline else None


def table(rows: list[Mapping[str, Any]]):
    import wandb

    columns = list(rows[0].keys()) if rows else []
    return wandb.Table(columns=columns, data=[[_plain(r.get(c)) for c in columns] for r in rows])


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (W&B tables and summaries want JSON types)."""
    if hasattr(value, "item"):
        return value.item()
    return value
