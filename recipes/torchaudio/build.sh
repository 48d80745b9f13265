#!/usr/bin/env bash
# Builds torchaudio's extensions against this channel's libtorch, for cuda_arch_list only.
set -euxo pipefail

export USE_CUDA=1
export CUDA_HOME="${PREFIX}"
export BUILD_CUDA_CTC_DECODER=1
export USE_ROCM=0
export USE_OPENMP=1
export BUILD_CPP_TEST=0
# sox, ffmpeg and RNN-T stay off, as on conda-forge (audio I/O lives in torchcodec now).
export BUILD_SOX=0
export USE_FFMPEG=0
export BUILD_RNNT=0
export MAX_JOBS="${CPU_COUNT:-2}"
# The CUDA CTC decoder uses FLT_MAX without including <cfloat>, which the CUDA 12.6+ headers
# no longer bring in (conda-forge's feedstock patches the kernel file for the same error).
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -include cfloat"

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv
