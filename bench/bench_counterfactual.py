"""Benchmark: counterfactual search, candidate evaluations per second against render + forward alone.

    .venv/bin/python bench/bench_counterfactual.py                          # small: 8 starts x 8 candidates x 4 steps
    .venv/bin/python bench/bench_counterfactual.py --starts 64 --k 16 --steps 20 --size 64 --backbone resnet18

The search (facebias.counterfactual.search, random search unless --optimizer) scores every start's k candidates
of a step in one call of the objective: one batched SynthFaces render and one forward pass of batch starts x k.
The baseline is that work alone, written out here (generator.render + the classifier's preprocess and forward on
random latents, the same batch size, the same number of batches), so the ratio search / baseline is what the
search's own bookkeeping costs (target >= 0.8). The classifier has random weights (no download, no run needed).
Timings move with the machine's load (printed); the baseline is timed before and after the search and averaged.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from facebias.counterfactual.search import Objective, SearchOptions, search
from facebias.generators import SynthFacesGenerator
from facebias.models.classifier import AttributeClassifier


def render_and_forward(generator, model, batches: list[np.ndarray], device: str) -> tuple[float, float]:
    """(wall, CPU) seconds of render + preprocess + forward of every batch: the work alone."""
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for z in batches:
            faces = generator.render(z, batch_size=len(z))
            x = model.preprocess({"image": torch.from_numpy(faces).to(device)})["image"]
            model(x).float().cpu()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=32, help="face and model input size (px)")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--optimizer", default="random", choices=["random", "oneplusone", "cma"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    generator = SynthFacesGenerator(image_size=args.size)
    model = AttributeClassifier(targets=["Male"], backbone=args.backbone).eval().to(args.device)
    objective = Objective(generator, model, 0, "Male", input_size=args.size, device=args.device)
    batch = args.starts * args.k
    z0 = generator.sample(args.starts, seed=0)
    batches = [generator.sample(batch, seed=1 + i) for i in range(args.steps)]
    render_and_forward(generator, model, batches[:1], args.device)  # warm-up (allocations, kernels)

    before = render_and_forward(generator, model, batches, args.device)
    cpu = time.process_time()
    walks = search(objective, z0, SearchOptions(k=args.k, sigma=0.2, steps=args.steps, budget=None,
                                                optimizer=args.optimizer), progress_every=0)
    search_cpu = time.process_time() - cpu
    after = render_and_forward(generator, model, batches, args.device)

    base_n = batch * args.steps
    base_wall = (before[0] + after[0]) / 2
    base_cpu = (before[1] + after[1]) / 2
    rates = {
        "search_per_s": walks.evaluations / walks.seconds,
        "baseline_per_s": base_n / base_wall,
        "search_per_cpu_s": walks.evaluations / search_cpu,
        "baseline_per_cpu_s": base_n / base_cpu,
    }
    ratio = rates["search_per_s"] / rates["baseline_per_s"]
    cpu_ratio = rates["search_per_cpu_s"] / rates["baseline_per_cpu_s"]
    print(f"counterfactual search ({args.optimizer}): {args.starts} starts x k={args.k} x {args.steps} steps, "
          f"{args.size} px, {args.backbone}, {args.device}; load average {os.getloadavg()[0]:.1f}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"  search:             {walks.evaluations} candidates in {walks.seconds:.2f} s = {rates['search_per_s']:.1f}/s "
          f"(objective {walks.objective_seconds / walks.seconds:.0%} of it)")
    print(f"  render + forward:   {base_n} faces in {base_wall:.2f} s = {rates['baseline_per_s']:.1f}/s "
          f"(batches of {batch}; before {before[0]:.2f} s, after {after[0]:.2f} s)")
    print(f"  ratio search / render+forward: {ratio:.2f} wall, {cpu_ratio:.2f} CPU time (target >= 0.8)")
    print(json.dumps({"bench": "counterfactual", **vars(args), **{k: round(v, 2) for k, v in rates.items()},
                      "ratio": round(ratio, 3), "cpu_ratio": round(cpu_ratio, 3)}))


if __name__ == "__main__":
    main()
