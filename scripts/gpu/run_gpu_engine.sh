#!/usr/bin/env bash
# vLLM's engine and `vllm serve` in Pascal form on the lent GPU, in one call, from the repository
# root (issue 25, items 2 and 3):
#   bash .gpu-engine/scripts/gpu/run_gpu_engine.sh .gpu-engine
# CARRY is what scripts/gpu/prepare_engine_carry.py built. Writes $OUT/engine-results.tgz (JSON
# and logs) and prints one PASS/FAIL line per family, dtype and mode, then the server's answers.
set -u
CARRY=$(realpath "$1")
OUT=${OUT:-/tmp/gpu-out}
WORK=/tmp/pascal-forge-engine
CAPABILITY=${CAPABILITY:-61}
mkdir -p "$OUT" "$WORK/pydeps" "$WORK/vllm"
GPU="$CARRY/scripts/gpu"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_LOGGING_LEVEL=INFO
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# Inductor loads its kernels through triton's launcher, which takes the PTX image (pascal_form).
export TORCHINDUCTOR_USE_STATIC_CUDA_LAUNCHER=0

nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$WORK/device.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' |
  tee -a "$WORK/device.txt"
carried=$(cat "$CARRY/python.txt")
here=$(python3 -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
if [ "$carried" != "$here" ]; then
  echo "the carry's extension modules are for Python $carried, this machine runs $here:" \
    "rebuild it with prepare_engine_carry.py under Python $here" >&2
  exit 2
fi
tar xzf "$CARRY/pydeps.tgz" -C "$WORK/pydeps"
tar xzf "$CARRY/vllm.tgz" -C "$WORK/vllm"
STOCK_TRITON=$(python3 -c 'import os, triton; print(os.path.dirname(triton.__file__))')
PYTHONPATH="$GPU:$CARRY/scripts" python3 -c "
from pathlib import Path
from pascal_form import overlay_patched_triton
print('patched triton files:', overlay_patched_triton(Path('$STOCK_TRITON'), Path('$CARRY/triton-overlay'), Path('$WORK/patched')))
" || exit 1
PTXAS="$STOCK_TRITON/backends/nvidia/bin/ptxas"
[ -x "$PTXAS" ] || PTXAS=$(command -v ptxas)
export PYTHONPATH="$WORK/patched:$WORK/vllm:$WORK/pydeps:$GPU:$CARRY/scripts"
export TRITON_PTXAS_PATH="$PTXAS" TRITON_CACHE_DIR="$WORK/triton-cache" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"
cd "$WORK" && timeout 560 python3 "$GPU/run_vllm_engine.py" all --out "$WORK/results" \
  --capability "$CAPABILITY" --families "${FAMILIES:-dense,moe,gemma3,hybrid}"
status=$?
cp "$WORK/device.txt" "$WORK/results/" 2>/dev/null
tar czf "$OUT/engine-results.tgz" -C "$WORK" results
cat "$WORK/results/serve.json" 2>/dev/null | head -c 2000
echo
echo "engine run exit $status"
exit "$status"
