"""How long does SynthFaces take to generate? (docs/design.md §3: about a minute for tens of thousands.)

    .venv/bin/python bench/bench_synthfaces_generate.py --n-faces 24000 --workers 2

Times a fresh `generate` into a temporary directory (spawning workers, rendering, JPEG writing,
annotation files), then the render-only speed of one core and of re-rendering masks. Prints a
JSON line at the end. Timings depend on what else the machine is running: the load average is
printed beside them. `--grid docs/synthfaces_grid.png` also draws the first 32 faces of the set
with their attributes (the picture in docs/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from facebias.data.synthfaces import generate, load_masks, render, sample_latents

SHORT = {
    "Male": "male", "Eyeglasses": "glasses", "Young": "young", "Smiling": "smile",
    "Mouth_Slightly_Open": "open", "Wearing_Hat": "hat", "Mustache": "moust.", "Wearing_Lipstick": "lipst.",
    "Wearing_Earrings": "earr.", "Bangs": "bangs", "Pale_Skin": "pale", "Blond_Hair": "blond",
    "Black_Hair": "black", "Gray_Hair": "gray", "Brown_Hair": "brown",
}  # fmt: skip


def draw_grid(root: Path, out: Path, n: int = 32, per_row: int = 8) -> None:
    """The first n faces of a generated set, each captioned with the attributes that are on."""
    from PIL import Image, ImageDraw, ImageFont

    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    names = lines[1].split()
    cell_w, cell_h, cap = 178, 218, 30
    rows = (n + per_row - 1) // per_row
    grid = Image.new("RGB", (per_row * cell_w, rows * (cell_h + cap)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=11)
    for i in range(n):
        fields = lines[2 + i].split()
        on = [names[k] for k, v in enumerate(fields[1:]) if v == "1"]
        words = [SHORT[a] for a in SHORT if a in on] + (["beard"] if "No_Beard" not in on else [])
        x, y = (i % per_row) * cell_w, (i // per_row) * (cell_h + cap)
        with Image.open(root / "img_align_celeba" / fields[0]) as im:
            grid.paste(im.convert("RGB"), (x, y))
        text = " ".join(words)
        half = len(words) // 2 + len(words) % 2
        text = " ".join(words[:half]) + "\n" + " ".join(words[half:]) if len(text) > 30 else text
        draw.multiline_text((x + 3, y + cell_h + 2), text, fill="black", font=font, spacing=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, optimize=True)
    print(f"grid: {out}")


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the spawned workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-faces", type=int, default=24000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="generate here (kept) instead of a temporary directory")
    ap.add_argument("--grid", default=None, help="write a captioned picture grid of the first 32 faces here")
    args = ap.parse_args()

    data_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="synthfaces-bench-"))
    try:
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), _cpu_seconds()
        root = generate(data_dir, n_faces=args.n_faces, seed=0, progress=True, workers=args.workers)
        gen_s, cpu_s = time.perf_counter() - t0, _cpu_seconds() - c0
        size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
        print(f"generate: {args.n_faces} faces in {gen_s:.1f}s ({args.n_faces / gen_s:.0f} faces/s, "
              f"{args.workers} workers), {cpu_s:.1f} CPU-s in all processes, {size_mb:.0f} MiB, "
              f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip

        if args.grid:
            draw_grid(root, Path(args.grid))
        torch.set_num_threads(1)
        z = sample_latents(512, 1)
        render(z[:16], with_masks=False)
        t0 = time.process_time()
        render(z, with_masks=False)
        render_ms = (time.process_time() - t0) / len(z) * 1e3
        t0 = time.process_time()
        load_masks(root, list(range(128)))
        mask_ms = (time.process_time() - t0) / 128 * 1e3
        print(f"render: {render_ms:.2f} CPU-ms/face; load_masks: {mask_ms:.2f} CPU-ms/face (one thread)")
        print(json.dumps({"n_faces": args.n_faces, "workers": args.workers, "generate_s": round(gen_s, 1), "generate_cpu_s": round(cpu_s, 1),
                          "render_ms_per_face": round(render_ms, 2), "load_masks_ms_per_face": round(mask_ms, 2),
                          "size_mib": round(size_mb), "load_average_start": round(load_before, 1)}))  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
