#!/usr/bin/env bash
# The counterfactual-search known answers (issue 14; README "Counterfactual search"), at full scale on the
# committed eyeglasses sweep (resnet18, 64 px): raising the P = 100 model's Male logit must add eyeglasses in
# >= 80 % of searches (null <= 20 %), far fewer for the P = 50 model; lowering it must remove them. A separate
# Male + Eyeglasses classifier (outputs/train/quality_clf, made by scripts/gan_known_answer.sh) codes every search
# beside the renderer's true attributes, for the classifier-vs-truth agreement.
# Settings (env): STARTS (128), K, SIGMA, STEPS, BUDGET (default: the analysis config's), SEED (0), RUNS (the
# model P and direction of each search, default "100:raise 100:lower 50:raise 50:lower"), TAG (output suffix).
# GENERATOR: a GAN run dir to search in its latent space instead of the SynthFaces renderer (no truth from z then:
# the classifiers code the searches).
# The README's confirmatory run: K=64 SIGMA=0.4 STEPS=10 BUDGET=14 SEED=1 RUNS="100:raise 100:lower 50:raise" TAG=_s04
# With the GAN: GENERATOR=outputs/train/gan SEED=1 RUNS="100:raise 50:raise" TAG=_gan
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STARTS=${STARTS:-128}
CODER=outputs/train/quality_clf
[ -f $CODER/metrics.json ] || { echo "train the coder first: scripts/gan_known_answer.sh (its first step)"; exit 1; }
SETTINGS="counterfactual.starts=$STARTS counterfactual.seed=${SEED:-0}"
for option in K:k SIGMA:sigma STEPS:steps BUDGET:budget; do
  name=${option%%:*}; value=${!name:-}
  if [ -n "$value" ]; then SETTINGS="$SETTINGS counterfactual.${option#*:}=$value"; fi
done
GEN=()
[ -z "${GENERATOR:-}" ] || GEN=("counterfactual.generator={kind: gan, run: $GENERATOR}")
for spec in ${RUNS:-100:raise 100:lower 50:raise 50:lower}; do
  P=${spec%%:*}; DIR=${spec#*:}
  run=$(ls -d multirun/train/eyeglasses_sweep/*_p$P)
  $PY dissect.py analysis=counterfactual run=$run counterfactual.direction=$DIR $SETTINGS "${GEN[@]}" \
      "counterfactual.coders=[$CODER]" hydra.run.dir=outputs/dissect/counterfactual_p${P}_$DIR${TAG:-}
done
