"""Compare GAN runs' score distributions against their training faces, from `gan_quality.py --bins` outputs:
`python scripts/gan_score_shares.py w48=a.json w64=b.json --head Male --out docs/gan_male_score_shares`
writes <out>.csv (one row per score bin) and <out>.png (bars: the training faces and each run).

Why: two GANs can both miss an attribute's rate for different reasons; the bins show where the gap sits (e.g. too
few faces the classifier is sure are male, rather than men it misreads).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=path of a `gan_quality.py --bins N --out` JSON")
    parser.add_argument("--head", default="Male")
    parser.add_argument("--out", required=True, help="path without suffix")
    args = parser.parse_args()
    shares, train, edges = {}, None, None
    for spec in args.runs:
        label, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"{spec!r}: write LABEL=path")
        figures = json.loads(Path(path).read_text())
        if "score_shares" not in figures or args.head not in figures["score_shares"]:
            parser.error(f"{path} has no score_shares for {args.head}: rerun gan_quality.py with --bins")
        head = figures["score_shares"][args.head]
        if edges is not None and (head["edges"] != edges or head["train"] != train):
            parser.error(f"{path}: other bins or other training faces than the first file; compare like with like")
        edges, train, shares[label] = head["edges"], head["train"], head["generated"]
    out = Path(args.out)
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["score_from", "score_to", "training", *shares])
        for i in range(len(train)):
            writer.writerow([edges[i], edges[i + 1], train[i], *(values[i] for values in shares.values())])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    width = 0.8 / (1 + len(shares))
    x = np.arange(len(train))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, (label, values) in enumerate({"training faces": train, **shares}.items()):
        ax.bar(x + (i - len(shares) / 2) * width, values, width, label=label)
    ax.set_xticks(x, [f"{edges[i]:.1f}–{edges[i + 1]:.1f}" for i in range(len(train))], fontsize=8)
    ax.set_xlabel(f"{args.head} score under the quality classifier")
    ax.set_ylabel("share of faces")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
