"""Face Dictionary v2: mean IoU of every concept against SynthFaces' exact masks, five points vs 68 points.

    .venv/bin/python scripts/dictionary_iou.py                       # 2,000 faces -> docs/dictionary_iou.csv
    .venv/bin/python scripts/dictionary_iou.py --n 200 --out /tmp/iou.csv

The faces are rendered in memory from ``sample_latents(n, seed)`` with the default latent model (the faces
a SynthFaces set with n_faces=n and that seed holds; nothing is written to the data directory). For each
face the five-point dictionary is drawn from its five landmarks rounded to whole pixels, as
``list_landmarks_align_celeba.txt`` stores them, and the 68-point dictionary from its exact 68 points
(``render.landmarks68_from_parameters``, what ``dictionary.landmarks=68`` uses on SynthFaces). Both draw the
same concepts: every part and every concept conditioned on an attribute SynthFaces has. Each is scored with
``score_against_exact`` (mean over faces of the per-face IoU in the 128x128 crop at --mask-size; a face where
both masks are empty, an absent attribute, is skipped) against the exact masks: the renderer's own
(LOCAL_CONCEPTS) and the ones cut out of them by the face geometry (render.DERIVED_CONCEPTS: left/right eye,
upper/lower lip, the mouth opening). Concepts without an exact mask are listed with empty scores.
Takes about a minute for 2,000 faces on one core.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from facebias.data.synthfaces import DERIVED_CONCEPTS, build_model, render, sample_latents
from facebias.data.synthfaces.render import derived_masks, face_parameters, landmarks68_from_parameters
from facebias.faces.concepts import ATTRIBUTE_OF_CONCEPT, CONCEPT_REGION, LOCAL_CONCEPTS
from facebias.faces.dictionary import default_concepts, face_dictionary, per_image_iou

ROOT = Path(__file__).resolve().parents[1]
EXACT = (*LOCAL_CONCEPTS, *DERIVED_CONCEPTS)
COLUMNS = ("concept", "region", "conditioned_on", "exact_mask", "faces", "iou_5", "iou_68", "gain")


def measure(n: int, seed: int, mask_size: int, batch: int) -> tuple[list[str], dict[str, dict[str, list]]]:
    model = build_model()
    z_all = sample_latents(n, seed=seed)
    values: dict[str, dict[str, list]] = {"5": {}, "68": {}}
    concepts: list[str] = []
    for start in range(0, n, batch):
        z = z_all[start:start + batch]
        faces = render(z, model, with_masks=True)
        params = face_parameters(z, model)
        exact = torch.cat([faces.masks, derived_masks(params, faces.masks)], dim=1)
        attrs = {name: faces.attrs[:, i].numpy().astype(np.int64) for i, name in enumerate(model.attribute_names)}
        concepts = list(default_concepts(attrs, 68))
        five = np.rint(faces.landmarks.numpy())  # as the landmark file stores them
        points = landmarks68_from_parameters(params).numpy()
        for key, dictionary in (("5", face_dictionary(five, attrs, mask_size=mask_size, concepts=concepts)),
                                ("68", face_dictionary(points, attrs, mask_size=mask_size, concepts=concepts))):
            for concept, iou in per_image_iou(dictionary, exact, EXACT).items():
                values[key].setdefault(concept, []).append(iou)
        print(f"  {min(start + batch, n)}/{n} faces", flush=True)
    return concepts, values


def table(concepts: list[str], values: dict[str, dict[str, list]]) -> list[dict]:
    rows = []
    for concept in concepts:
        row = {"concept": concept, "region": CONCEPT_REGION[concept],
               "conditioned_on": ATTRIBUTE_OF_CONCEPT.get(concept, ("", 0))[0],
               "exact_mask": ("renderer" if concept in LOCAL_CONCEPTS else "derived" if concept in DERIVED_CONCEPTS
                              else "none"),
               "faces": "", "iou_5": "", "iou_68": "", "gain": ""}
        if concept in values["68"]:
            scores = {}
            for key in ("5", "68"):
                per_face = np.concatenate(values[key][concept])
                kept = per_face[~np.isnan(per_face)]
                scores[key] = float(kept.mean()) if kept.size else float("nan")
                row["faces"] = int(kept.size)
            row.update(iou_5=f"{scores['5']:.3f}", iou_68=f"{scores['68']:.3f}",
                       gain=f"{scores['68'] - scores['5']:+.3f}")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="faces (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mask-size", type=int, default=64, help="mask pixels (default 64, the default input size)")
    parser.add_argument("--batch", type=int, default=200, help="faces rendered at a time (memory)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dictionary_iou.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    concepts, values = measure(args.n, args.seed, args.mask_size, args.batch)
    rows = table(concepts, values)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nmean IoU vs SynthFaces' exact masks, {args.n} faces, mask {args.mask_size} px "
          f"({time.time() - started:.0f} s) -> {args.out}")
    print(f"{'concept':<22}{'region':<10}{'5 points':>10}{'68 points':>11}{'gain':>9}")
    for row in rows:
        print(f"{row['concept']:<22}{row['region']:<10}{row['iou_5'] or '-':>10}{row['iou_68'] or '-':>11}"
              f"{row['gain']:>9}")


if __name__ == "__main__":
    main()
