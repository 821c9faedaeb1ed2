"""The stereotype gap of every arm of docs/debias_pairs_p80.csv, one bar per training seed:
`python scripts/debias_pairs_figure.py docs/debias_pairs_p80.csv docs/debias_pairs_p80.png`.

Why: single reduced-scale runs differ by up to 10 points between training seeds, so the arms are read side by side
with their seeds rather than as one number each.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(table: str, out: str) -> None:
    gaps: dict[str, dict[str, float]] = defaultdict(dict)
    for row in csv.DictReader(open(table)):
        arm = "baseline" if row["arm"] == "baseline" else f"{row['generator']}\n{row['arm']}, {row['pairs']}"
        gaps[arm][row["seed"]] = float(row["gap"])
    seeds = sorted({seed for by_seed in gaps.values() for seed in by_seed})
    x, width = np.arange(len(gaps)), 0.8 / len(seeds)
    fig, ax = plt.subplots(figsize=(11, 3.8))
    for i, seed in enumerate(seeds):
        ax.bar(x + (i - (len(seeds) - 1) / 2) * width, [by_seed.get(seed, np.nan) for by_seed in gaps.values()],
               width, label=f"training seed {seed}")
    ax.axhline(np.mean(list(gaps["baseline"].values())), color="grey", lw=0.8, ls="--", label="baseline, mean")
    ax.set_xticks(x, list(gaps), fontsize=7)
    ax.set_ylabel("stereotype gap, points (test, calibrated)")
    ax.set_title("P = 80 eyeglasses, reduced scale: de-biasing arms by generator and debias.pairs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
