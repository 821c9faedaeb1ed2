#!/usr/bin/env bash
# What a session with a lent GPU runs (README "Benchmarks", "A face GAN"): the GPU check (issue 9), then the `gan`
# experiment's known answers (issue 11): a Male+Eyeglasses quality classifier and the GAN on all 24,000 SynthFaces,
# trained for whatever time is left of BUDGET seconds (Lightning's max_time), then (BENCH=1) the GAN throughput bench.
# The GAN's EMA weights (best and last checkpoints) are written to $OUT in two halves each, so that every file stays
# under a device tool's 16 MiB per file; `python scripts/gan_halves.py join $OUT <run dir>` rebuilds the run dir here.
# Needs facebias's requirements (wandb is not needed: logger=none).
#   bash scripts/gpu_session.sh                # OUT=outputs/gpu_session, BUDGET=560 s, the experiment's defaults
# What made the README's `gan_w64` figures (39 epochs at widths 64 in 298 s on an H100; 505 s for the whole script):
#   BENCH=0 BUDGET=550 GAN_ARGS="model.g_width=64 model.d_width=64 trainer.max_epochs=200" bash scripts/gpu_session.sh
# TINY=1 runs the same commands at toy sizes on any CPU (a check of this script).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 WANDB_MODE=disabled
OUT=${OUT:-outputs/gpu_session}; mkdir -p "$OUT"
PY=${PY:-python3}
DATA=${DATA:-/tmp/facebias_gpu_data}
RUNS=${RUNS:-/tmp/facebias_gpu_runs}; LOGS=$RUNS/logs; mkdir -p "$LOGS"   # outside OUT: only the archive comes back
nvidia-smi -L 2>/dev/null
Q="callbacks.progress_bar=null +trainer.enable_progress_bar=false logger=none paths.data_dir=$DATA +data.synth.workers=${WORKERS:-16} data.progress=false"
if [ "${TINY:-0}" = 1 ]; then
  CHECK="--quick"; CLF_SIZE="data.synth.n_faces=1200 model.backbone=small_cnn data.image_size=32 trainer.max_epochs=1"
  GAN_SIZE="data.synth.n_faces=1200 data.image_size=16 model.g_width=16 model.d_width=16 model.quality.n_samples=120 model.quality.n_final=300"
  GAN_BENCH="--size 16 --g-width 16 --d-width 16 --faces 1200 --steps 3 --warmup 1"; BUDGET=${BUDGET:-200}
else
  CHECK=""; CLF_SIZE=""; GAN_SIZE=""; GAN_BENCH="--steps 100 --warmup 10 --faces 12000 --repeats 2"; BUDGET=${BUDGET:-560}
fi
timeout 240 $PY bench/gpu_check.py $CHECK --json "$OUT/gpu_check.json" --data-dir "$DATA" --profile "$RUNS/profile" \
  > "$LOGS/gpu_check.log" 2>&1
echo "gpu_check rc=$? at ${SECONDS}s"; grep "^\[\|^total" "$LOGS/gpu_check.log"
timeout 150 $PY train.py exp_name=quality_clf 'data.targets=[Male,Eyeglasses]' $CLF_SIZE $Q hydra.run.dir=$RUNS/quality_clf \
  > "$LOGS/quality_clf.log" 2>&1
echo "quality_clf rc=$? at ${SECONDS}s"
RESERVE=70; [ "${BENCH:-1}" = 1 ] && RESERVE=160   # after fit stops: the final quality pass, packing (and the bench)
LEFT=$((BUDGET - SECONDS - RESERVE)); [ $LEFT -lt 30 ] && LEFT=30
timeout $((LEFT + 100)) $PY train.py +experiment=gan model.quality.classifier_run=$RUNS/quality_clf \
  "+trainer.max_time={seconds:$LEFT}" $GAN_SIZE ${GAN_ARGS:-} $Q hydra.run.dir=$RUNS/gan > "$LOGS/gan.log" 2>&1
echo "gan rc=$? at ${SECONDS}s (max_time ${LEFT}s)"; grep "GAN quality (best" "$LOGS/gan.log"
$PY scripts/gan_halves.py split "$RUNS/gan/checkpoints" "$OUT"
if [ "${BENCH:-1}" = 1 ]; then
  timeout 90 $PY bench/bench_gan.py $GAN_BENCH --data-dir "$DATA/gan_bench" > "$LOGS/bench_gan.log" 2>&1
  echo "bench_gan rc=$? at ${SECONDS}s"; grep "pipeline/ceiling" "$LOGS/bench_gan.log"
fi
# every 10th epoch's sample grid, the last one and best.png
find "$RUNS/gan/samples" -name 'epoch_*.png' ! -name 'epoch_*0.png' 2>/dev/null | sort | head -n -1 | xargs -r rm -f
tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude=wandb -C "$RUNS" . && echo "done at ${SECONDS}s"
