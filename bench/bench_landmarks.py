"""68-point landmarking throughput: ``landmarks_68`` (process pool, then its cache) vs a single-process loop.

The ten CelebA sample images are copied to ``--n`` files (distinct files, as a source has them) with
their five landmarks, and the same run times:

(a) loop: ``landmark_image`` over every image in this process (decode, HOG check at the box, dlib's
    shape predictor), the model already loaded;
(b) parallel build: ``landmarks_68(workers=W)`` on an empty cache dir: the pool's start, the work,
    the cache's atomic write;
(c) cached: the same call again, which only checks the key and reads the .npz back.

Also the time to load the 100 MB model once, and (a) split into its parts per image. Figures are
images per second; the ratios are against (a). Cores are shared on a busy machine: rerun for spread.

    .venv/bin/python bench/bench_landmarks.py --n 400 --workers 2
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from facebias.data.celeba import read_celeba
from facebias.data.table import FaceTable
from facebias.faces import landmarks
from facebias.faces.landmarks import box_from_five, face_score, landmark_image, landmarks_68, predict_68

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "celeba_sample"


def repeated_table(root: Path, n: int) -> FaceTable:
    """The sample's images copied to n files (000001.jpg ... in a cycle), with their five landmarks."""
    sample = read_celeba(SAMPLE)
    image_dir = root / "img_align_celeba"
    image_dir.mkdir(parents=True)
    names = []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        shutil.copyfile(sample.image_dir / sample.filenames[i % len(sample)], image_dir / name)
        names.append(name)
    rows = np.arange(n) % len(sample)
    return FaceTable(
        source="celeba",
        image_dir=image_dir,
        filenames=tuple(names),
        attr_names=sample.attr_names,
        attrs=sample.attrs[rows],
        split=sample.split[rows],
        landmarks=sample.landmarks[rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=400, help="images (the 10 sample images, repeated)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3, help="take the best of this many runs of each")
    args = parser.parse_args()
    warnings.simplefilter("ignore", landmarks.LandmarkFallbackWarning)

    start = time.perf_counter()
    landmarks.load_landmarker()
    load_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        table = repeated_table(Path(tmp), args.n)
        paths = [str(table.image_dir / name) for name in table.filenames]

        loop_s = math.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            serial = [
                landmark_image(path, five)[0] for path, five in zip(paths, table.landmarks, strict=True)
            ]
            loop_s = min(loop_s, time.perf_counter() - start)

        build_s, cached_s = math.inf, math.inf
        for repeat in range(args.repeats):
            cache_dir = Path(tmp) / f"cache{repeat}"
            start = time.perf_counter()
            built = landmarks_68(table, cache_dir, workers=args.workers, progress=False)
            build_s = min(build_s, time.perf_counter() - start)
            start = time.perf_counter()
            cached = landmarks_68(table, cache_dir, workers=args.workers, progress=False)
            cached_s = min(cached_s, time.perf_counter() - start)
        assert np.array_equal(np.stack(serial), built.points) and np.array_equal(built.points, cached.points)

        parts = {"decode": 0.0, "hog check": 0.0, "shape predictor": 0.0}
        for path, five in zip(paths[:100], table.landmarks[:100], strict=True):
            t0 = time.perf_counter()
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
            t1 = time.perf_counter()
            box = box_from_five(five)
            face_score(rgb, box)
            t2 = time.perf_counter()
            predict_68(rgb, box)
            t3 = time.perf_counter()
            parts["decode"] += t1 - t0
            parts["hog check"] += t2 - t1
            parts["shape predictor"] += t3 - t2

    n = args.n
    print(
        f"{n} images (10 CelebA sample images repeated), {os.cpu_count()} CPUs visible, best of {args.repeats}"
    )
    print(f"model load (once per process; forked workers inherit it): {load_s:.2f} s")
    print(
        "per image in the loop: " + ", ".join(f"{k} {v / min(n, 100) * 1e3:.2f} ms" for k, v in parts.items())
    )
    print(f"{'path':<40}{'seconds':>10}{'img/s':>10}{'x loop':>9}")
    for label, seconds in (
        ("single-process loop", loop_s),
        (f"landmarks_68 build, {args.workers} workers", build_s),
        ("landmarks_68 cached", cached_s),
    ):
        print(f"{label:<40}{seconds:>10.3f}{n / seconds:>10.0f}{loop_s / seconds:>9.2f}")


if __name__ == "__main__":
    main()
