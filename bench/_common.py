"""Shared by the training benchmarks (bench_train_throughput.py, gpu_check.py): one way to measure.

- ``ceiling``: images/s of a bare forward/backward/Adam-step loop on random tensors already on the device
  (the most the model itself allows; no data pipeline, no Lightning);
- ``pipeline``: images/s of Lightning's fit of ``AttributeClassifier`` over ``FaceDataModule`` (the project's
  cached uint8 input: memmapped cache -> one fancy-index slice per batch -> device-side uint8 -> float);
- ``synth_datamodule``: the SynthFaces p80 data module both scripts feed the pipeline with;
- ``environment``: device name, torch/CUDA versions, CPU and its bf16 support, for the printout.

Both measurements take the same ``bf16`` and ``channels_last`` switches, so a pair measured in one run differs
only in where the batches come from. bf16 means ``torch.autocast(device, dtype=torch.bfloat16)`` around the
loop (the ceiling) and Lightning's ``precision="bf16-mixed"`` (the pipeline), which is the same autocast.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def ceiling(model: torch.nn.Module, batch_size: int, size: int, steps: int, device: str, bf16: bool = False,
            channels_last: bool = False, warmup: int = 3) -> float:
    """Images/s of forward+backward+step on in-memory random tensors (``steps`` timed after ``warmup``)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    x = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 2, (batch_size, 1), device=device).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    start = time.perf_counter()
    for i in range(steps + warmup):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss_fn(logits.float(), y).backward()  # the loss in fp32, as AttributeClassifier.training_step does
        opt.step()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


class StepTimer:
    """A Lightning callback timing train batches after a warm-up (``images`` / ``seconds`` once fit ends)."""

    def __new__(cls, warmup: int):
        import pytorch_lightning as pl

        class _Timer(pl.Callback):
            def __init__(self):
                self.images, self.start, self.seconds = 0, None, float("nan")

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if batch_idx == warmup:
                    _sync(default_device())
                    self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if batch_idx >= warmup:
                    self.images += len(batch["target"])

            def on_train_epoch_end(self, trainer, module):
                _sync(default_device())
                if self.start is None:
                    raise RuntimeError(f"the epoch ended before warm-up batch {warmup}: fewer training batches "
                                       f"than warm-up + steps (use more faces or fewer steps)")
                self.seconds = time.perf_counter() - self.start

        return _Timer()


def synth_datamodule(data_dir: str | Path, n_faces: int, size: int, batch_size: int, workers: int = 2,
                     sweep: list[int] | None = None):
    """SynthFaces (generated into ``data_dir`` if absent) with the p80 eyeglasses bias, cache at ``size`` px.

    ``workers`` only changes how SynthFaces is generated (processes), not what: the set and its image cache
    are found again by ``train.py`` with the same ``data.synth.n_faces`` and ``paths.data_dir``.
    """
    from facebias.data.datamodule import FaceDataModule

    dm = FaceDataModule(source="synthfaces", data_dir=str(data_dir), synth={"n_faces": n_faces, "workers": workers},
                        concept="Eyeglasses", p=80, sweep=sweep, image_size=size, batch_size=batch_size,
                        progress=False)
    dm.setup()
    return dm


def pipeline(dm, backbone: str, steps: int, device: str, bf16: bool = False, channels_last: bool = False,
             warmup: int = 3, profiler=None) -> float:
    """Images/s of Lightning's fit over the data module (``steps`` train batches timed after ``warmup``);
    ``profiler``: a Lightning profiler for the fit (its figures are then slowed by it)."""
    import pytorch_lightning as pl

    from facebias.models.classifier import AttributeClassifier

    model = AttributeClassifier(targets=["Male"], backbone=backbone, channels_last=channels_last)
    if channels_last:  # as train.py does on a GPU: the weights too, not only the input
        model = model.to(memory_format=torch.channels_last)
    timer = StepTimer(warmup=warmup)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=steps + warmup, limit_val_batches=0,
                         accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         precision="bf16-mixed" if bf16 else "32-true", callbacks=[timer], profiler=profiler)
    trainer.fit(model, datamodule=dm)
    return timer.images / timer.seconds


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    from facebias.training.task import cpu_supports_bf16

    info: dict[str, Any] = {
        "device": default_device(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_name(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_supports_bf16(),
    }
    if torch.cuda.is_available():
        info["gpu_bf16"] = torch.cuda.is_bf16_supported()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def describe_environment(info: dict[str, Any]) -> str:
    gpu = (f"{info['device_name']} ({info['gpu_memory_gib']} GiB, bf16 {info['gpu_bf16']}), cuDNN {info['cudnn']}"
           if info["cuda_available"] else "no GPU")
    return (f"device: {info['device']} | {gpu} | torch {info['torch']} (CUDA build {info['cuda_build']}) | "
            f"CPU: {info['cpu']}, {info['cpu_count']} cores, {info['torch_threads']} torch threads, "
            f"capability {info['cpu_capability']}, native bf16 {info['cpu_bf16']}")
