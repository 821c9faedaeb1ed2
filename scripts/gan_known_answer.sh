#!/usr/bin/env bash
# The GAN known answers (issue 11; README "A face GAN"): a Male+Eyeglasses classifier for the quality figures,
# the gan_p80 GAN (P(Eyeglasses | Male) must stay near 0.8, its latent SVMs must separate the attributes),
# then latent de-biasing at P = 80 with that GAN as the generator, at the same reduced scale as
# scripts/debias_known_answer.sh (whose baseline run it reuses as f_t), and one evaluation table over the
# baseline, the renderer's arms and the GAN's arms (fp32, as those were trained). GAN_EPOCHS overrides the experiment's epochs; ALL_GAN=1
# also trains the `gan` experiment (all 24,000 faces) for the rate and separability figures.
# GAN=<run dir> TAG=<suffix>: the de-biasing arms with another, already trained GAN (e.g. the H100's widths-64 `gan`:
#   GAN=outputs/train/gan_w64 TAG=_w64 bash scripts/gan_known_answer.sh), in multirun/train/debias_gan<TAG>_arms_p80.
# PAIRS=agreed trains both arms on the agreed pairs only (debias.pairs; README "De-biasing").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUIET="callbacks.progress_bar=null +trainer.enable_progress_bar=false"
CLF=outputs/train/quality_clf
[ -f $CLF/metrics.json ] || $PY train.py exp_name=quality_clf 'data.targets=[Male,Eyeglasses]' $QUIET hydra.run.dir=$CLF
EPOCHS=${GAN_EPOCHS:+trainer.max_epochs=$GAN_EPOCHS}
GAN=${GAN:-outputs/train/gan_p80}; TAG=${TAG:-}
[ -f $GAN/metrics.json ] || $PY train.py +experiment=gan_p80 model.quality.classifier_run=$CLF $EPOCHS $QUIET hydra.run.dir=$GAN
[ -d multirun/train/debias_base ] || { echo "run scripts/debias_known_answer.sh first (its baseline is f_t)"; exit 1; }
base=$(ls -d multirun/train/debias_base/*_p80)
$PY train.py -m +experiment=debias_p80 debias.arm=control,debiased debias.target_run=$base debias.n_fit=5000 ${PAIRS:+debias.pairs=$PAIRS} \
    debias.generator.kind=gan +debias.generator.run=$GAN exp_name=debias_gan${TAG}_p80 \
    model.backbone=small_cnn data.image_size=32 trainer.max_epochs=3 trainer.cpu_bf16=false $QUIET hydra.sweep.dir=multirun/train/debias_gan${TAG}_arms_p80
$PY evaluate.py "sweep=[multirun/train/debias_base,multirun/train/debias_arms_p80,multirun/train/debias_gan${TAG}_arms_p80]" \
    hydra.run.dir=outputs/evaluate/debias_gan${TAG}_known_answer
if [ "${ALL_GAN:-0}" = 1 ]; then
  [ -f outputs/train/gan/metrics.json ] || $PY train.py +experiment=gan model.quality.classifier_run=$CLF $EPOCHS $QUIET hydra.run.dir=outputs/train/gan
fi
