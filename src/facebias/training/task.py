"""`train(cfg)`: one training run, from a composed Hydra config to a finished run directory.

The run dir holds `run.json` (the manifest every analysis reads: kind train, config, checkpoints, data,
W&B identity), `config.yaml`, `checkpoints/{best,last}.ckpt` and `metrics.json` (per-cell test accuracy at
the 0.5 threshold and the stereotypical vs counter-stereotypical gap); W&B gets the same through the
stage's `wandb_session`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bf16 natively: x86 AVX512-BF16 or AMX-BF16, or Arm's BF16 extension.

    Asks torch (its cpuinfo probe, any OS) and the kernel's flags (`avx512_bf16`, `amx_bf16`; `bf16` among an
    Arm CPU's `Features`); either saying yes is enough. `torch.backends.cpu.get_cpu_capability()` cannot tell:
    it says AVX512 with or without BF16. Without native bf16, CPU autocast emulates it and is slower than fp32.
    """
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private; absent from older torch
    try:
        if probe is not None and probe():
            return True
    except Exception:  # a failing probe means "unknown": fall back to the flags
        pass
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """Lightning's `precision` for `trainer.precision`; `auto` picks one for the hardware.

    auto: `bf16-mixed` on a GPU; on the CPU `bf16-mixed` when `trainer.cpu_bf16` is true (the default) and the
    CPU has native bf16 (`cpu_supports_bf16`), else `32-true`. bf16 is ~1.5x faster on this CPU and leaves the
    P-sweep's known answer unchanged (README, docs/bf16_vs_fp32_eyeglasses.csv); final scores are fp32 either way.
    Any other value (`32-true`, `bf16-mixed`, ...) is passed to Lightning as it is.
    """
    import torch

    precision = trainer_cfg.get("precision", "auto")
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and trainer_cfg.get("accelerator", "auto") != "cpu":
        return "bf16-mixed"
    return "bf16-mixed" if trainer_cfg.get("cpu_bf16", False) and cpu_supports_bf16() else "32-true"


def quiet_known_warnings() -> None:
    """Silence warnings that are expected by design (they would bury the summary)."""
    import warnings

    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def check_config(cfg: DictConfig) -> None:
    """Fail on a bad option before any data is generated, cached or trained on."""
    from facebias.data.bias import GRAYSCALE, validate_p

    data = cfg.data
    if cfg.get("debias"):  # its options too, before the classifiers it may train
        from facebias.debias.stage import check_debias_config

        check_debias_config(cfg)
    validate_p(data.p, "data.p")
    for q in data.get("sweep") or []:
        validate_p(q, "data.sweep entry")
    if not data.targets:
        raise ValueError("data.targets is empty: name at least one attribute to classify, e.g. data.targets=[Male]")
    if data.source == "synthfaces":
        from facebias.data.synthfaces import ATTRIBUTE_NAMES

        wanted = [*data.targets, *([data.concept] if data.concept not in (None, GRAYSCALE) else []),
                  *([data.protected] if data.protected not in (None, data.concept) else [])]
        for name in wanted:
            if name not in ATTRIBUTE_NAMES:
                raise KeyError(f"unknown attribute {name!r} for SynthFaces (in data.targets, data.concept or "
                               f"data.protected); available: {', '.join(ATTRIBUTE_NAMES)}")
        synth = data.get("synth") or {}
        fractions, n_faces = list(synth.get("split", [0.8, 0.1, 0.1])), synth.get("n_faces", 24000)
        if len(fractions) == 3:  # (the generator checks the option's form with its own message)
            n_train, n_val = round(fractions[0] * n_faces), round(fractions[1] * n_faces)  # as it splits
            counts = {"train": n_train, "val": n_val, "test": n_faces - n_train - n_val}
            for name, count in counts.items():
                if count <= 0:
                    raise ValueError(f"data.synth.split={fractions} of data.synth.n_faces={n_faces} gives the "
                                     f"{name} split no image; every run needs train, val and test images")
    elif data.source in ("celeba", "folder"):
        import hydra

        # read the annotations (about a second for all of CelebA; no image is decoded): an empty split or an
        # unknown attribute fails here, naming the file, before the run directory or any stage exists
        datamodule = hydra.utils.instantiate(data, _convert_="all")
        if hasattr(datamodule, "preflight"):
            datamodule.preflight()


def train(cfg: DictConfig, out: Path | None = None, identity: dict[str, str] | None = None) -> dict[str, Any]:
    """Fit, test and record one configuration; returns the metrics written to metrics.json.

    ``out`` and ``identity`` (W&B group and name) default to the Hydra job's; a stage that trains a run of
    its own (the de-biasing stage's classifiers) passes both. With a ``debias`` node the latent de-biasing
    stage runs first and its generated images join the training split (``debias.arm``).

    Several processes (``trainer=ddp``, ``trainer=ddp_slurm``): ``ddp_spawn`` trains in child processes and
    returns here, where the final scores are computed in this one process (`final_metrics`). With plain
    ``ddp`` every process runs this function (the SLURM tasks of a job, or the copies Lightning starts);
    the others train beside rank 0 but write nothing and start no W&B run; rank 0 scores and writes, and
    every process returns its numbers. ``sync_batchnorm`` applies on GPUs only (off on the CPU).
    """
    import hydra
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.utilities import rank_zero_only

    from facebias.reporting.console import get_logger
    from facebias.reporting.files import write_json_atomic
    from facebias.reporting.wandb import plain_config, run_identity, wandb_session
    from facebias.runs import TRAIN, RunRecord, output_dir
    from facebias.training.callbacks import build_callbacks
    from facebias.training.loggers import build_loggers, wandb_logger
    from facebias.training.report import log_bias_grid, log_test_table, print_summary

    check_config(cfg)
    quiet_known_warnings()
    started = time.time()
    lead = rank_zero_only.rank == 0  # plain ddp: this process's rank (SLURM_PROCID, RANK, LOCAL_RANK); else 0
    out = Path(out) if out is not None else output_dir()
    out.mkdir(parents=True, exist_ok=True)
    identity = identity or run_identity(cfg)  # evaluate.py and the analyses log into the same group
    if cfg.get("debias") and cfg.debias.get("stage_only"):
        return stage_only(cfg, out, identity)
    record = RunRecord(kind=TRAIN, status="running", config=plain_config(cfg), wandb=identity,
                       checkpoints={"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"},
                       result="metrics.json")
    if lead:
        record.write(out)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.set_float32_matmul_precision("high")

    augmented = augment_stage(cfg, out, identity) if cfg.get("debias") else None
    with wandb_session(cfg, out, identity, "train" if lead else None, plain_config(cfg)) as session:
        datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
        datamodule.setup("fit")
        get_logger(__name__).info(datamodule.splits.summary())
        record.data = datamodule.describe()
        if augmented is not None:
            pairs = str(cfg.debias.get("pairs", "all"))
            record.data["augmented"] = attach_augmentation(datamodule, augmented, cfg.debias.arm, pairs)
        if lead:
            record.write(out)
        model = hydra.utils.instantiate(cfg.model, _convert_="all", targets=list(cfg.data.targets),
                                        channels_last=torch.cuda.is_available())
        if torch.cuda.is_available():
            model = model.to(memory_format=torch.channels_last)
        loggers = build_loggers(cfg, out, session)
        trainer_kwargs = {k: v for k, v in plain_config(cfg.trainer).items() if k not in ("_target_", "cpu_bf16")}
        trainer_kwargs["precision"] = resolve_precision(cfg.trainer)
        accelerator = str(cfg.trainer.get("accelerator", "auto"))
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        if trainer_kwargs.get("sync_batchnorm") and not on_gpu:  # SyncBatchNorm refuses CPU modules
            get_logger(__name__).info("trainer.sync_batchnorm applies on GPUs only: off on the CPU")
            trainer_kwargs["sync_batchnorm"] = False
        trainer = pl.Trainer(**trainer_kwargs, logger=loggers or False,
                             callbacks=build_callbacks(cfg.callbacks, out))
        wandb = wandb_logger(loggers)
        if wandb is not None and cfg.logger.wandb.log_images:
            log_bias_grid(wandb, datamodule)
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = final_metrics(cfg, trainer, model, datamodule, out) if lead else None
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # plain ddp, all processes
            metrics = trainer.strategy.broadcast(metrics, src=0)
        if not lead:
            return metrics
        metrics["seconds"] = round(time.time() - started, 1)
        metrics["wandb"] = identity
        if augmented is not None:
            metrics["augmented"] = record.data["augmented"]
        write_json_atomic(out / "metrics.json", metrics)
        if wandb is not None:
            log_test_table(wandb, metrics)
    record.status = "finished"
    record.write(out)
    print_summary(out, metrics, session.sync_command)
    return metrics


def stage_only(cfg: DictConfig, out: Path, identity: dict[str, str]) -> dict[str, Any]:
    """``debias.stage_only=true``: f_t, f_g and the augmented set, then stop (no training run is recorded): how a
    multi-process DDP job's stage is prepared in one process first (facebias.debias.stage.check_one_process)."""
    from facebias.reporting.console import get_logger

    augmented = augment_stage(cfg, out, identity)
    get_logger(__name__).info("debias.stage_only: the augmented set is ready at %s (%s); no model trained",
                              augmented.path, out / "augment")
    return {"augmented": {"path": str(augmented.path), "key": augmented.meta.get("key")}}


def augment_stage(cfg: DictConfig, out: Path, identity: dict[str, str]):
    """The latent de-biasing stage (facebias.debias.stage), logged as its own W&B run (job_type=augment)."""
    from facebias.debias.report import log_augmentation
    from facebias.debias.stage import prepare_augmentation
    from facebias.reporting.wandb import plain_config, wandb_session

    augmented = prepare_augmentation(cfg, identity, train=train)
    stage_identity = {"group": identity["group"], "name": f"augment {identity['name']}"}
    with wandb_session(cfg, out, stage_identity, "augment", plain_config(cfg.debias)) as session:
        log_augmentation(augmented, out / "augment", session)
    return augmented


def attach_augmentation(datamodule, augmented, arm: str, pairs: str = "all") -> dict[str, Any]:
    """Join the arm's parts of the augmented set (all pairs, or the agreed ones) to the training split; what the
    run trained on."""
    from facebias.data.augmented import AugmentedBatches
    from facebias.debias.stage import ARMS

    generated = AugmentedBatches(augmented.path, ARMS[arm], pairs)
    datamodule.attach_augmentation(generated)
    return {"path": str(augmented.path), "arm": arm, "parts": list(ARMS[arm]), "pairs": pairs,
            "n_generated": len(generated),
            "n_real": len(datamodule.dataset("train")), "key": augmented.meta.get("key")}


def final_metrics(cfg, trainer, model, datamodule, out: Path) -> dict[str, Any]:
    """Score the best checkpoint on val and the balanced test split; per-cell accuracy and the gap.

    One process, one device, the whole split, in fp32 whatever precision trained the model (bf16-mixed on a
    GPU or a bf16 CPU), so `metrics.json` equals `evaluate.py`'s fp32 scoring of the same checkpoint: a plain
    loop in this process on the trainer's root device (after a multi-process fit a second `predict` would
    spawn again, or score each rank's share only), honouring `trainer.limit_predict_batches` as predict does.
    """
    import itertools

    import torch

    from facebias.metrics import cell_accuracy, stereotype_gap
    from facebias.metrics.summary import summarize_predictions
    from facebias.results import SCHEMA_VERSION
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        model = type(model).load_from_checkpoint(best, weights_only=True)
    description = datamodule.describe()
    metrics: dict[str, Any] = {"schema": SCHEMA_VERSION, "experiment": cfg.get("exp_name"), "family": cfg.get("family"),
                               "data": description, "best_checkpoint": best,
                               "last_checkpoint": str(out / "checkpoints" / "last.ckpt")}
    if hasattr(model, "run_metrics"):  # a model that is not a classifier (the GAN) reports its own figures
        return {**metrics, **model.to(trainer.strategy.root_device).run_metrics(datamodule, out)}
    metrics["threshold"] = 0.5
    metrics["precision"] = str(trainer.precision)

    def predict_here(loader) -> dict[str, Any]:
        device = trainer.strategy.root_device
        limit = trainer.limit_predict_batches
        n_batches = int(len(loader) * limit) if isinstance(limit, float) else min(len(loader), int(limit))
        scorer = model.to(device).eval()
        batches = []
        with torch.inference_mode():
            for i, batch in enumerate(itertools.islice(loader, n_batches)):
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                batches.append(scorer.predict_step(batch, i))
        return {k: torch.cat([b[k] for b in batches]).numpy() for k in batches[0]}

    splits = ("val", "test") if cfg.get("test", True) else ("val",)
    for split in splits:
        loader = getattr(datamodule, f"{split}_dataloader")()
        pred = predict_here(loader)
        metrics[split] = summarize_predictions(pred, list(cfg.data.targets), threshold=0.5,
                                               cell_column=datamodule.cell_column)
        if split == "test":
            scores = (pred["score"][:, 0] > 0.5).astype(int)
            cells = cell_accuracy(scores, pred["target"][:, 0].astype(int), pred[datamodule.cell_column].astype(int))
            metrics["cells_by"] = datamodule.cell_attribute
            metrics["test_cells"] = cells
            metrics["test_gap"] = stereotype_gap(cells)
    return metrics
