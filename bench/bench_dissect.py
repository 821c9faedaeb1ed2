"""Benchmark: network dissection of a resnet18 against the forward pass alone on the same faces.

    .venv/bin/python bench/bench_dissect.py --n 5000 --layers layer4
    .venv/bin/python bench/bench_dissect.py --n 5000 --layers layer4 layer3 --source synthfaces
    .venv/bin/python bench/bench_dissect.py --n 2000 --source synthfaces   # also: the 68-point dictionary of 2,000 faces

Faces: SynthFaces renders when the package is there (``--source auto``, the default; the render
time is reported apart), or random images with Face Dictionary masks from random plausible
landmarks (``--source random``).
The model is torchvision's resnet18 with random weights (no download). Dictionary masks are drawn
before timing; both timed runs see the same pre-built batches. Target: dissect <= 2x forward.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from facebias.dissect.units import dissect
from facebias.faces.concepts import ATTRIBUTE_OF_CONCEPT
from facebias.faces.dictionary import face_dictionary, random_landmarks
from facebias.faces.geometry import CROP_BOTTOM, CROP_LEFT, CROP_RIGHT, CROP_TOP


def random_faces(n: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    attrs = {attribute: rng.integers(0, 2, n) for attribute, _ in ATTRIBUTE_OF_CONCEPT.values()}
    attrs.update({name: rng.integers(0, 2, n) for name in ("Male", "Young")})
    images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return images, random_landmarks(n, seed=seed), attrs


def synthfaces_faces(n: int, size: int, seed: int, points: int = 68) -> tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray]]:
    from facebias.data import synthfaces
    from facebias.data.synthfaces.render import build_model, face_parameters, landmarks68_from_parameters

    start = time.perf_counter()
    z = synthfaces.sample_latents(n, seed=seed)
    faces = synthfaces.render(z, with_masks=False)
    # the exact 68 points, as dissect.py reads them for SynthFaces (load_landmarks68)
    landmarks = landmarks68_from_parameters(face_parameters(z, build_model())) if points == 68 else faces.landmarks
    print(f"rendered {n} SynthFaces in {time.perf_counter() - start:.1f} s (not part of any timing below)")
    crop = faces.images[:, CROP_TOP:CROP_BOTTOM, CROP_LEFT:CROP_RIGHT].permute(0, 3, 1, 2).float() / 255
    images = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    attrs = {name: faces.attrs[:, i].numpy() for i, name in enumerate(synthfaces.ATTRIBUTE_NAMES)}
    return (images - 0.5) / 0.25, landmarks.numpy(), attrs


def _timed(work, device: str, keep: bool = False):
    """(wall seconds, process CPU seconds) of work(), and its result when keep."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times = (time.perf_counter() - wall, time.process_time() - cpu)
    return (times, result) if keep else times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5000, help="faces")
    parser.add_argument("--size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--mask-size", type=int, default=56)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layers", nargs="+", default=["layer4"])
    parser.add_argument(
        "--source",
        choices=["auto", "random", "synthfaces"],
        default="auto",
        help="auto: SynthFaces when facebias.data.synthfaces imports, else random images",
    )
    parser.add_argument("--landmarks", type=int, choices=[5, 68], default=68,
                        help="SynthFaces source: the Face Dictionary from its exact 68 points (dissect.py's default) or 5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-cache", action="store_true", help="force the second pass to re-run the model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="alternate forward/dissect runs, keep the best")
    args = parser.parse_args()

    if args.source == "auto":
        args.source = "synthfaces" if importlib.util.find_spec("facebias.data.synthfaces") else "random"
    if args.source == "synthfaces":
        images, landmarks, attrs = synthfaces_faces(args.n, args.size, args.seed, args.landmarks)
    else:
        images, landmarks, attrs = random_faces(args.n, args.size, args.seed)
    start = time.perf_counter()
    dictionary = face_dictionary(landmarks, attrs, mask_size=args.mask_size)
    masks = dictionary.masks
    groups = dictionary.group_matrix()
    dictionary_s = time.perf_counter() - start
    batches = [
        (images[i : i + args.batch], masks[i : i + args.batch], groups[i : i + args.batch])
        for i in range(0, args.n, args.batch)
    ]

    torch.manual_seed(args.seed)
    model = torchvision.models.resnet18(weights=None, num_classes=1).to(args.device).eval()
    with torch.no_grad():  # warm-up: first-call allocations and kernel selection
        model(batches[0][0].to(args.device))

    def run_forward() -> None:
        with torch.no_grad():
            for batch in batches:
                model(batch[0].to(args.device))

    def run_dissect():
        return dissect(
            model,
            args.layers,
            batches,
            concepts=dictionary.concepts,
            group_names=tuple(dictionary.groups),
            device=args.device,
            cache_bytes=0 if args.no_cache else 1 << 30,
        )

    # alternate the two so that load from other processes hits both alike; keep the best of each.
    # CPU time (all threads of this process) is reported beside wall time: it barely moves when
    # other processes share the cores, wall time does.
    forward_s = forward_cpu = dissect_s = dissect_cpu = math.inf
    for _ in range(args.repeat):
        wall, cpu = _timed(run_forward, args.device)
        forward_s, forward_cpu = min(forward_s, wall), min(forward_cpu, cpu)
        (wall, cpu), result = _timed(run_dissect, args.device, keep=True)
        dissect_s, dissect_cpu = min(dissect_s, wall), min(dissect_cpu, cpu)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"device {args.device}, torch threads {torch.get_num_threads()}, source {args.source}, load avg {load}"
    )
    print(
        f"faces {args.n} at {args.size}x{args.size}, masks {args.mask_size}x{args.mask_size}, batch {args.batch}"
    )
    print(f"face dictionary ({len(dictionary.concepts)} concepts, {landmarks.shape[1]} points, {args.n} faces): "
          f"{dictionary_s:.2f} s ({args.n / dictionary_s:.0f} faces/s)")
    print(
        f"forward pass alone:      wall {forward_s:.2f} s ({args.n / forward_s:.0f} img/s), cpu {forward_cpu:.2f} s"
    )
    print(
        f"dissect {' + '.join(args.layers)}: wall {dissect_s:.2f} s ({args.n / dissect_s:.0f} img/s), cpu {dissect_cpu:.2f} s"
    )
    print(
        f"ratio dissect / forward: wall {dissect_s / forward_s:.2f}x, cpu {dissect_cpu / forward_cpu:.2f}x "
        f"(target <= 2x; best of {args.repeat})"
    )
    for name, layer in result.layers.items():
        print(
            f"  {name}: {layer.units} units at {layer.map_size}, detectors {int(layer.detector.sum())}, "
            f"max IoU {float(layer.best_iou.max()):.4f}"
        )
    biased = {(r["layer"], r["group"]): r["biased"] for r in result.biased_unit_counts()}
    print(f"  units with |Cohen's d| > 0.8: {biased}")


if __name__ == "__main__":
    main()
