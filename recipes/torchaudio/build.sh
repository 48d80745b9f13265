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

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv
