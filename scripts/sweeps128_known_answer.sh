#!/usr/bin/env bash
# The controlled experiments at 128 px (issue 12 item 4, issue 13's known answer; README "The known answer" and
# "Facial-region explanations"): both SynthFaces sweeps (P = 50…100, resnet18, 2 epochs, bf16 — the CPU
# default), then network dissection of all twelve runs (68-point dictionary, grayscale probe) and the
# region explanations at layer3 (8x8 maps at 128 px, where 64 px gives 4x4). About 1.5-2 h on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUIET="callbacks.progress_bar=null +trainer.enable_progress_bar=false"
EYE=multirun/train/eyeglasses_sweep_128
GRAY=multirun/train/grayscale_sweep_128
[ -d $EYE ] || $PY train.py -m '+experiment=glob(p*)' trainer.max_epochs=2 data.image_size=128 $QUIET hydra.sweep.dir=$EYE
[ -d $GRAY ] || $PY train.py -m '+experiment=glob(gray_*)' trainer.max_epochs=2 data.image_size=128 $QUIET hydra.sweep.dir=$GRAY
$PY dissect.py "sweep=[$EYE,$GRAY]" hydra.run.dir=outputs/dissect/sweep128
$PY dissect.py analysis=regions "sweep=[$EYE,$GRAY]" layer=layer3 hydra.run.dir=outputs/dissect/regions_sweep128
