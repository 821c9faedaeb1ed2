"""GAN training throughput (images/s through both networks) of the real pipeline vs the same G and D steps on
random tensors already in memory, measured in the same run (issue 11; target: pipeline/ceiling >= 0.9).

- ceiling: ``FaceGAN.adversarial_step`` (one D step on real + G(z), one G step through D, the EMA update) in a
  bare loop on a random batch already on the device, plain optimizers, no Lightning, no data;
- pipeline: Lightning's fit of ``FaceGAN`` over ``FaceDataModule`` (memmapped uint8 cache -> one slice per
  batch -> [-1, 1] on the device, flips), timed after a warm-up, validation off.

An image counts once per step: it passes through D (real half), and its G(z) through G and D twice.
Also printed: the CPU seconds per image (process time, all threads) and the wall time an epoch of
``--epoch-faces`` faces would take at the pipeline's rate; on a shared machine the process-time figure
divided by the cores is the better estimate of an idle machine's wall time.

Usage: python bench/bench_gan.py [--size 64] [--g-width 48] [--d-width 48] [--steps 20] [--batch-size 64]
       python bench/bench_gan.py --size 16 --steps 5 --faces 600   (tiny)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import StepTimer, _sync, default_device, describe_environment, environment  # noqa: E402


def gan_datamodule(data_dir: Path, n_faces: int, size: int, batch_size: int):
    """SynthFaces as the gan experiment trains on it: every training face, no planted concept."""
    from facebias.data.datamodule import FaceDataModule

    dm = FaceDataModule(source="synthfaces", data_dir=str(data_dir), synth={"n_faces": n_faces, "workers": 2},
                        concept=None, image_size=size, batch_size=batch_size, progress=False)
    dm.setup()
    return dm


def build(args, channels_last: bool):
    from facebias.models.gan import FaceGAN

    model = FaceGAN(image_size=args.size, latent_dim=args.latent_dim, g_width=args.g_width, d_width=args.d_width,
                    loss=args.loss, quality=None, channels_last=channels_last)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def ceiling(args, device: str, bf16: bool, channels_last: bool) -> tuple[float, float]:
    """(images/s, CPU seconds per image) of adversarial_step on an in-memory random batch."""
    model = build(args, channels_last).to(device).train()
    opt_g, opt_d = model.configure_optimizers()
    real = torch.rand(args.batch_size, 3, args.size, args.size, device=device) * 2 - 1
    if channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(args.steps + args.warmup):
        if i == args.warmup:
            _sync(device)
            start, cpu = time.perf_counter(), time.process_time()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            model.adversarial_step(real, opt_g, opt_d, True)
    _sync(device)
    images = args.steps * args.batch_size
    return images / (time.perf_counter() - start), (time.process_time() - cpu) / images


def pipeline(args, dm, device: str, bf16: bool, channels_last: bool) -> tuple[float, float]:
    """(images/s, CPU seconds per image) of Lightning's fit of FaceGAN over the data module."""
    import pytorch_lightning as pl

    model = build(args, channels_last)
    timer = StepTimer(warmup=args.warmup)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=args.steps + args.warmup, limit_val_batches=0,
                         accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         precision="bf16-mixed" if bf16 else "32-true", callbacks=[timer])
    cpu = time.process_time()
    trainer.fit(model, datamodule=dm)
    cpu = time.process_time() - cpu  # includes the warm-up batches: scaled below
    per_image = cpu / ((args.steps + args.warmup) * args.batch_size)
    return timer.images / timer.seconds, per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--g-width", type=int, default=48)
    parser.add_argument("--d-width", type=int, default=48)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--loss", default="hinge")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--faces", type=int, default=3000, help="SynthFaces generated for the pipeline")
    parser.add_argument("--epoch-faces", type=int, default=24000, help="faces per epoch for the time estimate")
    parser.add_argument("--bf16", action="store_true", help="autocast bf16 (Lightning's bf16-mixed) in both")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats, best kept (shared machines)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--data-dir", default=None, help="where SynthFaces and the cache live (default: temp)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device()
    channels_last = device == "cuda"
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory()
        args.data_dir = tmp.name
    needed = (args.steps + args.warmup) * args.batch_size
    dm = gan_datamodule(Path(args.data_dir), args.faces, args.size, args.batch_size)
    if len(dm.dataset("train")) < needed:
        raise SystemExit(f"{len(dm.dataset('train'))} training faces < {needed} needed by (steps + warmup) x batch; "
                         "raise --faces or lower --steps")
    best_c, best_p = (0.0, float("inf")), (0.0, float("inf"))
    for _ in range(args.repeats):
        c = ceiling(args, device, args.bf16, channels_last)
        p = pipeline(args, dm, device, args.bf16, channels_last)
        best_c = (max(best_c[0], c[0]), min(best_c[1], c[1]))
        best_p = (max(best_p[0], p[0]), min(best_p[1], p[1]))
    print(describe_environment(environment()))
    print(f"FaceGAN size={args.size} g_width={args.g_width} d_width={args.d_width} latent={args.latent_dim} "
          f"loss={args.loss} batch={args.batch_size} steps={args.steps} bf16={args.bf16} "
          f"channels_last={channels_last} best of {args.repeats}")
    print(f"{'':24s} {'images/s':>10s} {'CPU s/image':>12s}")
    print(f"{'in-memory (ceiling)':24s} {best_c[0]:10.1f} {best_c[1]:12.4f}")
    print(f"{'pipeline (Lightning fit)':24s} {best_p[0]:10.1f} {best_p[1]:12.4f}")
    print(f"pipeline/ceiling: {best_p[0] / best_c[0]:.3f}  (target >= 0.9)")
    cores = torch.get_num_threads()
    print(f"an epoch of {args.epoch_faces} faces: {args.epoch_faces / best_p[0] / 60:.1f} min at the measured "
          f"rate; {args.epoch_faces * best_p[1] / cores / 60:.1f} min from CPU time over {cores} threads "
          "(the estimate for an idle machine when others share this one)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
