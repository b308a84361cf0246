#!/usr/bin/env bash
# The CUDA measurements and checks of BENCHMARKS.md in one short run (issues #4 and #15).
#
#   bash bench/gpu.sh [FASHION_MNIST_DIR] [OUT_DIR]        # GPU_SH_BUDGET=540 seconds by default
#
# Set GPU_SH_BUDGET to the call's own limit less about 30 s when the lease has less time left than
# 600 s, and GPU_SH_FROM=N to start at run N (what a first call skipped, which it names).
# FASHION_MNIST_DIR defaults to the first of shared/data/fashion-mnist, ../shared/data/...,
# .data/fashion-mnist (an ignored folder a device call can carry) that holds the IDX files.
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
#    (bench_first_step.py); `mlplab train` 10 epochs (fp32, bf16, --cuda-graphs);
# 5. bench_sweep.py on CUDA (issue #4: the full grid against the book-style loop, FP32 and TF32,
#    with a profile), the issue's CLI command end to end (default step, then --fused --compiled),
#    then the whole test suite.
# Each step's output goes to OUT_DIR (default bench/gpu-out); a failing step does not stop the
# rest (its exit status is written after its output: 124 when it ran out of the budget), and a
# step that would not finish inside GPU_SH_BUDGET is skipped (said in the output).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-}
if [[ -z $DATA ]]; then
  for candidate in shared/data/fashion-mnist ../shared/data/fashion-mnist .data/fashion-mnist; do
    if compgen -G "$candidate/train-images-idx3-ubyte*" > /dev/null; then DATA=$candidate; break; fi
  done
fi
if [[ -z $DATA || ! -d $DATA ]]; then
  echo "gpu.sh: no Fashion-MNIST folder (looked in shared/data, ../shared/data, .data): pass FASHION_MNIST_DIR" >&2
  exit 2
fi
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
# run EST FILE CMD...: CMD within the time left, its output shown and appended to OUT/FILE as it
# comes (nothing is lost if the whole call is cut), then its exit status if it failed. Runs are
# numbered in order; GPU_SH_FROM=N starts at run N (a second call picks up what the first skipped)
RUN_INDEX=0
run() {
  local est=$1 file=$OUT/$2 rc
  shift 2
  RUN_INDEX=$((RUN_INDEX + 1))
  if (( RUN_INDEX < ${GPU_SH_FROM:-1} )); then echo "--- run $RUN_INDEX: skipped (GPU_SH_FROM=$GPU_SH_FROM)"; return 0; fi
  echo "--- run $RUN_INDEX: $*"
  fits "$est" || { echo "--- to run it and the rest: GPU_SH_FROM=$RUN_INDEX bash bench/gpu.sh"; return 0; }
  timeout "$(left)" "$@" 2>&1 | grep --line-buffered -v '^USDT' | tee -a "$file"
  rc=${PIPESTATUS[0]}
  if (( rc != 0 )); then
    echo "--- exit status $rc$( (( rc == 124 )) && echo ': stopped at GPU_SH_BUDGET')" | tee -a "$file"
  fi
}
cuda_train() {  # PRECISION [FLAGS]: mlplab train --epochs 10 on CUDA, its wall time, its epochs' own seconds
  local what="$*"
  rm -rf /tmp/mlplab-gpu-train
  /usr/bin/time -f "$what: wall %e s" $PY -m mlplab train --device cuda --epochs 10 --precision "$1" "${@:2}" \
    --data-dir "$DATA" --out /tmp/mlplab-gpu-train 2>&1 | tail -2
  $PY -c "import json; h = json.load(open('/tmp/mlplab-gpu-train/history.json')); \
print('$what: its 10 epochs', round(sum(r['seconds'] for r in h), 2), 's; final test accuracy', h[-1]['test_acc'])"
}
cli_sweep() {  # [FLAGS]: the issue's command end to end, then its table's head
  rm -rf /tmp/mlplab-gpu-sweep
  /usr/bin/time -f "${*:-default step}: wall %e s" $PY -m mlplab sweep run --hidden 256,256 --epochs 10 --lr 0.5 \
    --batch-size 256 --optimizer sgd --init normal:0.01 --grid dropout1=0:0.9:0.1 --grid dropout2=0:0.9:0.1 \
    --seeds 3 --device cuda --tf32 "$@" --data-dir "$DATA" --out /tmp/mlplab-gpu-sweep 2>&1 | tail -4
  $PY -m mlplab sweep show /tmp/mlplab-gpu-sweep --sort final_test_acc 2>&1 | head -8
}
export -f cuda_train cli_sweep
export DATA PY

step "machine" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$OUT/env.txt"
$PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/env.txt"
nproc | tee -a "$OUT/env.txt"
echo "data: $DATA; budget ${BUDGET} s" | tee -a "$OUT/env.txt"

step "equivalence tests on CUDA"
MLPLAB_TEST_DEVICE=cuda run 120 tests_cuda.txt $PY -m pytest -q -p no:cacheprovider tests/test_sweep_batched.py \
  tests/test_precision.py tests/test_sweep_fused.py \
  "tests/test_train.py::test_cuda_graph_steps_of_fit_compute_what_eager_steps_compute"

step "issue #15: the step three ways (autograd, fused, fused + compiled), TF32 and bf16, 3 seeds, with a profile"
run 180 step.md $PY bench/bench_step.py --device cuda --tf32 --data-dir "$DATA" --cells 100 --epochs 10 --seeds 3 \
  --profile-steps 20

step "issue #15: fit in fp32 and bf16, eager and with CUDA graphs (the grid's accuracy is bench_step's)"
run 60 precision.md $PY bench/bench_precision.py --device cuda --tf32 --data-dir "$DATA" --cells 100 --repeats 2 \
  --fit-epochs 10 --seeds 0

step "issue #15: process start-up to the first step (fresh processes)"
run 75 first_step.md $PY bench/bench_first_step.py --device cuda --tf32 --data-dir "$DATA" --repeats 3
run 30 first_step.md $PY bench/bench_first_step.py --device cuda --precision bf16 --data-dir "$DATA" --repeats 1

step "issue #15: mlplab train --epochs 10 on CUDA (the chapter MLP), fp32, bf16, fp32 with --cuda-graphs"
run 25 train.txt bash -c 'cuda_train fp32'
run 25 train.txt bash -c 'cuda_train bf16'
run 25 train.txt bash -c 'cuda_train fp32 --cuda-graphs'

step "sweep vs book loop, FP32"
run 60 sweep_fp32.md $PY bench/bench_sweep.py --device cuda --data-dir "$DATA" --full-grid --book-cells 3 --fit-cells 2

step "sweep, TF32, with a profile"
run 40 sweep_tf32.md $PY bench/bench_sweep.py --device cuda --data-dir "$DATA" --full-grid --tf32 --book-cells 1 \
  --fit-cells 0 --kernel-models 0 --profile 20

step "the issue's command: 100 cells x 3 seeds x 10 epochs, CLI end to end (TF32)"
run 40 cli.txt bash -c cli_sweep
run 40 cli.txt bash -c 'cli_sweep --fused --compiled'

step "whole test suite on this machine"
MLPLAB_DATA=$(dirname "$DATA") run 60 tests_all.txt $PY -m pytest -q -x -p no:cacheprovider tests
step "done"
