#!/usr/bin/env bash
# What a session with a lent GPU runs (README "Benchmarks"): the GPU check (issue 9), then the `gan` experiment's
# known answers (issue 11): a Male+Eyeglasses quality classifier and the GAN on all 24,000 SynthFaces, trained for
# whatever time is left of BUDGET seconds (Lightning's max_time; the experiment's 20 epochs took 153 s on an
# H100), then the GAN throughput bench. Needs facebias's requirements (wandb is not needed: logger=none).
#   bash scripts/gpu_session.sh                # OUT=outputs/gpu_session, BUDGET=560 s
# TINY=1 runs the same commands at toy sizes on any CPU (a check of this script).
# GAN_ARGS: more overrides for the GAN, e.g. the untried remedy for its Male-rate shortfall (README "A face GAN"):
#   GAN_ARGS="trainer.max_epochs=60 model.g_width=64 model.d_width=64" bash scripts/gpu_session.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 WANDB_MODE=disabled
OUT=${OUT:-outputs/gpu_session}; mkdir -p "$OUT"
PY=${PY:-python3}
DATA=${DATA:-/tmp/facebias_gpu_data}
RUNS=${RUNS:-$OUT/runs}
nvidia-smi -L 2>/dev/null
Q="callbacks.progress_bar=null +trainer.enable_progress_bar=false logger=none paths.data_dir=$DATA +data.synth.workers=${WORKERS:-16} data.progress=false"
if [ "${TINY:-0}" = 1 ]; then
  CHECK="--quick"; CLF_SIZE="data.synth.n_faces=1200 model.backbone=small_cnn data.image_size=32 trainer.max_epochs=1"
  GAN_SIZE="data.synth.n_faces=1200 data.image_size=16 model.g_width=16 model.d_width=16 model.quality.n_samples=120"
  GAN_BENCH="--size 16 --g-width 16 --d-width 16 --faces 1200 --steps 3 --warmup 1"; BUDGET=${BUDGET:-200}
else
  CHECK=""; CLF_SIZE=""; GAN_SIZE=""; GAN_BENCH="--steps 100 --warmup 10 --faces 12000 --repeats 2"; BUDGET=${BUDGET:-560}
fi
timeout 330 $PY bench/gpu_check.py $CHECK --json "$OUT/gpu_check.json" --data-dir "$DATA" > "$OUT/gpu_check.log" 2>&1
echo "gpu_check rc=$? at ${SECONDS}s"; grep "^\[\|^total" "$OUT/gpu_check.log"
timeout 150 $PY train.py exp_name=quality_clf 'data.targets=[Male,Eyeglasses]' $CLF_SIZE $Q hydra.run.dir=$RUNS/quality_clf \
  > "$OUT/quality_clf.log" 2>&1
echo "quality_clf rc=$? at ${SECONDS}s"
LEFT=$((BUDGET - SECONDS - 120))   # the final quality pass, the bench and packing after fit stops
[ $LEFT -lt 30 ] && LEFT=30
timeout $((LEFT + 120)) $PY train.py +experiment=gan model.quality.classifier_run=$RUNS/quality_clf trainer.precision=32-true \
  "+trainer.max_time={seconds:$LEFT}" $GAN_SIZE ${GAN_ARGS:-} $Q hydra.run.dir=$RUNS/gan > "$OUT/gan.log" 2>&1
echo "gan rc=$? at ${SECONDS}s (max_time ${LEFT}s)"; grep "GAN quality (best" "$OUT/gan.log"
timeout 90 $PY bench/bench_gan.py $GAN_BENCH --data-dir "$DATA/gan_bench" > "$OUT/bench_gan.log" 2>&1
echo "bench_gan rc=$? at ${SECONDS}s"; grep "pipeline/ceiling" "$OUT/bench_gan.log"
tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude=wandb -C "$RUNS" . && echo "done at ${SECONDS}s"
