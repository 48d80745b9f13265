#!/usr/bin/env bash
# Builds triton against a static LLVM from the pinned llvm-project source, offline.
set -euxo pipefail

# Triton's setup.py downloads LLVM, pybind11, json and the CUDA tools unless told not to.
export TRITON_OFFLINE_BUILD=1
export JSON_SYSPATH="${PREFIX}"
export PYBIND11_SYSPATH="${SP_DIR}/pybind11"

# CUDA 12 tools from the host prefix; the wheel's bundled ptxas is never used.
export TRITON_PTXAS_PATH="${PREFIX}/bin/ptxas"
export TRITON_CUOBJDUMP_PATH="${PREFIX}/bin/cuobjdump"
export TRITON_NVDISASM_PATH="${PREFIX}/bin/nvdisasm"
export TRITON_CUDACRT_PATH="${PREFIX}"
export TRITON_CUDART_PATH="${PREFIX}"
export TRITON_CUPTI_INCLUDE_PATH="${PREFIX}/include"
export TRITON_CUPTI_LIB_PATH="${PREFIX}/lib"
export MAX_JOBS="${CPU_COUNT:-2}"

# The C++ unit tests would fetch googletest at configure time.
sed -i -e '/TRITON_BUILD_UT/s:\bON:OFF:' CMakeLists.txt

cmake -G Ninja -S llvm-project/llvm -B llvm-project/build \
  -DCMAKE_BUILD_TYPE=Release \
  -DLLVM_ENABLE_PROJECTS="mlir;lld" \
  -DLLVM_TARGETS_TO_BUILD="host;NVPTX;AMDGPU" \
  -DLLVM_BUILD_UTILS=ON \
  -DLLVM_BUILD_TOOLS=OFF \
  -DLLVM_ENABLE_TERMINFO=OFF \
  -DLLVM_INCLUDE_TESTS=OFF \
  -DMLIR_INCLUDE_TESTS=OFF
cmake --build llvm-project/build -j "${MAX_JOBS}"

export LLVM_SYSPATH="${PWD}/llvm-project/build"
export LLVM_INCLUDE_DIRS="${LLVM_SYSPATH}/include"
export LLVM_LIBRARY_DIR="${LLVM_SYSPATH}/lib"
# Statically linked LLVM brings a huge symbol table; strip it at link time.
export LDFLAGS="${LDFLAGS:-} -Wl,-s"

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv
