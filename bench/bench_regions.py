"""Benchmark: batched region-explanation maps against FaceX's one-image-per-call loop, same library (grad-cam),
same images, same layer, in one run.

    .venv/bin/python bench/bench_regions.py --n 256 --model resnet18 --layer layer4
    .venv/bin/python bench/bench_regions.py --n 128 --model small_cnn --layer 3 --threads 1

Three ways to get the same maps:

* ``loop``: FaceX's way, the library as it comes, one image per call (``library_loop_cams``);
* ``batched``: the library as it comes, ``--batch-size`` images per call;
* ``facebias``: ``compute_cams``, batched, with autograd restarted at the layer (nothing before it recorded, no
  weight gradients), which is what ``dissect.py analysis=regions`` runs.

Images are random tensors at the model's input size (the maps' cost does not depend on the pixels); the model has
random weights (no download). Wall and process-CPU seconds are both printed: on a shared machine the CPU time is
the steadier measure. The maps of the three are compared (max |difference|). Target: facebias >= 10x loop on CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision

from facebias.explain.cams import compute_cams, library_loop_cams, method_name
from facebias.models.backbones import small_cnn


def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=128, help="images")
    parser.add_argument("--size", type=int, default=64, help="input size in pixels")
    parser.add_argument("--model", choices=("resnet18", "small_cnn"), default="resnet18")
    parser.add_argument("--layer", default=None, help="module name (default: layer4 / 3)")
    parser.add_argument("--method", default="GradCAM")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "resnet18":
        net, layer = torchvision.models.resnet18(weights=None, num_classes=1), args.layer or "layer4"
    else:
        net, layer = small_cnn(1), args.layer or "3"
    net.eval()
    images = torch.randn(args.n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    method = method_name(args.method)
    common = {"head": 0, "target_class": 1, "method": method, "device": args.device}
    compute_cams(net, layer, images[:2], batch_size=2, **common)  # warm-up: imports, allocator, kernels
    library_loop_cams(net, layer, images[:2], **common)

    runs = {
        "loop": timed(lambda: library_loop_cams(net, layer, images, **common)),
        "batched": timed(lambda: compute_cams(net, layer, images, batch_size=args.batch_size, restart_graph=False,
                                              **common)),
        "facebias": timed(lambda: compute_cams(net, layer, images, batch_size=args.batch_size, **common)),
    }
    print(f"{method} maps of {args.n} images at {args.size} px, {args.model} layer {layer}, device {args.device}, "
          f"{torch.get_num_threads()} CPU threads, batch {args.batch_size}")
    print(f"{'':10} {'wall s':>8} {'img/s':>8} {'cpu s':>8}  max |map - loop map|")
    reference = runs["loop"][2]
    for name, (wall, cpu, maps) in runs.items():
        print(f"{name:10} {wall:8.2f} {args.n / wall:8.1f} {cpu:8.2f}  {np.abs(maps - reference).max():.2e}")
    loop_wall, loop_cpu = runs["loop"][:2]
    for name in ("batched", "facebias"):
        wall, cpu = runs[name][:2]
        print(f"speed-up of {name} over FaceX's loop: {loop_wall / wall:.1f}x wall, {loop_cpu / cpu:.1f}x CPU time")


if __name__ == "__main__":
    main()
