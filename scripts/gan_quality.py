"""The quality figures of a finished GAN run's checkpoint, recomputed with today's code (GanQuality, final size):
`python scripts/gan_quality.py outputs/train/gan_gray_p80 --checkpoint last [--n 5000] [--out docs/x.json]`.

Why: a run's metrics.json holds the figures of the code that trained it; this re-reads its EMA generator (as the
de-biasing stage does) and scores it again, e.g. the grayscale rate under the calibrated pixel rule.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import torch

from facebias.debias.hyperplanes import fit_hyperplane
from facebias.generators.gan import GanRunGenerator
from facebias.generators.quality import GanQuality
from facebias.runs import build_datamodule, locate_run


class RunAsGan:
    """A GanRunGenerator behind the two methods GanQuality asks of a FaceGAN."""

    def __init__(self, generator: GanRunGenerator):
        self.generator = generator

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(int(n), self.generator.latent_dim, generator=torch.Generator().manual_seed(int(seed)))

    def generate(self, z, batch_size: int = 256):
        return self.generator.render(z.numpy(), batch_size=batch_size)


def score_shares(quality: GanQuality, gan: RunAsGan, datamodule, n: int, bins: int) -> dict:
    """Per head: the share of the (same) generated and training faces evaluate() scored, in equal score bins."""
    import numpy as np

    train_scores = quality.reference(datamodule, n)["scores"]  # cached by evaluate(): the same training faces
    _, scores = quality.classifier(gan.generate(gan.sample_latents(n, quality.seed)), quality.batch_size)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return {head: {"edges": edges.round(6).tolist(),
                   "generated": (np.histogram(scores[:, i], edges)[0] / len(scores)).round(4).tolist(),
                   "train": (np.histogram(train_scores[:, i], edges)[0] / len(train_scores)).round(4).tolist()}
            for i, head in enumerate(quality.classifier.heads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--classifier-run", default=None, help="default: the run's own model.quality.classifier_run")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--data-dir", default=None, help="where the run's data lives here (default: as recorded)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--bins", type=int, default=0,
                        help="also the share of generated and training faces in each of this many equal bins of every "
                             "head's score (where a rate gap comes from: e.g. too few *clearly* male faces)")
    args = parser.parse_args()
    run = locate_run(run=args.run)
    classifier = args.classifier_run or run.config["model"]["quality"].get("classifier_run")
    datamodule = build_datamodule(run, {"progress": False, "data_dir": args.data_dir})
    quality = GanQuality(classifier_run=classifier, n_samples=args.n, n_final=args.n, true_fid=False,
                         separability=partial(fit_hyperplane, C=1.0))
    gan = RunAsGan(GanRunGenerator(run=args.run, checkpoint=args.checkpoint))
    figures = quality.evaluate(gan, datamodule, final=True)
    figures["settings"].update(run=str(args.run), checkpoint=args.checkpoint)
    if args.bins:
        figures["score_shares"] = score_shares(quality, gan, datamodule, args.n, args.bins)
    text = json.dumps(figures, indent=1, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
