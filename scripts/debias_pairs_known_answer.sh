#!/usr/bin/env bash
# debias.pairs=all vs agreed, renderer vs the widths-64 GAN, P = 80 (README "De-biasing with this GAN"), at the
# reduced scale of scripts/debias_known_answer.sh (whose baseline run is f_t; run it first), one training seed:
#   SEED=1 bash scripts/debias_pairs_known_answer.sh     # multirun/train/debias_pairs_seed1/...
# Seed 0 of every arm: scripts/debias_known_answer.sh, scripts/gan_known_answer.sh with GAN=outputs/train/gan_w64
# TAG=_w64 [PAIRS=agreed TAG=_w64_agreed], and the renderer's agreed arms (the first command below with SEED=0).
# The augmented sets do not depend on the training seed (debias.seed stays 0), so they are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEED=${SEED:-1}
COMMON="model.backbone=small_cnn data.image_size=32 trainer.max_epochs=3 trainer.cpu_bf16=false debias.n_fit=5000 seed=$SEED callbacks.progress_bar=null +trainer.enable_progress_bar=false"
base=$(ls -d multirun/train/debias_base/*_p80)
OUT=multirun/train/debias_pairs_seed$SEED
$PY train.py +experiment=p80 model.backbone=small_cnn data.image_size=32 trainer.max_epochs=3 trainer.cpu_bf16=false \
    seed=$SEED callbacks.progress_bar=null +trainer.enable_progress_bar=false hydra.run.dir=$OUT/baseline
$PY train.py -m +experiment=debias_p80 debias.arm=control,debiased debias.pairs=all,agreed debias.target_run=$base \
    $COMMON exp_name=debias_renderer_p80 hydra.sweep.dir=$OUT/renderer
$PY train.py -m +experiment=debias_p80 debias.arm=control,debiased debias.pairs=all,agreed debias.target_run=$base \
    debias.generator.kind=gan +debias.generator.run=outputs/train/gan_w64 $COMMON exp_name=debias_gan_w64_p80 \
    hydra.sweep.dir=$OUT/gan_w64
$PY evaluate.py "sweep=[$OUT/baseline,$OUT/renderer,$OUT/gan_w64]" hydra.run.dir=outputs/evaluate/debias_pairs_seed$SEED
