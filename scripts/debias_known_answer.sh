#!/usr/bin/env bash
# The latent de-biasing known answer (issue 10; README "De-biasing"): at P = 80 and 90, three arms trained
# with the same real data, epochs and seed: real only (p80/p90), control (real + G(z)) and debiased
# (real + G(z) + G(z')), then one evaluation table and figure over all six runs.
# SCALE=reduced (default) is what fits 2 CPU cores in about an hour: small_cnn at 32 px, 3 epochs, 5,000
# fitting latents. SCALE=full uses the experiments' defaults (resnet18, 64 px, 4 epochs, 10,000 latents).
# PS="80" runs one P only (default "80 90").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if [ "${SCALE:-reduced}" = full ]; then
  COMMON="callbacks.progress_bar=null +trainer.enable_progress_bar=false"; FIT=10000; TAG=_full
else
  COMMON="model.backbone=small_cnn data.image_size=32 trainer.max_epochs=3 trainer.cpu_bf16=false callbacks.progress_bar=null +trainer.enable_progress_bar=false"
  FIT=5000; TAG=""
fi
PS=${PS:-80 90}
$PY train.py -m "+experiment=$(echo $PS | sed 's/\([0-9]*\)/p\1/g; s/ /,/g')" $COMMON hydra.sweep.dir=multirun/train/debias${TAG}_base
for P in $PS; do
  base=$(ls -d multirun/train/debias${TAG}_base/*_p$P)
  # f_t is the baseline run itself (same data, model and seed); f_g is trained once and shared by both arms
  $PY train.py -m +experiment=debias_p$P debias.arm=control,debiased debias.target_run=$base debias.n_fit=$FIT \
      $COMMON hydra.sweep.dir=multirun/train/debias${TAG}_arms_p$P
done
ARMS=$(for P in $PS; do printf ',multirun/train/debias%s_arms_p%s' "$TAG" "$P"; done)
$PY evaluate.py "sweep=[multirun/train/debias${TAG}_base$ARMS]" \
    hydra.run.dir=outputs/evaluate/debias${TAG}_known_answer
