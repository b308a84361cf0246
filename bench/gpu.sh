#!/usr/bin/env bash
# The CUDA measurements and checks of BENCHMARKS.md in one short run (issues #4 and #15).
#
#   bash bench/gpu.sh [FASHION_MNIST_DIR] [OUT_DIR]        # GPU_SH_BUDGET=540 seconds by default
#
# In order of what a device lease must not miss:
# 1. the machine (GPU, driver, torch);
# 2. the equivalence tests on CUDA: batched vs fit, CUDA graphs vs eager, bf16, the capturable
#    and compiled fused steps against the autograd step, fit's CUDA graphs;
# 3. issue #15: the step three ways (bench_step.py: autograd, fused, fused + compiled; TF32 and
#    bf16; the full grid x 10 epochs x 3 seeds; start-up; accuracy against full-precision fp32's
#    3-seed interval; a per-step profile of products against the rest; the first layer as one GEMM);
# 4. issue #15: bench_precision.py (the grid's group in TF32 and bf16, fit eager and with
#    fit(cuda_graphs=True)); process start-up to the first step
#    (bench_first_step.py); `mlplab train` 10 epochs;
# 5. bench_sweep.py on CUDA (issue #4: the full grid against the book-style loop, FP32 and TF32,
#    with a profile), the issue's CLI command end to end, then the whole test suite.
# Each step's output goes to OUT_DIR (default bench/gpu-out); a failing step does not stop the
# rest, and a step that would not finish inside GPU_SH_BUDGET is skipped (said in the output).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/fashion-mnist}
OUT=${2:-bench/gpu-out}
BUDGET=${GPU_SH_BUDGET:-540}
mkdir -p "$OUT"
export PYTHONPATH=src:bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PYTHON:-python3}
step() { echo; echo "=== $1 (at ${SECONDS} s)"; }
# fits EST: true when a step estimated at EST seconds still fits the budget; else says it is skipped
fits() {
  if (( SECONDS + $1 > BUDGET )); then echo "--- skipped: ${SECONDS} s + ~$1 s would pass GPU_SH_BUDGET=${BUDGET} s"; return 1; fi
}
left() { echo $(( BUDGET - SECONDS > 10 ? BUDGET - SECONDS : 10 )); }  # seconds a step may still take

step "machine" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$OUT/env.txt"
$PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/env.txt"
nproc | tee -a "$OUT/env.txt"

step "equivalence tests on CUDA"
fits 90 && MLPLAB_TEST_DEVICE=cuda timeout "$(left)" $PY -m pytest -q -p no:cacheprovider tests/test_sweep_batched.py \
  tests/test_precision.py tests/test_sweep_fused.py \
  "tests/test_train.py::test_cuda_graph_steps_of_fit_compute_what_eager_steps_compute" 2>&1 | tail -15 | tee "$OUT/tests_cuda.txt"

step "issue #15: the step three ways (autograd, fused, fused + compiled), TF32 and bf16, with a profile"
fits 180 && timeout "$(left)" $PY bench/bench_step.py --device cuda --tf32 --data-dir "$DATA" --cells 100 --epochs 10 \
  --seeds 3 --profile-steps 20 2>&1 | grep -v '^USDT' | tee "$OUT/step.md"

step "issue #15: fit in fp32 and bf16, eager and with CUDA graphs (the grid's accuracy is bench_step's)"
fits 60 && timeout "$(left)" $PY bench/bench_precision.py --device cuda --tf32 --data-dir "$DATA" --cells 100 --repeats 2 \
  --fit-epochs 10 --seeds 0 2>&1 | grep -v '^USDT' | tee "$OUT/precision.md"

step "issue #15: process start-up to the first step (fresh processes)"
fits 50 && timeout "$(left)" $PY bench/bench_first_step.py --device cuda --tf32 --data-dir "$DATA" --repeats 3 2>&1 | tee "$OUT/first_step.md"
fits 20 && timeout "$(left)" $PY bench/bench_first_step.py --device cuda --precision bf16 --data-dir "$DATA" --repeats 1 2>&1 | tee -a "$OUT/first_step.md"

step "issue #15: mlplab train --epochs 10 on CUDA (the chapter MLP), fp32 and bf16"
for precision in fp32 bf16; do
  fits 25 || continue
  rm -rf /tmp/mlplab-gpu-train
  /usr/bin/time -f "$precision: wall %e s" timeout "$(left)" $PY -m mlplab train --device cuda --epochs 10 --precision $precision \
    --data-dir "$DATA" --out /tmp/mlplab-gpu-train 2>&1 | tail -2 | tee -a "$OUT/train.txt"
  $PY -c "import json; h = json.load(open('/tmp/mlplab-gpu-train/history.json')); \
print('$precision: its 10 epochs', round(sum(r['seconds'] for r in h), 2), 's; final test accuracy', h[-1]['test_acc'])" \
    2>&1 | tee -a "$OUT/train.txt"
done

step "sweep vs book loop, FP32"
fits 60 && timeout "$(left)" $PY bench/bench_sweep.py --device cuda --data-dir "$DATA" --full-grid --book-cells 3 --fit-cells 2 2>&1 \
  | grep -v '^USDT' | tee "$OUT/sweep_fp32.md"

step "sweep, TF32, with a profile"
fits 40 && timeout "$(left)" $PY bench/bench_sweep.py --device cuda --data-dir "$DATA" --full-grid --tf32 --book-cells 1 --fit-cells 0 \
  --kernel-models 0 --profile 20 2>&1 | grep -v '^USDT' | tee "$OUT/sweep_tf32.md"

step "the issue's command: 100 cells x 3 seeds x 10 epochs, CLI end to end (TF32)"
if fits 40; then
  rm -rf /tmp/mlplab-gpu-sweep
  /usr/bin/time -f "wall %e s" timeout "$(left)" $PY -m mlplab sweep run --hidden 256,256 --epochs 10 --lr 0.5 --batch-size 256 \
    --optimizer sgd --init normal:0.01 --grid dropout1=0:0.9:0.1 --grid dropout2=0:0.9:0.1 --seeds 3 \
    --device cuda --tf32 --data-dir "$DATA" --out /tmp/mlplab-gpu-sweep 2>&1 | tail -4 | tee "$OUT/cli.txt"
  $PY -m mlplab sweep show /tmp/mlplab-gpu-sweep --sort final_test_acc 2>&1 | head -8 | tee -a "$OUT/cli.txt"
fi

step "whole test suite on this machine"
fits 60 && MLPLAB_DATA=$(dirname "$DATA") timeout "$(left)" $PY -m pytest -q -x -p no:cacheprovider tests 2>&1 | tail -15 \
  | tee "$OUT/tests_all.txt"
step "done"
