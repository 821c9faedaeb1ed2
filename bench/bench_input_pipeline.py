"""Input-pipeline throughput: our decoded-image cache vs torchvision's CelebA + PIL transforms.

Both paths deliver what a training loop consumes: a batch of 128 normalised float tensors with a
random horizontal flip, from the SAME images in the same run:

(a) cache: memmap rows -> torch.from_numpy -> permute/float/normalise -> flip as a tensor op, in the
    main process with one torch thread (one core);
(b) torchvision: ``datasets.CelebA(..., split="all", target_type="attr")`` with PIL transforms (crop
    to the reference 128x128 box, Resize, RandomHorizontalFlip, ToTensor, Normalize) through a
    DataLoader with ``--workers`` worker processes (each worker is one core).

Figures are images per second per core, measured on a warm epoch (persistent workers, page cache
warm); the cache's one-off build time is printed separately. Before timing, the script checks that
both paths produce the same pixels (cache row == torchvision crop+resize, no flip).

    .venv/bin/python bench/bench_input_pipeline.py --n 2000 --size 64 --workers 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from facebias.data.cache import image_cache
from facebias.data.celeba import (
    ATTR_FILE,
    BBOX_FILE,
    IDENTITY_FILE,
    IMAGE_DIR,
    LANDMARK_COLUMNS,
    LANDMARK_FILE,
    PARTITION_FILE,
    read_celeba,
)
from facebias.faces.geometry import ALIGNED_HEIGHT, ALIGNED_WIDTH, CROP_LEFT, CROP_SIZE, CROP_TOP

BATCH = 128
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "celeba_sample"


def make_dataset(root: Path, n: int, seed: int) -> str:
    """A CelebA-layout set of n images: SynthFaces when importable, else procedural face-like JPEGs."""
    try:
        from facebias.data.synthfaces import generate
    except ImportError:
        generate = None
    if generate is not None:
        result = generate(root, n, seed)
        for candidate in [Path(result)] if isinstance(result, (str, Path)) else []:
            if (candidate / ATTR_FILE).is_file():
                return f"SynthFaces at {candidate}"
        found = next(root.rglob(ATTR_FILE)).parent
        return f"SynthFaces at {found}"
    _procedural_faces(root, n, seed)
    return f"procedural JPEGs at {root} (synthfaces.generate not importable)"


def _procedural_faces(root: Path, n: int, seed: int) -> None:
    """Smooth shapes plus mild noise, JPEG quality 90: file sizes near CelebA's (~8 KB), so decode cost is similar."""
    rng = np.random.default_rng(seed)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        background = tuple(int(v) for v in rng.integers(0, 255, 3))
        image = Image.new("RGB", (ALIGNED_WIDTH, ALIGNED_HEIGHT), background)
        draw = ImageDraw.Draw(image)
        skin = tuple(int(v) for v in rng.integers(90, 240, 3))
        cx, cy = 89 + rng.integers(-6, 7), 125 + rng.integers(-6, 7)
        draw.ellipse(
            (cx - 80, cy - 105, cx + 80, cy + 40), fill=tuple(int(v) for v in rng.integers(0, 120, 3))
        )
        draw.ellipse((cx - 50, cy - 65, cx + 50, cy + 70), fill=skin)
        for dx in (-22, 22):
            draw.ellipse((cx + dx - 8, cy - 18, cx + dx + 8, cy - 10), fill=(40, 30, 30))
        draw.line((cx, cy - 10, cx - 4, cy + 14), fill=(120, 80, 70), width=3)
        draw.chord((cx - 20, cy + 20, cx + 20, cy + 40), 0, 180, fill=(150, 50, 60))
        image = image.filter(ImageFilter.GaussianBlur(1.5))
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (ALIGNED_HEIGHT, ALIGNED_WIDTH, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / IMAGE_DIR / name, quality=90)
    attr_names = (SAMPLE / ATTR_FILE).read_text().splitlines()[1].split()
    attrs = rng.choice([-1, 1], size=(n, len(attr_names)))
    with open(root / ATTR_FILE, "w") as f:
        f.write(f"{n}\n{' '.join(attr_names)}\n")
        f.writelines(
            f"{name} {' '.join(f'{v:2d}' for v in row)}\n" for name, row in zip(names, attrs, strict=True)
        )
    (root / PARTITION_FILE).write_text(
        "".join(f"{name} { {8: 1, 9: 2}.get(i % 10, 0) }\n" for i, name in enumerate(names))
    )
    (root / IDENTITY_FILE).write_text("".join(f"{name} {i // 20 + 1}\n" for i, name in enumerate(names)))
    with open(root / LANDMARK_FILE, "w") as f:
        f.write(f"{n}\n{' '.join(LANDMARK_COLUMNS)}\n")
        base = [69, 111, 108, 111, 89, 134, 72, 152, 105, 152]
        f.writelines(f"{name} " + " ".join(f"{v:5d}" for v in base) + "\n" for name in names)


def torchvision_layout(root: Path, work: Path) -> Path:
    """torchvision wants <root>/celeba/ with all five files (bbox included): link ours, write what is missing."""
    tv_root = work / "tv"
    folder = tv_root / "celeba"
    folder.mkdir(parents=True)
    for name in (ATTR_FILE, PARTITION_FILE, LANDMARK_FILE, IDENTITY_FILE, BBOX_FILE, IMAGE_DIR):
        if (root / name).exists():
            os.symlink((root / name).resolve(), folder / name)
    names = [line.split()[0] for line in (root / PARTITION_FILE).read_text().splitlines() if line.strip()]
    if not (folder / IDENTITY_FILE).exists():
        (folder / IDENTITY_FILE).write_text("".join(f"{name} 0\n" for name in names))
    if not (folder / BBOX_FILE).exists():
        rows = "".join(f"{name} 0 0 {ALIGNED_WIDTH} {ALIGNED_HEIGHT}\n" for name in names)
        (folder / BBOX_FILE).write_text(f"{len(names)}\nimage_id x_1 y_1 width height\n{rows}")
    return tv_root


def torchvision_dataset(tv_root: Path, size: int, flip_and_normalise: bool = True):
    from torchvision import datasets, transforms
    from torchvision.transforms import functional

    class LocalCelebA(datasets.CelebA):
        """Our files are not the official ones (md5 differs): check the layout, not the hashes."""

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return (
                all((folder / name).exists() for _, _, name in self.file_list[1:])
                and (folder / IMAGE_DIR).is_dir()
            )

    steps = [
        transforms.Lambda(lambda image: functional.crop(image, CROP_TOP, CROP_LEFT, CROP_SIZE, CROP_SIZE)),
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR),
    ]
    if flip_and_normalise:
        steps += [transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    else:
        steps += [transforms.PILToTensor()]
    return LocalCelebA(
        str(tv_root), split="all", target_type="attr", transform=transforms.Compose(steps), download=False
    )


def cache_batches(images: np.ndarray, attrs: np.ndarray, generator: torch.Generator):
    """One epoch of training batches from the cache: shuffled rows, tensor ops only."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    scale = 1 / (torch.tensor(STD).view(1, 3, 1, 1) * 255)
    order = torch.randperm(len(images), generator=generator).numpy()
    for start in range(0, len(order), BATCH):
        rows = np.sort(order[start : start + BATCH])  # sorted rows: sequential reads from the memmap
        # channels first while still bytes (4x cheaper to move), then per-channel normalise on contiguous planes
        x = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).contiguous().float().sub_(mean).mul_(scale)
        flip = torch.rand(len(rows), generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        yield x, torch.from_numpy(attrs[rows])


def time_epochs(make_epoch, min_seconds: float) -> float:
    """Images per second over whole epochs, after one warm-up epoch, until min_seconds have passed."""
    for _ in make_epoch():
        pass
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        for x, _ in make_epoch():
            images += len(x)
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="CelebA-layout dir (default: generate --n images)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=1, help="DataLoader workers = cache build workers = cores"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed duration per path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="facebias-bench-"))
    try:
        if args.root is None:
            t = time.perf_counter()
            what = make_dataset(work / "data", args.n, args.seed)
            print(f"data: {what}, {args.n} images, made in {time.perf_counter() - t:.1f} s")
            root = next((work / "data").rglob(ATTR_FILE)).parent
        else:
            root = args.root
            print(f"data: {root}")
        table = read_celeba(root)
        sizes = [os.path.getsize(table.image_dir / name) for name in table.filenames]
        print(f"{len(table)} images, mean JPEG size {np.mean(sizes) / 1024:.1f} KiB, size {args.size} px")

        t = time.perf_counter()
        images = image_cache(table, args.size, work / "cache", num_workers=args.workers, progress=False)
        build = time.perf_counter() - t
        print(
            f"cache build: {build:.2f} s with {args.workers} worker(s) = {len(table) / build / args.workers:.0f} img/s per core"
        )

        tv_root = torchvision_layout(root, work)
        check = torchvision_dataset(tv_root, args.size, flip_and_normalise=False)
        index = {name: i for i, name in enumerate(table.filenames)}
        for i in np.linspace(0, len(check) - 1, 5).astype(int):
            row = index[check.filename[i]]
            assert torch.equal(check[i][0].permute(1, 2, 0), torch.from_numpy(np.array(images[row]))), (
                "pixels differ"
            )
        print("pixel check: cache rows equal torchvision's crop+resize on 5 images")

        torch.set_num_threads(1)
        generator = torch.Generator().manual_seed(args.seed)
        attrs = table.attrs
        ours = time_epochs(lambda: cache_batches(images, attrs, generator), args.seconds)

        dataset = torchvision_dataset(tv_root, args.size)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=BATCH,
            shuffle=True,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )
        theirs = time_epochs(lambda: iter(loader), args.seconds)
        cores = max(1, args.workers)
        print(f"(a) cache, main process, 1 thread:         {ours:9.0f} img/s = {ours:9.0f} img/s per core")
        print(
            f"(b) torchvision CelebA + PIL, {args.workers} worker(s): {theirs:9.0f} img/s = {theirs / cores:9.0f} img/s per core"
        )
        print(f"ratio per core: {ours / (theirs / cores):.1f}x (target >= 5x)")
        print(
            f"break-even: the cache build pays for itself after {build * theirs / len(table):.1f} epoch(s) of (b)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
