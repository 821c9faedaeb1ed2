"""Training throughput (images/s) of the real pipeline vs the same model fed tensors already in memory,
in fp32 and in bf16 (autocast), all four measured in the same run.

The ceiling is a bare loop of forward/backward/step on random tensors of the batch's shape; ours is
Lightning's fit over the FaceDataModule (memmapped cache -> slicing -> device-side transforms). Target:
pipeline/ceiling >= 0.9 in each precision. bf16 is `torch.autocast(device, dtype=torch.bfloat16)` (Lightning's
`bf16-mixed`); on a CPU without native bf16 (no avx512_bf16 / amx_bf16) it is emulated and slower.
channels_last is used on a GPU only, as train.py does.

Usage: python bench/bench_train_throughput.py [--steps 30] [--backbone resnet18] [--size 64] [--precision both]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ceiling, default_device, describe_environment, environment, pipeline, synth_datamodule  # noqa: E402

PRECISIONS = {"fp32": False, "bf16": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--faces", type=int, default=6000)
    parser.add_argument("--precision", choices=["both", *PRECISIONS], default="both")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure each figure this many times, interleaved, and keep the best (shared machines)")
    parser.add_argument("--data-dir", default=None, help="where SynthFaces and the cache live (default: temp)")
    args = parser.parse_args()
    device = default_device()
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory()
        args.data_dir = tmp.name

    from facebias.models.backbones import build_backbone

    channels_last = device == "cuda"
    names = list(PRECISIONS) if args.precision == "both" else [args.precision]
    dm = synth_datamodule(Path(args.data_dir), args.faces, args.size, args.batch_size)
    rows = {name: (0.0, 0.0) for name in names}
    for _ in range(args.repeats):  # interleaved, so load from other jobs spreads over every figure alike
        for name in names:
            bf16 = PRECISIONS[name]
            best = ceiling(build_backbone(args.backbone, 1), args.batch_size, args.size, args.steps, device,
                           bf16=bf16, channels_last=channels_last)
            ours = pipeline(dm, args.backbone, args.steps, device, bf16=bf16, channels_last=channels_last)
            rows[name] = (max(rows[name][0], best), max(rows[name][1], ours))

    print(describe_environment(environment()))
    print(f"backbone={args.backbone} size={args.size} batch={args.batch_size} steps={args.steps} "
          f"channels_last={channels_last} best of {args.repeats}")
    print(f"{'':16s} {'in-memory (ceiling)':>22s} {'pipeline (Lightning fit)':>26s} {'pipeline/ceiling':>18s}")
    for name, (best, ours) in rows.items():
        label = "bf16 (autocast)" if PRECISIONS[name] else "fp32"
        print(f"{label:16s} {best:15.1f} img/s {ours:19.1f} img/s {ours / best:18.3f}  (target >= 0.9)")
    if len(rows) == 2:
        (c32, p32), (c16, p16) = rows["fp32"], rows["bf16"]
        print(f"{'bf16/fp32':16s} {c16 / c32:21.2f}x {p16 / p32:25.2f}x")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
