#!/usr/bin/env bash
# Builds torchvision's C++/CUDA ops against this channel's libtorch, for cuda_arch_list only.
set -euxo pipefail

export FORCE_CUDA=1
export CUDA_HOME="${PREFIX}"
# Video decoding moved to torchcodec; images only (nvjpeg on the GPU).
export TORCHVISION_USE_FFMPEG=0
export TORCHVISION_USE_NVJPEG=1
export TORCHVISION_INCLUDE="${PREFIX}/include/"
export TORCHVISION_LIBRARY="${PREFIX}/lib/"
export MAX_JOBS="${CPU_COUNT:-2}"

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv
