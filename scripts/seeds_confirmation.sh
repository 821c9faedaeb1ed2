#!/usr/bin/env bash
# The pre-registered confirmation on fresh seeds (docs/preregistration_seeds.md; issues 12 and 13): the README's
# 64 px sweeps retrained with seed=3,4 (resnet18, 2 epochs, fp32), every 64 px run of seeds 0-4 dissected and
# explained (GradCAM, layer3), then every pre-registered criterion scored -> docs/seeds_confirmation*.
# Needs the seed 0 and seed 1-2 sweeps of the README (multirun/train/{eyeglasses,grayscale}_sweep{,_seeds}).
# About 70 min on 2 idle CPU cores (24 trainings of ~70 s, dissection ~20 s and explanation ~40 s per run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUIET="callbacks.progress_bar=null +trainer.enable_progress_bar=false"
EYE=multirun/train/eyeglasses_sweep_seeds34
GRAY=multirun/train/grayscale_sweep_seeds34
[ -d $EYE ] || $PY train.py -m '+experiment=glob(p*)' seed=3,4 trainer.max_epochs=2 trainer.cpu_bf16=false $QUIET \
    hydra.sweep.dir=$EYE
[ -d $GRAY ] || $PY train.py -m '+experiment=glob(gray_*)' seed=3,4 trainer.max_epochs=2 trainer.cpu_bf16=false $QUIET \
    hydra.sweep.dir=$GRAY
SWEEPS="multirun/train/eyeglasses_sweep,multirun/train/eyeglasses_sweep_seeds,$EYE"
SWEEPS="$SWEEPS,multirun/train/grayscale_sweep,multirun/train/grayscale_sweep_seeds,$GRAY"
$PY dissect.py "sweep=[$SWEEPS]" hydra.run.dir=outputs/dissect/sweep64_seeds04
$PY dissect.py analysis=regions "sweep=[$SWEEPS]" layer=layer3 hydra.run.dir=outputs/dissect/regions_seeds04
$PY scripts/seeds_confirmation.py outputs/dissect/sweep64_seeds04 outputs/dissect/regions_seeds04 \
    --out docs/seeds_confirmation
