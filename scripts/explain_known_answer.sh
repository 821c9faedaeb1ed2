#!/usr/bin/env bash
# The region-explanation known answers (issue 13; README "Facial-region explanations"), at full scale:
# 1. the eyeglasses and grayscale sweeps explained at layer3 (eye-region score vs P: rises for eyeglasses,
#    rho >= 0.8 expected; no rise for grayscale), with the randomised-weights sanity check per model;
# 2. a Wearing_Hat classifier (resnet18, 64 px, 2 epochs, no planted bias) whose top region must be the
#    hat/crown ("hair") region.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUIET="callbacks.progress_bar=null +trainer.enable_progress_bar=false"
$PY dissect.py analysis=regions 'sweep=[multirun/train/eyeglasses_sweep,multirun/train/grayscale_sweep]' layer=layer3 \
    hydra.run.dir=outputs/dissect/regions_sweep
HAT=outputs/train/hat
[ -f $HAT/metrics.json ] || $PY train.py exp_name=hat 'data.targets=[Wearing_Hat]' trainer.max_epochs=2 $QUIET hydra.run.dir=$HAT
$PY dissect.py analysis=regions run=$HAT layer=layer3 hydra.run.dir=outputs/dissect/regions_hat
