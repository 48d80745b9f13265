#!/usr/bin/env bash
# Builds vLLM's CUDA extension for the Pascal arch list only, offline.
set -euxo pipefail

export VLLM_TARGET_DEVICE=cuda
export CMAKE_BUILD_TYPE=Release
export VERBOSE=1
# nvcc on vLLM's kernels needs several GB per job.
export MAX_JOBS="${MAX_JOBS:-3}"
export NVCC_THREADS=1

if [[ -z "${PASCAL_CUDA_ARCH_LIST:-}" ]]; then
  echo "PASCAL_CUDA_ARCH_LIST is empty: the recipe passes cuda_arch_list from conda_build_config.yaml" >&2
  exit 1
fi

# CUTLASS comes from the recipe's pinned source, not from a clone at configure time.
export VLLM_CUTLASS_SRC_DIR="${SRC_DIR}/pascal-deps/cutlass"
if [[ ! -f "${VLLM_CUTLASS_SRC_DIR}/include/cutlass/cutlass.h" ]]; then
  echo "CUTLASS headers missing under ${VLLM_CUTLASS_SRC_DIR}: the recipe's cutlass source was not unpacked" >&2
  exit 1
fi
# Any FetchContent download left is an error instead of a network access
# (patch 0002 skips the external projects that a Pascal build does not need).
export CMAKE_ARGS="${CMAKE_ARGS:-} -DFETCHCONTENT_FULLY_DISCONNECTED=ON"

# Keep the pytorch we built: vLLM's requirements files would otherwise pull torch from pip.
# (0.33.0 moved the script into tools/.)
if [[ -f tools/use_existing_torch.py ]]; then
  "${PYTHON}" tools/use_existing_torch.py
else
  "${PYTHON}" use_existing_torch.py
fi

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv
