"""Benchmark: the de-biasing stage's pair generation against render + forward alone on the same latents.

    .venv/bin/python bench/bench_augment.py --n 2048 --image-size 64

The stage (``facebias.debias.stage.render_pairs``) renders G(z) and G(z') of every latent into the
memory-mapped augmented set, labels both with f_t and f_g and records its progress after every chunk.
The baseline does only the unavoidable work on the same latents and batches: render G(z) and G(z')
(the SynthFaces renderer as the generator) and one forward pass of each classifier over both. Both
classifiers are resnet18s with random weights (no download); their speed, not their answers, matters
here. Target: stage latents/s >= 0.8 x the baseline's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facebias.debias import stage
from facebias.generators import SynthFacesGenerator
from facebias.models.classifier import AttributeClassifier
from facebias.models.scoring import score_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="latents (each gives G(z) and G(z'))")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best of each is kept")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = SynthFacesGenerator(image_size=args.image_size)
    models = {r: AttributeClassifier(targets=["Male", "Eyeglasses"], backbone="resnet18").eval() for r in "tg"}
    z = generator.sample(args.n, 0)
    zprime = z + np.float32(0.5) * np.random.default_rng(1).standard_normal(z.shape, dtype=np.float32)

    def label(images: np.ndarray) -> dict[str, np.ndarray]:
        scores = {r: score_images(models[r], images, args.batch_size)[:, i] for i, r in enumerate("tg")}
        return {**{f"score_{r}": s for r, s in scores.items()}, **{r: (s > 0.5).astype(np.uint8) for r, s in scores.items()}}

    def baseline() -> None:
        for start in range(0, args.n, stage.CHUNK):
            for latents in (z[start:start + stage.CHUNK], zprime[start:start + stage.CHUNK]):
                images = generator.render(latents, batch_size=args.batch_size)
                for model in models.values():
                    score_images(model, images, args.batch_size)

    label(generator.render(z[:8]))  # warm up both paths
    base, ours = [], []
    for _ in range(args.repeats):  # interleaved, best of each: other jobs on the machine hit both alike
        start = time.perf_counter()
        baseline()
        base.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            stage.render_pairs(Path(tmp), generator, z, zprime, label, args.batch_size)
            ours.append(time.perf_counter() - start)
    base_s, stage_s = min(base), min(ours)
    print(f"{args.n} latents at {args.image_size} px, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"render + forward alone (G(z), G(z'), f_t, f_g): {base_s:.1f} s = {args.n / base_s:.1f} latents/s")
    print(f"stage (same work + memmap writes, labels, progress): {stage_s:.1f} s = {args.n / stage_s:.1f} latents/s")
    print(f"ratio stage / baseline throughput: {base_s / stage_s:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
