"""Figures as PNG files through matplotlib's Agg backend (no display on servers or in CI)."""

from __future__ import annotations

from pathlib import Path

GROUP_COLOURS = ("tab:blue", "tab:orange")
FAMILY_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:gray")


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (parent dirs created) and close it, so long sweeps do not pile figures up."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    pyplot().close(fig)
    return path
