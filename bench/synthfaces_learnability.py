"""Is SynthFaces' gender learnable but not trivial, and are eyeglasses and grayscale obvious?

docs/design.md §3 asks for a small CNN trained on balanced data to reach roughly 85-93 % test accuracy on
Male while Eyeglasses and grayscale-vs-colour are near perfect (>= 98 %). This script checks that
with a real training run on the generated JPEGs: 64x64 inputs from the reference face crop
(rows 57..185, cols 25..153), a four-block CNN in plain torch, training sets balanced on the label.

    .venv/bin/python bench/synthfaces_learnability.py --n-faces 24000 --epochs 5

Prints one line per task and a final JSON summary; exits 1 if a figure is outside its band.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facebias.data.synthfaces import generate
from facebias.faces.geometry import CROP_BOTTOM, CROP_LEFT, CROP_RIGHT, CROP_TOP

BANDS = {"Male": (0.85, 0.93), "Eyeglasses": (0.98, 1.0), "grayscale": (0.98, 1.0)}


def read_table(root: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Names, attribute names, (n, A) 0/1 attributes and (n,) split, from the CelebA-layout files."""
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    attr_names = lines[1].split()
    rows = [line.split() for line in lines[2:] if line.strip()]
    names = [r[0] for r in rows]
    attrs = (np.array([[int(v) for v in r[1:]] for r in rows]) > 0).astype(np.int64)
    split_map = dict(line.split() for line in (root / "list_eval_partition.txt").read_text().splitlines())
    split = np.array([int(split_map[n]) for n in names])
    return names, attr_names, attrs, split


def load_crops(root: Path, names: list[str], size: int) -> torch.Tensor:
    """(n, 3, size, size) uint8 face crops, as the training pipeline sees them."""
    from PIL import Image

    out = np.empty((len(names), size, size, 3), dtype=np.uint8)
    for i, name in enumerate(names):
        with Image.open(root / "img_align_celeba" / name) as im:
            crop = im.convert("RGB").crop((CROP_LEFT, CROP_TOP, CROP_RIGHT, CROP_BOTTOM))
            out[i] = np.asarray(crop.resize((size, size), Image.BILINEAR, reducing_gap=2.0))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def small_cnn() -> nn.Module:
    """Five conv-BN-ReLU layers (stride-2 stem), global pooling, one logit: ~15 M MACs at 64x64."""

    def cbr(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *cbr(3, 24, 2), *cbr(24, 32), nn.MaxPool2d(2), *cbr(32, 64), nn.MaxPool2d(2), *cbr(64, 128),
        nn.MaxPool2d(2), *cbr(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, 1),
    )  # fmt: skip


def balanced(idx: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Equal numbers of label 0 and 1 among idx (the majority class subsampled)."""
    pos, neg = idx[y[idx] == 1], idx[y[idx] == 0]
    k = min(len(pos), len(neg))
    return np.sort(np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, k, replace=False)]))


def to_gray(x: torch.Tensor) -> torch.Tensor:
    g = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return g[:, None].expand_as(x)


def run_task(name: str, images: torch.Tensor, y: np.ndarray, split: np.ndarray, epochs: int, seed: int,
             gray: np.ndarray | None = None, max_train: int | None = None) -> float:  # fmt: skip
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train = balanced(np.flatnonzero(split == 0), y, rng)
    if max_train is not None and len(train) > max_train:  # still balanced: half of each class
        train = np.sort(np.concatenate([rng.choice(train[y[train] == c], max_train // 2, replace=False) for c in (0, 1)]))
    test = balanced(np.flatnonzero(split == 2), y, rng)
    model = small_cnn().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(train) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    labels = torch.from_numpy(y).float()
    gray_t = None if gray is None else torch.from_numpy(gray)

    def batch(idx: np.ndarray, augment: bool) -> torch.Tensor:
        x = images[idx].float() / 255.0
        if gray_t is not None:
            g = gray_t[idx][:, None, None, None]
            x = torch.where(g, to_gray(x), x)
        if augment:
            flip = torch.rand(len(idx)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return ((x - 0.5) / 0.25).contiguous(memory_format=torch.channels_last)

    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(train)
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            loss = nn.functional.binary_cross_entropy_with_logits(model(batch(idx, True)).squeeze(1), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(model, test, labels, batch)
        print(f"  {name}: epoch {epoch + 1}/{epochs} test acc {acc:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    print(f"{name}: train {len(train)} test {len(test)} (balanced) -> test accuracy {acc:.4f}", flush=True)
    return acc


@torch.no_grad()
def evaluate(model: nn.Module, idx: np.ndarray, labels: torch.Tensor, batch) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(idx), 512):
        part = idx[i : i + 512]
        pred = model(batch(part, False)).squeeze(1) > 0
        correct += int((pred == (labels[part] > 0.5)).sum())
    return correct / len(idx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data", help="where SynthFaces is generated/cached")
    ap.add_argument("--n-faces", type=int, default=24000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5, help="epochs for Male")
    ap.add_argument("--easy-epochs", type=int, default=2, help="epochs for Eyeglasses and grayscale")
    ap.add_argument("--easy-max-train", type=int, default=8000, help="training images for the easy tasks")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--tasks", default="Male,Eyeglasses,grayscale")
    ap.add_argument("--male-cue-angle", type=float, default=None, help="override the renderer option")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    options = {} if args.male_cue_angle is None else {"male_cue_angle": args.male_cue_angle}
    t0 = time.perf_counter()
    root = generate(args.data_dir, n_faces=args.n_faces, seed=args.seed, **options)
    names, attr_names, attrs, split = read_table(root)
    images = load_crops(root, names, args.size)
    print(f"data: {root} ({len(names)} faces, loaded in {time.perf_counter() - t0:.0f}s)", flush=True)
    results = {}
    for task in args.tasks.split(","):
        if task == "grayscale":
            gray = np.random.default_rng(args.seed + 1).random(len(names)) < 0.5
            results[task] = run_task(task, images, gray.astype(np.int64), split, args.easy_epochs, args.seed, gray,
                                     max_train=args.easy_max_train)
        elif task == "Male":
            results[task] = run_task(task, images, attrs[:, attr_names.index(task)], split, args.epochs, args.seed)
        else:
            results[task] = run_task(task, images, attrs[:, attr_names.index(task)], split, args.easy_epochs,
                                     args.seed, max_train=args.easy_max_train)
    ok = all(BANDS[k][0] <= v <= BANDS[k][1] for k, v in results.items() if k in BANDS)
    print(json.dumps({"root": str(root), "epochs": args.epochs, "accuracy": results, "within_bands": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
