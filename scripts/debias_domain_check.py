"""Do de-biased classifiers lose their shortcut on the generator's faces but not on real ones? (README "De-biasing
with this GAN"): `python scripts/debias_domain_check.py --gan outputs/train/gan_w64 --labeller
outputs/train/quality_clf --runs base=multirun/train/debias_base/0_p80 control=... debiased=... --out docs/x`.

Why: with a GAN as the generator, the de-biased arm's gap on real test faces barely moved, while with the renderer
(which draws exactly the real faces' distribution) it fell by a third. If the arms do shed the shortcut on fresh
GAN faces, the balanced pairs were learnt as a second domain that does not carry over to real faces.

Fresh faces (a seed the de-biasing stage never drew) are labelled Male and Eyeglasses by an independent
classifier run (its errors are shared by every arm, so the arms compare fairly), balanced over the four
(Male x Eyeglasses) cells like the real test split, and scored by each run at threshold 0.5; the real-face figures
are each run's own metrics.json (test split, threshold 0.5). Writes <out>.csv.

--augment LABEL=DIR (a de-biasing stage's data/debias/augment-<key>): how often the same labeller sees Male
change between G(z) and G(z') — the pairs are meant to differ in the protected attribute only — and how often
f_t's label (given to both faces of a pair) agrees with it. Writes <out>_pairs.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from facebias.generators.gan import GanRunGenerator
from facebias.generators.quality import ClassifierFeatures
from facebias.metrics.cells import cell_accuracy, stereotype_gap
from facebias.metrics.fairness import equal_opportunity_difference


def balanced_cells(male: np.ndarray, glasses: np.ndarray, per_cell: int, seed: int) -> np.ndarray:
    """Indices with ``per_cell`` faces from each (male, glasses) cell (fewer if a cell is smaller: all four then)."""
    rng = np.random.default_rng(seed)
    cells = [np.flatnonzero((male == m) & (glasses == g)) for m in (1, 0) for g in (1, 0)]
    take = min(per_cell, *(len(c) for c in cells))
    return np.sort(np.concatenate([rng.choice(c, size=take, replace=False) for c in cells]))


def shortcut_figures(scores: np.ndarray, male: np.ndarray, glasses: np.ndarray) -> dict[str, float]:
    """Stereotype gap and DEO (x100) of Male scores at 0.5, concept Eyeglasses (goes with men)."""
    predictions = (scores > 0.5).astype(np.uint8)
    cells = cell_accuracy(predictions, male, glasses)
    row = {f"acc_{key}": 100 * value["accuracy"] for key, value in cells.items()}
    row["gap"] = 100 * stereotype_gap(cells)["gap"]
    row["DEO"] = 100 * equal_opportunity_difference(predictions, male, glasses)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan", required=True, help="the GAN run whose faces the arms were augmented with")
    parser.add_argument("--labeller", required=True, help="an AttributeClassifier run with Male and Eyeglasses heads")
    parser.add_argument("--runs", nargs="+", required=True, help="LABEL=run dir of a classifier (Male head)")
    parser.add_argument("--n", type=int, default=12000, help="fresh GAN faces drawn before balancing")
    parser.add_argument("--per-cell", type=int, default=315, help="as the real test split (315 per cell)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--augment", nargs="*", default=[], help="LABEL=a de-biasing stage's augment dir")
    parser.add_argument("--out", required=True, help="path without suffix")
    args = parser.parse_args()
    runs = {}
    for spec in args.runs:
        label, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "metrics.json").is_file():
            parser.error(f"{spec!r}: write LABEL=<a train.py run dir with metrics.json>")
        runs[label] = Path(path)
    labeller = ClassifierFeatures.from_run(args.labeller)
    if not {"Male", "Eyeglasses"} <= set(labeller.heads):
        parser.error(f"--labeller {args.labeller} has heads {labeller.heads}; it needs Male and Eyeglasses")
    generator = GanRunGenerator(run=args.gan)
    faces = generator.render(generator.sample(args.n, seed=args.seed))
    _, labels = labeller(faces)
    male = (labels[:, labeller.heads.index("Male")] > 0.5).astype(np.uint8)
    glasses = (labels[:, labeller.heads.index("Eyeglasses")] > 0.5).astype(np.uint8)
    keep = balanced_cells(male, glasses, args.per_cell, args.seed)
    faces, male, glasses = faces[keep], male[keep], glasses[keep]
    print(f"{len(keep)} fresh GAN faces, {len(keep) // 4} per (Male x Eyeglasses) cell, labelled by {args.labeller}")
    rows = []
    for label, run_dir in runs.items():
        classifier = ClassifierFeatures.from_run(run_dir)
        _, scores = classifier(faces)
        gan = shortcut_figures(scores[:, classifier.heads.index("Male")], male, glasses)
        test = json.loads((run_dir / "metrics.json").read_text())["test"]
        real = {"gap": 100 * test["gap"], **{f"acc_{k}": 100 * test[f"acc_{k}"] for k in
                                             ("y1_c1", "y1_c0", "y0_c1", "y0_c0")}}
        rows.append({"run": label, "gap_real": round(real["gap"], 1), "gap_gan": round(gan["gap"], 1),
                     "DEO_gan": round(gan["DEO"], 1),
                     **{f"{k}_real": round(v, 1) for k, v in real.items() if k != "gap"},
                     **{f"{k}_gan": round(v, 1) for k, v in gan.items() if k not in ("gap", "DEO")},
                     "run_dir": str(run_dir)})
        print(f"{label:>10}: gap on real test faces {real['gap']:5.1f} | on fresh GAN faces {gan['gap']:5.1f} "
              f"(DEO {gan['DEO']:.1f})")
    out = Path(args.out).with_suffix(".csv")
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    if args.augment:
        pair_rows = [pair_figures(label, Path(path), labeller) for label, _, path in
                     (spec.partition("=") for spec in args.augment)]
        out = Path(str(Path(args.out)) + "_pairs.csv")
        with open(out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(pair_rows[0]))
            writer.writeheader()
            writer.writerows(pair_rows)
        print(f"wrote {out}")


def pair_figures(label: str, augment: Path, labeller: ClassifierFeatures) -> dict[str, object]:
    """Per augmented set: the labeller's Male and Eyeglasses change rates over the (G(z), G(z')) pairs, and its
    agreement with the f_t labels the stage gave them."""
    if not (augment / "images.npy").is_file() or not (augment / "labels.npz").is_file():
        raise SystemExit(f"--augment {label}={augment}: no images.npy and labels.npz (a data/debias/augment-<key> dir)")
    images, labels = np.load(augment / "images.npy"), np.load(augment / "labels.npz")
    first, second = np.flatnonzero(labels["part"] == 0), np.flatnonzero(labels["part"] == 1)
    if len(first) != len(second):
        raise SystemExit(f"{augment}: {len(first)} G(z) but {len(second)} G(z') faces: not an augmented set of pairs")
    _, scores = labeller(images)
    male = scores[:, labeller.heads.index("Male")] > 0.5
    glasses = scores[:, labeller.heads.index("Eyeglasses")] > 0.5
    row = {"set": label, "pairs": len(first), "male_changes": float(np.mean(male[first] != male[second])),
           "eyeglasses_changes": float(np.mean(glasses[first] != glasses[second])),
           "f_t_agrees_gz": float(np.mean(labels["target"][first] == male[first])),
           "f_t_agrees_gzprime": float(np.mean(labels["target"][second] == male[second])), "dir": str(augment)}
    print(f"{label:>10}: Male changes in {row['male_changes']:.3f} of pairs, Eyeglasses in "
          f"{row['eyeglasses_changes']:.3f}; f_t's label agrees with the labeller on G(z) {row['f_t_agrees_gz']:.3f}, "
          f"G(z') {row['f_t_agrees_gzprime']:.3f}")
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


if __name__ == "__main__":
    main()
