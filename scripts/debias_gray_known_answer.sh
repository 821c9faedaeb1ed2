#!/usr/bin/env bash
# The grayscale family de-biased with a GAN (issue 10; README "De-biasing", grayscale): grayscale is not a latent
# attribute of the SynthFaces renderer, so the generator is a GAN trained on the P = 80 grayscale training set
# (gan_gray_p80) and f_g is the pixel rule (channel spread, tolerance calibrated on the GAN's faces). Three arms at
# the experiments' default scale (resnet18, 64 px, 4 epochs, 10,000 fitting latents), the same real data, epochs
# and seed: real only (gray_p80, also f_t), control (real + G(z)) and de-biased (real + G(z) + G(z')); then one
# evaluation table. GAN=<dir> names an existing gan_gray_p80 run (default outputs/train/gan_gray_p80, trained
# here for GAN_EPOCHS=20 if absent, with outputs/train/quality_clf as its quality classifier when present);
# GAN_CKPT=best|last picks its checkpoint (default best, by classifier-FID).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUIET="callbacks.progress_bar=null +trainer.enable_progress_bar=false"
GAN=${GAN:-outputs/train/gan_gray_p80}
CLF=outputs/train/quality_clf
if [ ! -f $GAN/metrics.json ]; then
  QUALITY=$([ -f $CLF/metrics.json ] && echo model.quality.classifier_run=$CLF || true)
  $PY train.py +experiment=gan_gray_p80 trainer.max_epochs=${GAN_EPOCHS:-20} $QUALITY $QUIET hydra.run.dir=$GAN
fi
[ -d multirun/train/debias_gray_base ] || $PY train.py -m +experiment=gray_p80 $QUIET hydra.sweep.dir=multirun/train/debias_gray_base
base=$(ls -d multirun/train/debias_gray_base/*_gray_p80)
$PY train.py -m +experiment=debias_gray_p80 debias.arm=control,debiased debias.target_run=$base \
    debias.generator.run=$GAN debias.generator.checkpoint=${GAN_CKPT:-best} $QUIET \
    hydra.sweep.dir=multirun/train/debias_gray_arms_p80
$PY evaluate.py "sweep=[multirun/train/debias_gray_base,multirun/train/debias_gray_arms_p80]" \
    hydra.run.dir=outputs/evaluate/debias_gray_known_answer
