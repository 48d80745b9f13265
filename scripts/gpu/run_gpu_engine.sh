#!/usr/bin/env bash
# vLLM's engine, `vllm serve` and `pascal-forge bench` in Pascal form on the lent GPU, in one call
# from the repository root (issue 25, items 2 and 3; issue 26, item 4):
#   bash .gpu-engine/scripts/gpu/run_gpu_engine.sh .gpu-engine
# CARRY is what scripts/gpu/prepare_engine_carry.py built. With its extension.tar.xz, vLLM's
# compiled extension goes into the vllm package and its CUDA 12 runtime onto LD_LIBRARY_PATH.
# The steps run by value within BUDGET_S seconds (run_vllm_engine.py's JOBS); summary.json is
# rewritten after each, and $OUT/engine-results.tgz (JSON, logs, the bench report) is written
# whatever happens. MODELS narrows the run (run_vllm_engine.py's MODELS names).
set -u
CARRY=$(realpath "$1")
OUT=${OUT:-/tmp/gpu-out}
WORK=/tmp/pascal-forge-engine
BUDGET_S=${BUDGET_S:-500}
START=$SECONDS
mkdir -p "$OUT" "$WORK/pydeps" "$WORK/vllm" "$WORK/results"
GPU="$CARRY/scripts/gpu"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_LOGGING_LEVEL=INFO
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# Inductor loads its kernels through triton's launcher, which takes the PTX image (pascal_form).
export TORCHINDUCTOR_USE_STATIC_CUDA_LAUNCHER=0
# The extension's compute_61 PTX is JIT-compiled by the driver kernel by kernel, once: the cache
# is shared by every engine process of the run.
export CUDA_MODULE_LOADING=LAZY CUDA_CACHE_PATH="$WORK/cuda-jit-cache" CUDA_CACHE_MAXSIZE=4294967296

finish() {
  cp "$WORK/device.txt" "$WORK/results/" 2>/dev/null
  # Without the tiny models (results/models: megabytes of weights the run can remake), which
  # kept the archive from coming back from the device.
  tar czf "$OUT/engine-results.tgz" -C "$WORK" --exclude=results/models results
  cp "$WORK/results/bench-report.md" "$OUT/" 2>/dev/null
  head -c 1500 "$WORK/results/serve.json" 2>/dev/null
  echo
  echo "engine run exit $1 after $((SECONDS - START)) s"
  exit "$1"
}

# tar's xz, or Python's lzma where the machine lacks the xz program.
unpack() {
  tar xJf "$1" -C "$2" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
}

nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$WORK/device.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' |
  tee -a "$WORK/device.txt"
carried=$(cat "$CARRY/python.txt")
here=$(python3 -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
if [ "$carried" != "$here" ]; then
  echo "the carry's extension modules are for Python $carried, this machine runs $here:" \
    "rebuild it with prepare_engine_carry.py under Python $here" >&2
  finish 2
fi
unpack "$CARRY/pydeps.tar.xz" "$WORK/pydeps" || finish 2
unpack "$CARRY/vllm.tar.xz" "$WORK/vllm" || finish 2
if [ -f "$CARRY/extension.tar.xz" ]; then
  mkdir -p "$WORK/ext"
  unpack "$CARRY/extension.tar.xz" "$WORK/ext" || finish 2
  cp "$WORK/ext/vllm/"*.so "$WORK/vllm/vllm/"
  export LD_LIBRARY_PATH="$WORK/ext/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  {
    echo "extension: $(cd "$WORK/ext/vllm" && echo ./*.so)"
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    for so in "$WORK/ext/vllm/"*.so; do
      echo "$(basename "$so") unresolved: $(LD_LIBRARY_PATH="$torch_lib:$LD_LIBRARY_PATH" ldd "$so" | grep 'not found' | tr -s ' \t' ' ' || true)"
    done
  } | tee -a "$WORK/device.txt"
else
  echo "extension: none carried (Triton-only run, CustomOps native)" | tee -a "$WORK/device.txt"
fi
echo "unpacked after $((SECONDS - START)) s"
STOCK_TRITON=$(python3 -c 'import os, triton; print(os.path.dirname(triton.__file__))')
[ -n "$STOCK_TRITON" ] || finish 1
PYTHONPATH="$GPU:$CARRY/scripts" python3 -c "
from pathlib import Path
from pascal_form import overlay_patched_triton
print('patched triton files:', overlay_patched_triton(Path('$STOCK_TRITON'), Path('$CARRY/triton-overlay'), Path('$WORK/patched')))
" || finish 1
PTXAS="$STOCK_TRITON/backends/nvidia/bin/ptxas"
[ -x "$PTXAS" ] || PTXAS=$(command -v ptxas)
export PYTHONPATH="$WORK/patched:$WORK/vllm:$WORK/pydeps:$GPU:$CARRY/scripts"
export TRITON_PTXAS_PATH="$PTXAS" TRITON_CACHE_DIR="$WORK/triton-cache" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"
# run_vllm_engine.py keeps its own deadline (BUDGET_S); the timeout is the backstop.
models=()
[ -n "${MODELS:-}" ] && models=(--models "$MODELS")
# CAPABILITY (61 or 60) picks the card the run answers as; run_vllm_engine.py's default is a P40.
capability=()
[ -n "${CAPABILITY:-}" ] && capability=(--capability "$CAPABILITY")
cd "$WORK" && timeout --kill-after=5 $((BUDGET_S + 20)) python3 "$GPU/run_vllm_engine.py" all \
  --out "$WORK/results" --budget-s "$BUDGET_S" "${models[@]}" "${capability[@]}"
finish $?
