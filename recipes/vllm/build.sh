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

# Keep the pytorch we built: vLLM's requirements files would otherwise pull torch from pip.
"${PYTHON}" use_existing_torch.py

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv
