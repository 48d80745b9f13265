#!/usr/bin/env bash
# The whole Pascal-form numerics run on the lent GPU, in one call, from the repository root:
#   bash .gpu-carry/scripts/gpu/run_gpu_numerics.sh .gpu-carry
# CARRY is what scripts/gpu/prepare_gpu_carry.py built. Every run is its own process (two vLLM
# trees cannot share one), and they run side by side: compiling is CPU-bound and single-threaded.
# Writes $OUT/results.tgz (JSON reports and logs) and prints a summary. RUNS="name ..." runs only
# those of the runs below.
set -u
CARRY=$(realpath "$1")
OUT=${OUT:-/tmp/gpu-out}
WORK=/tmp/pascal-forge-gpu
mkdir -p "$OUT" "$WORK/reports"
GPU="$CARRY/scripts/gpu"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_LOGGING_LEVEL=WARNING

nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$WORK/reports/device.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, triton.__file__)' | tee -a "$WORK/reports/device.txt"

STOCK_TRITON=$(python3 -c 'import os, triton; print(os.path.dirname(triton.__file__))')
PYTHONPATH="$GPU:$CARRY/scripts" python3 -c "
import sys; from pathlib import Path
from pascal_form import overlay_patched_triton
print('patched triton files:', overlay_patched_triton(Path('$STOCK_TRITON'), Path('$CARRY/triton-overlay'), Path('$WORK/patched')))
" || exit 1
# The seed's and the current release (SEED_VLLM, CURRENT_VLLM), as prepare_gpu_carry.py chose them
# from conda_build_config.yaml.
# shellcheck source=/dev/null
. "$CARRY/stack.env"
C="$CURRENT_VLLM"
for tree in "$SEED_VLLM-pascal" "$SEED_VLLM-stock" "$C-pascal" "$C-stock"; do
  mkdir -p "$WORK/vllm-$tree" && tar xzf "$CARRY/vllm-$tree.tgz" -C "$WORK/vllm-$tree"
done
for wrong in "$CARRY"/wrong-tiles/*.py; do
  name=$(basename "$wrong" .py)
  cp -r "$WORK/vllm-$SEED_VLLM-pascal" "$WORK/vllm-wrong-$name"
  cp "$wrong" "$WORK/vllm-wrong-$name/vllm/v1/attention/ops/prefix_prefill.py"
done

# run NAME TRITON_DIR(empty: the device's own) ARGS...
run() {
  local name=$1 triton_dir=$2
  shift 2
  case " ${RUNS:-$name} " in *" $name "*) ;; *) return ;; esac
  local path="$GPU:$CARRY/scripts:$CARRY/pydeps"
  local ptxas="$STOCK_TRITON/backends/nvidia/bin/ptxas"
  if [ -n "$triton_dir" ]; then
    path="$triton_dir:$path"
    ptxas="$triton_dir/triton/backends/nvidia/bin/ptxas"
  fi
  [ -x "$ptxas" ] || ptxas=$(command -v ptxas)
  (
    export PYTHONPATH="$path" TRITON_PTXAS_PATH="$ptxas" TRITON_CACHE_DIR="$WORK/cache-$name"
    export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor-$name"
    cd "$WORK" && timeout 420 python3 "$GPU/run_vllm_numerics.py" --stack "$name" \
      --report "$WORK/reports/$name.json" "$@" >"$WORK/reports/$name.log" 2>&1
    echo "$name: exit $? $(tail -1 "$WORK/reports/$name.log")"
  ) &
}

P="$WORK/patched"
run "seed-$SEED_VLLM" "$P" --vllm "$WORK/vllm-$SEED_VLLM-pascal"
run inductor "$P" --suite inductor
# The current release with our series, every case of the seed. Its triton is the
# device's 3.6.0 with our 3.6.0 series: a triton 3.8.0 wheel does not fit the 64 MiB upload.
# --moe-stubs 0.33: the fused_moe package layout that 0.33.0 introduced and 0.34.0 keeps.
run "current-$C-pascal" "$P" --vllm "$WORK/vllm-$C-pascal" --moe-stubs 0.33
# Its twin, the release as released (no Pascal tiles): its prefix_prefill tiles at head size 256
# take minutes to compile for sm_61 (seen with 0.33.0: the run was cut at 420 s before reaching
# them), so those cases are left out.
run "current-$C" "$P" --vllm "$WORK/vllm-$C-stock" --moe-stubs 0.33 \
  --skip "prefix_prefill h256,prefix_prefill alibi h256"
# Head size 128 only: the stock tiles at 256 take minutes to compile for sm_61.
run twin-stock-tiles "$P" --vllm "$WORK/vllm-$SEED_VLLM-stock" --only "prefix_prefill h128,prefix_prefill alibi h128"
for wrong in "$CARRY"/wrong-tiles/*.py; do
  name=$(basename "$wrong" .py)
  run "twin-wrong-$name" "$P" --vllm "$WORK/vllm-wrong-$name" --only prefix_prefill
done
# Qwen3.5's gated-delta-net kernels (FLA, since 0.33.0; our series leaves them as released), with
# torch and triton answering as a P40: FLA picks its block lists from those answers, and triton
# refuses a kernel above 48 KB at load, so the autotuners keep only configs a P40 can run.
run "gdn-$C-pascal" "$P" --vllm "$WORK/vllm-$C-pascal" --moe-stubs 0.33 --suite gdn
# Its twins: a reference without the decay gate (the bound must catch it), and the H200's own
# answers (what the autotuners keep when nothing stops them above 48 KB).
run twin-gdn-reference-without-gate "$P" --vllm "$WORK/vllm-$C-pascal" --moe-stubs 0.33 --suite gdn \
  --only "gdn chunk,gdn packed decode" --reference-without-gate
run twin-gdn-h200-answers "$P" --vllm "$WORK/vllm-$C-pascal" --moe-stubs 0.33 --suite gdn --h200-answers
run twin-stock-triton-inductor "" --suite inductor
run twin-stock-triton-vllm "" --vllm "$WORK/vllm-$SEED_VLLM-pascal"
wait
tar czf "$OUT/results.tgz" -C "$WORK" reports
PYTHONPATH="$GPU" python3 "$GPU/gpu_report.py" --summary "$WORK/reports" | tee "$OUT/summary.txt"
