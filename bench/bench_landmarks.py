"""68-point landmarking throughput: ``landmarks_68`` (process pool, then its cache) vs a single-process loop.

The ten CelebA sample images are copied to ``--n`` files (distinct files, as a source has them) with
their five landmarks, and the same run times:

(a) loop: ``landmark_image`` over every image in this process (decode, HOG check at the box, dlib's
    shape predictor), the model already loaded;
(b) parallel build: ``landmarks_68(workers=W)`` on an empty cache dir: the pool's start, the work,
    the cache's atomic write;
(c) cached: the same call again, which only checks the key and reads the .npz back.

Also the time to load the 100 MB model once, (a) split into its parts per image, and the CPU time
per image of each path (this process plus its joined workers). Figures are images per second; the
ratios are against (a). On a shared, loaded machine the wall-clock ratio is bounded by the free
cores (the load average is printed): rerun for spread.

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
from functools import partial
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


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the pool's workers, once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


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

    wall = {"loop": math.inf, "build": math.inf, "cached": math.inf}
    cpu = dict(wall)

    def timed(key: str, run):
        start, cpu0 = time.perf_counter(), cpu_seconds()
        out = run()
        wall[key] = min(wall[key], time.perf_counter() - start)
        cpu[key] = min(cpu[key], cpu_seconds() - cpu0)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        table = repeated_table(Path(tmp), args.n)
        paths = [str(table.image_dir / name) for name in table.filenames]
        pairs = list(zip(paths, table.landmarks, strict=True))
        for repeat in range(args.repeats):
            serial = timed("loop", lambda: [landmark_image(path, five)[0] for path, five in pairs])
            cache_dir = Path(tmp) / f"cache{repeat}"
            run = partial(landmarks_68, table, cache_dir, workers=args.workers, progress=False)
            built = timed("build", run)  # an empty cache dir: the pool does the work, then the write
            cached = timed("cached", run)  # the same call again: the key, the .npz read back
        assert np.array_equal(np.stack(serial), built.points) and np.array_equal(built.points, cached.points)

        parts = {"decode": 0.0, "hog check": 0.0, "shape predictor": 0.0}
        for path, five in pairs[:100]:
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
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{n} images (10 CelebA sample images repeated), best of {args.repeats}")
    print(f"{os.cpu_count()} CPUs visible, load average {load}")
    print(f"model load (once per process; forked workers inherit it): {load_s:.2f} s")
    per_image = ", ".join(f"{k} {v / min(n, 100) * 1e3:.2f} ms" for k, v in parts.items())
    print(f"per image in the loop: {per_image}")
    print(f"{'path':<40}{'seconds':>10}{'img/s':>10}{'x loop':>9}{'CPU ms/img':>12}")
    for label, key in (
        ("single-process loop", "loop"),
        (f"landmarks_68 build, {args.workers} workers", "build"),
        ("landmarks_68 cached", "cached"),
    ):
        row = f"{wall[key]:>10.3f}{n / wall[key]:>10.0f}{wall['loop'] / wall[key]:>9.2f}{cpu[key] / n * 1e3:>12.2f}"
        print(f"{label:<40}{row}")
    print("x loop is bounded by the free cores; on a loaded machine the CPU column shows the pool's overhead")


if __name__ == "__main__":
    main()
