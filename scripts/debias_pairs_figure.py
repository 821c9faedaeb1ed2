"""The de-biasing arms by generator, debias.pairs and training seed (README "De-biasing with this GAN"):
    python scripts/debias_pairs_figure.py table <evaluate.py sweep_summary.csv>... --out docs/debias_pairs_p80.csv
    python scripts/debias_pairs_figure.py figure docs/debias_pairs_p80.csv docs/debias_pairs_p80.png

Why: single reduced-scale runs differ by up to 10 points between training seeds, so the arms are read side by side
with their seeds rather than as one number each. `table` names each run from its own config.yaml (generator, arm,
pairs, seed) and keeps the P = 80 runs; `figure` draws one bar per arm and seed.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import yaml

ORDER = [("—", "baseline", "—"), ("renderer", "control", "all"), ("renderer", "debiased", "all"),
         ("renderer", "control", "agreed"), ("renderer", "debiased", "agreed"), ("gan_w64", "control", "all"),
         ("gan_w64", "debiased", "all"), ("gan_w64", "control", "agreed"), ("gan_w64", "debiased", "agreed")]
FIELDS = ["generator", "arm", "pairs", "seed", "AP", "DEO", "DEO_std", "BA", "gap", "KL", "run_dir"]


def describe(run_dir: Path) -> tuple[str, str, str, int]:
    """(generator, arm, pairs, seed) from a run's config.yaml."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    debias = config.get("debias") or {}
    generator = debias.get("generator") or {}
    if not debias:
        name = "—"
    elif generator.get("kind") == "gan":
        name = Path(str(generator.get("run"))).name
    else:
        name = "renderer"
    return name, debias.get("arm", "baseline"), debias.get("pairs", "all") if debias else "—", int(config["seed"])


def table(summaries: list[str], out: str) -> None:
    rows = {}
    for summary in summaries:
        for row in csv.DictReader(open(summary)):
            if float(row["P"]) != 80:
                continue
            run_dir = Path(row["run_dir"])
            generator, arm, pairs, seed = describe(run_dir)
            relative = str(run_dir)[str(run_dir).index("multirun/"):]
            rows[(generator, arm, pairs, seed)] = {
                "generator": generator, "arm": arm, "pairs": pairs, "seed": seed,
                **{k: f"{float(row[k]):.1f}" for k in ("AP", "DEO", "DEO_std", "BA", "gap")},
                "KL": f"{float(row['KL']):.2f}", "run_dir": relative}
    unknown = [key for key in rows if key[:3] not in ORDER]
    if unknown:
        raise SystemExit(f"runs outside this comparison: {unknown}")
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows[key] for key in sorted(rows, key=lambda k: (ORDER.index(k[:3]), k[3])))
    print(f"wrote {out}: {len(rows)} runs")


def figure(table_path: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    gaps: dict[str, dict[str, float]] = defaultdict(dict)
    for row in csv.DictReader(open(table_path)):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table_parser = commands.add_parser("table")
    table_parser.add_argument("summaries", nargs="+")
    table_parser.add_argument("--out", required=True)
    figure_parser = commands.add_parser("figure")
    figure_parser.add_argument("table")
    figure_parser.add_argument("out")
    args = parser.parse_args()
    if args.command == "table":
        table(args.summaries, args.out)
    else:
        figure(args.table, args.out)


if __name__ == "__main__":
    main()
