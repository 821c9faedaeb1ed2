"""The pre-registered confirmation on fresh seeds (docs/preregistration_seeds.md): reads a dissection sweep and a
region-explanation sweep over the 64 px runs of seeds 0-4 and scores every pre-registered criterion.

    python scripts/seeds_confirmation.py outputs/dissect/sweep64_seeds04 outputs/dissect/regions_seeds04

Writes <out>_runs.csv (every measure per run), <out>.csv (one row per measure, family and seed set: the
per-P means, rho over the means and over the runs, the criterion and whether it holds) and <out>.png.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from facebias.analyses.units import spearman, spearman_of_means
from facebias.reporting.files import write_csv
from facebias.reporting.plots import FAMILY_COLOURS, pyplot, save_figure

PS = (50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
EYE = "eye"
# measure -> (label, seeds that are fresh for it, criterion per family: (kind, bound))
MEASURES = {
    "D1_eye_detectors": ("eye-region detectors (dissection, all layers)", (3, 4),
                         {"eyeglasses": ("rho>=", 0.9, 3.0), "grayscale": ("|rho|<=", 0.5, None)}),
    "D2_eyeglasses_detectors": ("Eyeglasses detectors (dissection, all layers)", (3, 4),
                                {"eyeglasses": ("rho>=", 0.9, 3.0), "grayscale": ("|rho|<=", 0.5, None)}),
    "D3_grayscale_biased": ("grayscale-biased units (dissection, all layers)", (3, 4),
                            {"eyeglasses": ("rho<=", 0.0, None), "grayscale": ("rho>=", 0.9, None)}),
    "R1_eye_score": ("eye-region score (GradCAM, layer3)", (1, 2, 3, 4),
                     {"eyeglasses": ("rho>=", 0.8, 1.0), "grayscale": ("|rho|<=", 0.5, None)}),
    "R2_relative_eye_score": ("relative eye-region score (eye / mean of regions)", (1, 2, 3, 4),
                              {"eyeglasses": ("rho>=", 0.8, 1.0), "grayscale": ("|rho|<=", 0.5, None)}),
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_measures(dissect_dir: Path, regions_dir: Path, root: Path) -> list[dict]:
    """One row per (family, P, seed): D1-D3 from the dissection sweep, R1-R2 from the regions sweep."""
    runs: dict[tuple, dict] = defaultdict(dict)
    for row in read_csv(dissect_dir / "dissect_sweep_totals.csv"):  # one row per run: its layers' totals
        key = (row["family"], float(row["P"]), int(row["train_seed"]))
        layers = json.loads((root / row["dissect_dir"] / "dissect.json").read_text())["layers"]
        runs[key].update({
            "D1_eye_detectors": float(row["eye_detectors"]),
            "D2_eyeglasses_detectors": float(sum(layer["by_concept"].get("Eyeglasses", 0) for layer in layers.values())),
            "D3_grayscale_biased": float(row["grayscale_biased"]),
        })
    scores: dict[tuple, dict[str, float]] = defaultdict(dict)
    for row in read_csv(regions_dir / "regions_sweep.csv"):
        scores[(row["family"], float(row["P"]), int(row["train_seed"]))][row["region"]] = float(row["score"])
    for key, by_region in scores.items():
        runs[key]["R1_eye_score"] = by_region[EYE]
        runs[key]["R2_relative_eye_score"] = by_region[EYE] / float(np.mean(list(by_region.values())))
    return [{"family": f, "P": p, "seed": s, **values} for (f, p, s), values in sorted(runs.items())]


def criteria(rows: list[dict]) -> list[dict]:
    """Per measure, family and seed set (fresh / all): per-P means, rho over them and over runs, pass or fail."""
    out = []
    for measure, (label, fresh, rules) in MEASURES.items():
        for family, (kind, bound, ratio) in rules.items():
            for seed_set, seeds in (("fresh", fresh), ("all", None)):
                mine = [r for r in rows if r["family"] == family and measure in r
                        and (seeds is None or r["seed"] in seeds)]
                means = {p: float(np.mean([r[measure] for r in mine if r["P"] == p])) for p in PS
                         if any(r["P"] == p for r in mine)}
                rho, p_value = spearman_of_means([(r["P"], r[measure]) for r in mine])
                rho_runs, _ = spearman([r["P"] for r in mine], [r[measure] for r in mine])
                holds = None if rho is None else {"rho>=": rho >= bound, "rho<=": rho <= bound,
                                                  "|rho|<=": abs(rho) <= bound}[kind]
                row = {"measure": measure, "label": label, "family": family, "seeds": seed_set,
                       "seeds_used": " ".join(str(s) for s in sorted({r["seed"] for r in mine})), "runs": len(mine),
                       **{f"mean_P{int(p)}": means.get(p) for p in PS},
                       "rho_means": rho, "p_value_means": p_value, "rho_runs": rho_runs,
                       "criterion": f"{kind.replace('rho', 'ρ')} {bound:g}", "rho_holds": holds,
                       "ratio_P100_P50": None, "ratio_criterion": None, "ratio_holds": None}
                if ratio is not None and 50.0 in means and 100.0 in means:
                    low, high = means[50.0], means[100.0]
                    row["ratio_P100_P50"] = None if low == 0 else high / low
                    if ratio == 1.0:
                        row["ratio_criterion"], row["ratio_holds"] = "P100 > P50", high > low
                    else:
                        row["ratio_criterion"] = f"P100 >= {ratio:g} x P50" + (" (trivial: P50 = 0)" if low == 0 else "")
                        row["ratio_holds"] = high >= ratio * low
                out.append(row)
    return out


def figure(path: Path, rows: list[dict]) -> Path:
    """One panel per measure: per-run dots and per-P means over all seeds, one colour per family."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), 3.6), squeeze=False)
    for ax, (measure, (label, _, rules)) in zip(axes[0], MEASURES.items(), strict=True):
        for k, family in enumerate(rules):
            mine = [r for r in rows if r["family"] == family and measure in r]
            colour = FAMILY_COLOURS[k]
            ax.scatter([r["P"] + (k - 0.5) for r in mine], [r[measure] for r in mine], s=10, alpha=0.5, color=colour)
            ps = sorted({r["P"] for r in mine})
            ax.plot(ps, [np.mean([r[measure] for r in mine if r["P"] == p]) for p in ps], marker="o", color=colour,
                    label=family)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("P (% of men with the concept)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dissect_dir", type=Path, help="a dissect.py sweep= output dir (dissect_sweep.csv)")
    parser.add_argument("regions_dir", type=Path, help="a dissect.py analysis=regions sweep= output dir")
    parser.add_argument("--root", type=Path, default=Path("."), help="what the sweep tables' paths are relative to")
    parser.add_argument("--out", default="docs/seeds_confirmation", help="output prefix")
    args = parser.parse_args()
    rows = run_measures(args.dissect_dir, args.regions_dir, args.root)
    table = criteria(rows)
    write_csv(Path(f"{args.out}_runs.csv"), rows)
    write_csv(Path(f"{args.out}.csv"), table)
    figure(Path(f"{args.out}.png"), rows)
    for row in table:
        means = " ".join("-" if row[f"mean_P{int(p)}"] is None else f"{row[f'mean_P{int(p)}']:.3g}" for p in PS)
        rho = "n/a" if row["rho_means"] is None else f"{row['rho_means']:+.2f}"
        print(f"{row['measure']:24s} {row['family']:10s} {row['seeds']:5s} means {means:40s} rho {rho} "
              f"({row['criterion']}: {row['rho_holds']}) {row['ratio_criterion'] or ''} {row['ratio_holds'] or ''}")


if __name__ == "__main__":
    main()
