"""Carry a GAN run off a machine that returns files of at most 16 MiB (the lent GPU of `scripts/gpu_session.sh`):
    python scripts/gan_halves.py split <run>/checkpoints <out>     # on the GPU machine
    python scripts/gan_halves.py join <out> outputs/train/gan_w64  # here, from <out>/runs.tgz and the halves

Why: at widths 64 the EMA generator alone is ~15 MB, the whole checkpoint (both networks, optimisers) far more. `split`
writes each checkpoint's EMA generator in two halves of about equal size (gan_{best,last}_ema_{a,b}.ckpt); `join`
unpacks the run dir from runs.tgz (written without checkpoints) and joins the halves into checkpoints/{best,last}.ckpt,
which `generator.kind=gan generator.run=<dir>` and `scripts/gan_quality.py` load with weights_only=True.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch

from facebias.models.gan import EMA_PREFIX, NotAGanCheckpointError, ema_state_dict

CHECKPOINTS = ("best", "last")


def split(checkpoints: Path, out: Path) -> list[str]:
    """The EMA generator of each checkpoint in two halves (largest tensors dealt first to the lighter half)."""
    written = []
    for name in CHECKPOINTS:
        path = checkpoints / f"{name}.ckpt"
        if not path.is_file():
            continue
        data = torch.load(path, map_location="cpu", weights_only=True)
        try:  # kept under the prefix, so that the joined checkpoint loads as a FaceGAN run's
            ema = {EMA_PREFIX + k: v for k, v in ema_state_dict(data["state_dict"]).items()}
        except NotAGanCheckpointError as error:
            raise SystemExit(f"{path}: {error}") from None
        halves, sizes = ({}, {}), [0, 0]
        for key in sorted(ema, key=lambda k: -ema[k].numel()):
            lighter = sizes.index(min(sizes))
            halves[lighter][key], sizes[lighter] = ema[key], sizes[lighter] + ema[key].numel()
        for part, weights in zip("ab", halves, strict=True):
            torch.save({"state_dict": weights, "hyper_parameters": data.get("hyper_parameters", {}),
                        "epoch": data.get("epoch")}, out / f"gan_{name}_ema_{part}.ckpt")
        written.append(name)
        print(f"{name}.ckpt: epoch {data.get('epoch')}, halves of {sizes[0] * 4 / 2**20:.1f} and "
              f"{sizes[1] * 4 / 2**20:.1f} MiB (fp32)")
    if not written:
        raise SystemExit(f"no best.ckpt or last.ckpt in {checkpoints}")
    return written


def join_halves(first: Path, second: Path) -> dict:
    """One checkpoint from two halves; refuses halves of different checkpoints or overlapping halves."""
    a, b = (torch.load(path, map_location="cpu", weights_only=True) for path in (first, second))
    if a.get("epoch") != b.get("epoch") or a.get("hyper_parameters") != b.get("hyper_parameters"):
        raise SystemExit(f"{first} and {second} are halves of different checkpoints (epoch {a.get('epoch')} vs "
                         f"{b.get('epoch')}); copy both halves from the same session's OUT")
    if set(a["state_dict"]) & set(b["state_dict"]):
        raise SystemExit(f"{first} and {second} share tensors: not two halves of one generator")
    return {"state_dict": {**a["state_dict"], **b["state_dict"]}, "hyper_parameters": a["hyper_parameters"],
            "epoch": a["epoch"]}


def join(session_out: Path, run_dir: Path, run: str = "gan") -> None:
    """The run dir from runs.tgz plus the joined checkpoints, built under a temporary name, then renamed."""
    archive = session_out / "runs.tgz"
    if not archive.is_file():
        raise SystemExit(f"{archive} not found: pass the OUT folder of scripts/gpu_session.sh")
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists; choose a new run dir (nothing is overwritten)")
    names = [name for name in CHECKPOINTS if (session_out / f"gan_{name}_ema_a.ckpt").is_file()]
    if not names:
        raise SystemExit(f"no gan_best_ema_a.ckpt or gan_last_ema_a.ckpt in {session_out}")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        unpacked = work / run
        if not (unpacked / "run.json").is_file():
            raise SystemExit(f"{archive} holds no {run}/run.json: is it a gpu_session.sh archive? (--run names the "
                             "run's folder in it)")
        (unpacked / "checkpoints").mkdir(exist_ok=True)
        for name in names:
            joined = join_halves(session_out / f"gan_{name}_ema_a.ckpt", session_out / f"gan_{name}_ema_b.ckpt")
            torch.save(joined, unpacked / "checkpoints" / f"{name}.ckpt")
            print(f"{name}.ckpt: epoch {joined['epoch']}, {len(joined['state_dict'])} tensors")
        os.replace(unpacked, run_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"run dir: {run_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    split_parser = commands.add_parser("split", help="a run's checkpoints -> EMA halves in OUT")
    split_parser.add_argument("checkpoints", type=Path)
    split_parser.add_argument("out", type=Path)
    join_parser = commands.add_parser("join", help="OUT (runs.tgz + halves) -> a run dir")
    join_parser.add_argument("session_out", type=Path)
    join_parser.add_argument("run_dir", type=Path)
    join_parser.add_argument("--run", default="gan", help="the run's folder inside runs.tgz")
    args = parser.parse_args()
    if args.command == "split":
        args.out.mkdir(parents=True, exist_ok=True)
        split(args.checkpoints, args.out)
    else:
        join(args.session_out, args.run_dir, args.run)


if __name__ == "__main__":
    main()
