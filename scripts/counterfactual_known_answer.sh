#!/usr/bin/env bash
# The counterfactual-search known answers (issue 14; README "Counterfactual search"), at full scale on the
# committed eyeglasses sweep (resnet18, 64 px): raising the P = 100 model's Male logit must add eyeglasses in
# >= 80 % of searches (null <= 20 %), far fewer for the P = 50 model; lowering it must remove them. A separate
# Male + Eyeglasses classifier (outputs/train/quality_clf, made by scripts/gan_known_answer.sh) codes every search
# beside the renderer's true attributes, for the classifier-vs-truth agreement.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STARTS=${STARTS:-128}
CODER=outputs/train/quality_clf
[ -f $CODER/metrics.json ] || { echo "train the coder first: scripts/gan_known_answer.sh (its first step)"; exit 1; }
for P in 100 50; do
  run=$(ls -d multirun/train/eyeglasses_sweep/*_p$P)
  for DIR in raise lower; do
    $PY dissect.py analysis=counterfactual run=$run counterfactual.direction=$DIR counterfactual.starts=$STARTS \
        "counterfactual.coders=[$CODER]" hydra.run.dir=outputs/dissect/counterfactual_p${P}_$DIR
  done
done
