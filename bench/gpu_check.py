"""The GPU check: three figures, each printed beside a ceiling measured in the same run (at most 5 min on one GPU).

(a) throughput: resnet50 training at 224 px, bf16 autocast, channels_last, fed by the project's pipeline
    (Lightning fit over FaceDataModule: SynthFaces -> uint8 memmap cache -> one slice per batch -> uint8 to
    float on the device), against the same model on random tensors already on the device (bench/_common.py,
    shared with bench_train_throughput.py);
(b) end to end: `train.py +experiment=p80 model=resnet50 data.image_size=224 trainer.max_epochs=1 logger=none`
    as a subprocess on the data (a) generated and cached: wall time, training images per second of the whole
    run, test accuracy from its metrics.json; the ceiling beside it is (a)'s in-memory figure;
(c) the metrics bootstrap: `fairness_report` with 500 resamples of 20,000 samples, against the per-resample
    loop of bench_metrics.py in the same run. Both on the CPU, one thread: the metrics are numpy and have no
    GPU path.

    python bench/gpu_check.py [--json gpu_check.json] [--data-dir DIR]   # on the GPU machine
    python bench/gpu_check.py --quick                                    # same code, tiny sizes: any CPU, < 1 min
    python bench/gpu_check.py --profile DIR                              # (a)'s pipeline once more, profiled

--profile: after (a), the same Lightning fit under Lightning's SimpleProfiler (host time of each hook per step,
printed beside the GPU time a step takes at (a)'s ceiling: a host-bound step shows up as host time above it) and
under its PyTorchProfiler (operator table, CPU and CUDA time); both text reports go to DIR. About 30 s more.

--quick runs small_cnn at 32 px on 1,200 faces (train.py still composes `model=resnet50`, then swaps the backbone), a few batches, and a 2,000-sample bootstrap; it checks that the
script works, its numbers mean nothing. A section that fails prints its error, the others still run, and the
exit status is 1. Without --data-dir the data live in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _common import ceiling, describe_environment, environment, pipeline, synth_datamodule  # noqa: E402

BUDGET_S = 300  # the whole check, on one GPU
LABELS = {"throughput": "a", "profile": "profile", "end_to_end": "b", "metrics_bootstrap": "c"}


@dataclass(frozen=True)
class Sizes:
    backbone: str
    size: int
    faces: int
    batch: int
    warmup: int
    steps: int
    boot_n: int
    boot_resamples: int


FULL = Sizes(backbone="resnet50", size=224, faces=24000, batch=64, warmup=10, steps=50, boot_n=20000,
             boot_resamples=500)
QUICK = Sizes(backbone="small_cnn", size=32, faces=1200, batch=32, warmup=2, steps=3, boot_n=2000, boot_resamples=50)


def say(line: str = "") -> None:
    print(line, flush=True)


def throughput(sizes: Sizes, data_dir: Path, device: str) -> dict[str, Any]:
    """(a): pipeline vs in-memory tensors, bf16 autocast and channels_last in both."""
    from facebias.models.backbones import build_backbone

    workers = 0 if sizes is QUICK else min(16, os.cpu_count() or 2)  # generation only (not part of the data's key)
    start = time.perf_counter()
    dm = synth_datamodule(data_dir, sizes.faces, sizes.size, sizes.batch, workers=workers,
                          sweep=[50, 60, 70, 80, 90, 100])  # the experiments' sweep: train.py's splits
    setup_s = time.perf_counter() - start
    best = ceiling(build_backbone(sizes.backbone, 1), sizes.batch, sizes.size, sizes.steps, device, bf16=True,
                   channels_last=True, warmup=sizes.warmup)
    ours = pipeline(dm, sizes.backbone, sizes.steps, device, bf16=True, channels_last=True, warmup=sizes.warmup)
    result = {"backbone": sizes.backbone, "size": sizes.size, "batch": sizes.batch, "warmup": sizes.warmup,
              "steps": sizes.steps, "precision": "bf16 autocast", "channels_last": True, "faces": sizes.faces,
              "data_setup_s": round(setup_s, 1), "pipeline_img_s": round(ours, 1), "ceiling_img_s": round(best, 1),
              "ratio": round(ours / best, 3)}
    say(f"[a] throughput {sizes.backbone} {sizes.size}px bf16 channels_last batch {sizes.batch}: "
        f"pipeline {ours:.1f} img/s | ceiling {best:.1f} img/s | ratio {ours / best:.3f} (target >= 0.9)")
    say(f"    pipeline: Lightning fit of AttributeClassifier over FaceDataModule (SynthFaces, {sizes.faces} faces, "
        f"p80, uint8 memmap cache at {sizes.size} px, num_workers=0), precision=bf16-mixed, "
        f"{sizes.steps} batches timed after {sizes.warmup}")
    say(f"    ceiling: the same backbone, forward+backward+Adam on random tensors already on {device}, "
        f"torch.autocast bf16; same run. Data generation + cache: {setup_s:.1f} s")
    return result


# the Lightning actions that make up a training step's host time: label -> the end of SimpleProfiler's action name
# (optimizer_step runs the closure: forward and backward are inside it; run_training_batch is the whole step)
HOST_ACTIONS = {"next batch": ".train_dataloader_next", "to device": "Strategy.batch_to_device",
                "forward (training_step)": "Strategy.training_step", "backward": "Strategy.backward",
                "optimizer_step incl. closure": ".optimizer_step", "whole batch": "run_training_batch"}


def profile(sizes: Sizes, data_dir: Path, device: str, out: Path, ceiling_img_s: float | None) -> dict[str, Any]:
    """(a)'s pipeline again under Lightning's profilers: where each step's host time goes, and the operator table."""
    from pytorch_lightning.profilers import PyTorchProfiler, SimpleProfiler

    out.mkdir(parents=True, exist_ok=True)
    dm = synth_datamodule(data_dir, sizes.faces, sizes.size, sizes.batch, workers=0, sweep=[50, 60, 70, 80, 90, 100])
    simple = SimpleProfiler(dirpath=out, filename="simple")
    pipeline(dm, sizes.backbone, sizes.steps, device, bf16=True, channels_last=True, warmup=sizes.warmup,
             profiler=simple)
    host_ms = {}
    for label, key in HOST_ACTIONS.items():
        durations = [d for action, ds in simple.recorded_durations.items() if action.endswith(key) for d in ds]
        timed = durations[sizes.warmup:] or durations  # after warm-up where there are enough steps
        if timed:
            host_ms[label] = round(1000 * sum(timed) / len(timed), 2)
    gpu_ms = round(1000 * sizes.batch / ceiling_img_s, 2) if ceiling_img_s else None
    torch_profiler = PyTorchProfiler(dirpath=out, filename="torch", export_to_chrome=False, row_limit=40,
                                     sort_by_key="cuda_time_total" if device == "cuda" else "cpu_time_total")
    pipeline(dm, sizes.backbone, min(sizes.steps, 10), device, bf16=True, channels_last=True,
             warmup=min(sizes.warmup, 3), profiler=torch_profiler)
    parts = " | ".join(f"{label} {ms:.2f}" for label, ms in host_ms.items())
    say(f"[profile] host ms per step (SimpleProfiler, mean after warm-up): {parts} | a step at (a)'s ceiling: "
        f"{gpu_ms if gpu_ms is not None else 'n/a'} ms; reports in {out}")
    return {"host_ms_per_step": host_ms, "ceiling_ms_per_step": gpu_ms, "reports": sorted(p.name for p in out.iterdir())}


def end_to_end(sizes: Sizes, data_dir: Path, work: Path, ceiling_img_s: float | None, timeout: int
               ) -> dict[str, Any]:
    """(b): train.py for one epoch in a subprocess; its metrics.json gives n_train, seconds and test accuracy."""
    run_dir = work / "train_run"
    model = ["model=resnet50", *([] if sizes.backbone == "resnet50" else [f"model.backbone={sizes.backbone}"])]
    overrides = ["+experiment=p80", *model, f"data.image_size={sizes.size}", "trainer.max_epochs=1",
                 "logger=none", f"data.synth.n_faces={sizes.faces}", f"paths.data_dir={data_dir}",
                 f"hydra.run.dir={run_dir}", "data.progress=false", "callbacks.progress_bar=null",
                 "+trainer.enable_progress_bar=false"]
    cmd = [sys.executable, str(REPO / "train.py"), *overrides]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"train.py exited {proc.returncode} after {wall:.1f} s:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_train, seconds = metrics["data"]["n_train"], metrics["seconds"]
    img_s = n_train / seconds
    test = metrics["test"]
    result = {"command": " ".join(["train.py", *overrides]), "wall_s": round(wall, 1), "train_s": seconds,
              "n_train": n_train, "img_s": round(img_s, 1), "ceiling_img_s": ceiling_img_s,
              "ratio": round(img_s / ceiling_img_s, 3) if ceiling_img_s else None,
              "test_acc": test["acc"], "test_AP": test["AP"], "test_gap": metrics["test_gap"].get("gap")}
    beside = (f"ceiling {ceiling_img_s:.1f} img/s from (a) | ratio {img_s / ceiling_img_s:.3f}" if ceiling_img_s
              else "ceiling n/a ((a) failed)")
    say(f"[b] train.py end to end, 1 epoch: wall {wall:.1f} s | train() {seconds:.1f} s | {n_train} train images "
        f"-> {img_s:.1f} img/s over the run | {beside} | test acc {test['acc']:.4f} AP {test['AP']:.4f} "
        f"gap {result['test_gap']}")
    say(f"    from {run_dir / 'metrics.json'}: `seconds` (train(): setup, fit with validation, final val/test "
        f"scoring), data.n_train, test.acc at threshold 0.5; wall includes Python/torch start-up. Command: "
        f"python {result['command']}")
    return result


def bootstrap(sizes: Sizes) -> dict[str, Any]:
    """(c): fairness_report's vectorised bootstrap vs bench_metrics.py's per-resample loop, one thread each."""
    import warnings

    from threadpoolctl import threadpool_limits

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        from bench_metrics import looped_report, planted_split  # it sets the thread variables on import
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    from facebias.metrics import calibrated_threshold, fairness_report

    n, resamples = sizes.boot_n, sizes.boot_resamples
    val_scores, val_targets, _ = planted_split(n, seed=1)
    scores, targets, protected = planted_split(n, seed=0)
    threshold = calibrated_threshold(val_scores, val_targets)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fairness_report(scores[:500], targets[:500], protected[:500], threshold, n_bootstrap=2)  # warm-up
        start = time.perf_counter()
        fairness_report(scores, targets, protected, threshold, n_bootstrap=resamples, seed=0)
        fast = time.perf_counter() - start
        start = time.perf_counter()
        looped_report(scores, targets, protected, threshold, resamples, 0)
        slow = time.perf_counter() - start
    say(f"[c] metrics bootstrap {resamples} resamples x {n} samples: fairness_report {fast:.3f} s | "
        f"per-resample loop {slow:.3f} s | {slow / fast:.1f}x faster (target < 2 s)")
    say("    both on the CPU, one thread (threadpoolctl), planted split of bench/bench_metrics.py; "
        "facebias.metrics is numpy: no GPU path")
    return {"n": n, "resamples": resamples, "fairness_report_s": round(fast, 3), "loop_s": round(slow, 3),
            "speedup": round(slow / fast, 1), "where": "cpu, 1 thread"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script on any CPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="SynthFaces and the image cache (kept; default: a temporary directory, removed)")
    parser.add_argument("--timeout", type=int, default=BUDGET_S, help="seconds allowed to (b)'s train.py")
    parser.add_argument("--profile", type=Path, default=None,
                        help="after (a), profile its pipeline once more; the text reports go to this directory")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.set_float32_matmul_precision("high")  # as train.py does
    elif args.quick:  # one thread: on a shared CPU, OpenMP threads waiting on each other cost ~10x
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and train.py's too
    info = environment()
    say(f"gpu_check ({'quick' if args.quick else 'full'}): {describe_environment(info)}")
    if device == "cpu" and not args.quick:
        say("warning: no GPU: the full sizes take far longer than 5 minutes on a CPU (use --quick)")
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", "sizes": asdict(sizes),
                              "environment": info, "errors": {}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or work / "data"
        sections = [("throughput", lambda: throughput(sizes, data_dir, device)),
                    *([("profile", lambda: profile(sizes, data_dir, device, args.profile,
                                                   report.get("throughput", {}).get("ceiling_img_s")))]
                      if args.profile else []),
                    ("end_to_end", lambda: end_to_end(sizes, data_dir, work, report.get("throughput", {})
                                                      .get("ceiling_img_s"), args.timeout)),
                    ("metrics_bootstrap", lambda: bootstrap(sizes))]
        for name, run in sections:
            try:
                report[name] = run()
            except Exception as error:  # report it and go on: a GPU hour is too scarce to stop at the first fault
                report["errors"][name] = f"{type(error).__name__}: {error}"
                say(f"[{LABELS[name]}] {name} FAILED: {type(error).__name__}: {error}")
                traceback.print_exc()
    total = time.perf_counter() - started
    report["total_s"] = round(total, 1)
    say(f"total {total:.1f} s (budget {BUDGET_S} s on one GPU){'' if total <= BUDGET_S else ' -- OVER BUDGET'}; "
        f"{len(report['errors'])} section(s) failed")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        say(f"figures written to {args.json}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
