"""Training throughput (images/s) of the real pipeline vs the same model fed tensors already in memory.

The ceiling is a bare loop of forward/backward/step on random tensors of the batch's shape; ours is
Lightning's fit over the FaceDataModule (memmapped cache -> slicing -> device-side transforms). Target:
ratio >= 0.9. Usage: python bench/bench_train_throughput.py [--steps 30] [--backbone resnet18] [--size 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def ceiling(model, batch_size: int, size: int, steps: int, device: str) -> float:
    """Images/s of forward+backward+step on in-memory random tensors."""
    x = torch.randn(batch_size, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch_size, 1), device=device).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for i in range(steps + 3):
        if i == 3:  # warm-up done
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


class StepTimer:
    """A Lightning callback timing train batches after a warm-up."""

    def __new__(cls, warmup: int):
        import pytorch_lightning as pl

        class _Timer(pl.Callback):
            def __init__(self):
                self.images, self.start = 0, None

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if batch_idx == warmup:
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if batch_idx >= warmup:
                    self.images += len(batch["target"])

            def on_train_epoch_end(self, trainer, module):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.seconds = time.perf_counter() - self.start

        return _Timer()


def pipeline(args, device: str) -> float:
    import pytorch_lightning as pl

    from facebias.data.datamodule import FaceDataModule
    from facebias.models.classifier import AttributeClassifier

    dm = FaceDataModule(source="synthfaces", data_dir=args.data_dir, synth={"n_faces": args.faces},
                        concept="Eyeglasses", p=80, image_size=args.size, batch_size=args.batch_size,
                        progress=False)
    dm.setup()
    model = AttributeClassifier(targets=["Male"], backbone=args.backbone, channels_last=device == "cuda")
    timer = StepTimer(warmup=3)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=args.steps + 3, limit_val_batches=0,
                         accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         precision="bf16-mixed" if device == "cuda" else "32-true", callbacks=[timer])
    trainer.fit(model, datamodule=dm)
    return timer.images / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--faces", type=int, default=6000)
    parser.add_argument("--data-dir", default=None, help="where SynthFaces and the cache live (default: temp)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory()
        args.data_dir = tmp.name
    args.data_dir = Path(args.data_dir)

    from facebias.models.backbones import build_backbone

    ours = pipeline(args, device)
    net = build_backbone(args.backbone, 1).to(device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        best = ceiling(net, args.batch_size, args.size, args.steps, device)
    print(f"device={device} threads={torch.get_num_threads()} backbone={args.backbone} size={args.size} "
          f"batch={args.batch_size}")
    print(f"in-memory random tensors (ceiling): {best:8.1f} images/s")
    print(f"facebias pipeline (Lightning fit):   {ours:8.1f} images/s")
    print(f"ratio: {ours / best:.3f}  (target >= 0.9)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
