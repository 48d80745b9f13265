#!/usr/bin/env bash
# Two stages (PASCAL_STAGE): "llvm" builds LLVM and MLIR once per triton release (the
# staging output every triton variant inherits), "triton" builds triton against that tree.
set -euxo pipefail
# pascal-forge builds these staged outputs through rattler-build's command-line engine,
# which keeps no log of the script's output when called as a library: keep a copy beside the
# work dir, which pascal-forge adds to the build's log.
exec > >(tee -a "${SRC_DIR}/../script.log") 2>&1

export MAX_JOBS="${CPU_COUNT:-2}"
llvm_build="${SRC_DIR}/llvm-project/build"

case "${PASCAL_STAGE}" in
  llvm)
    # One link at a time: each static MLIR tool links to several GB; parallel links swap.
    cmake -G Ninja -S llvm-project/llvm -B "${llvm_build}" \
      -DCMAKE_BUILD_TYPE=Release \
      -DLLVM_ENABLE_PROJECTS="${LLVM_PROJECTS:?the recipe names the LLVM projects}" \
      -DLLVM_TARGETS_TO_BUILD="host;NVPTX;AMDGPU" \
      -DLLVM_BUILD_UTILS=ON \
      -DLLVM_BUILD_TOOLS=OFF \
      -DLLD_BUILD_TOOLS=OFF \
      -DLLVM_BUILD_TELEMETRY=OFF \
      -DLLVM_ENABLE_TERMINFO=OFF \
      -DLLVM_INCLUDE_TESTS=OFF \
      -DMLIR_INCLUDE_TESTS=OFF \
      -DLLVM_PARALLEL_LINK_JOBS=1
    cmake --build "${llvm_build}" -j "${MAX_JOBS}"
    # Every inheriting triton build gets a copy of the work dir: keep the libraries, tools,
    # headers and CMake files that triton's build reads, not the object files.
    find "${llvm_build}" -name '*.o' -delete
    ;;
  triton)
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

    # The C++ unit tests would fetch googletest at configure time.
    sed -i -e '/TRITON_BUILD_UT/s:\bON:OFF:' CMakeLists.txt
    # -Werror turns warnings of conda-forge's newer gcc into build failures in code that
    # upstream only builds with its own clang (conda-forge/triton-feedstock patch 0001).
    sed -i -e 's/ -Werror / /' CMakeLists.txt

    if [[ ! -d "${llvm_build}/lib/cmake/mlir" ]]; then
      echo "no LLVM/MLIR tree at ${llvm_build}: the triton-llvm staging output did not run" >&2
      exit 1
    fi
    export LLVM_SYSPATH="${llvm_build}"
    export LLVM_INCLUDE_DIRS="${LLVM_SYSPATH}/include"
    export LLVM_LIBRARY_DIR="${LLVM_SYSPATH}/lib"
    # Statically linked LLVM brings a huge symbol table; strip it at link time.
    export LDFLAGS="${LDFLAGS:-} -Wl,-s"

    # 3.8 compiles its GSan runtime with clang, which this LLVM build leaves out: the CMake
    # cache variable it finds clang with points at a stand-in (see that file for why), and the
    # stand-in's output stays out of the package.
    gsan_runtime="${SP_DIR}/triton/backends/nvidia/lib/gsan.ll"
    if grep -q TRITON_GSAN_CLANGXX third_party/nvidia/CMakeLists.txt; then
      export TRITON_APPEND_CMAKE_ARGS="${TRITON_APPEND_CMAKE_ARGS:-} -DTRITON_GSAN_CLANGXX=${RECIPE_DIR}/gsan-clang-stand-in.sh"
    fi

    "${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv
    rm -f "${gsan_runtime}"
    ;;
  *)
    echo "unknown PASCAL_STAGE '${PASCAL_STAGE:-}'" >&2
    exit 1
    ;;
esac
