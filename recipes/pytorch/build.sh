#!/usr/bin/env bash
# One script, three stages (PASCAL_STAGE): the shared C++/CUDA build ("cpp"), the
# libtorch package taken from it ("libtorch"), and one pytorch per Python ("pytorch").
set -euxo pipefail
# pascal-forge builds these staged outputs through rattler-build's command-line engine,
# which keeps no log of the script's output when called as a library: keep a copy beside the
# work dir, which pascal-forge adds to the build's log.
exec > >(tee -a "${SRC_DIR}/../script.log") 2>&1

export PACKAGE_TYPE=conda
# Exactly 2.9.1 in the Python metadata: a "2.9.1a0+git..." version breaks `pip check`
# against vLLM's torch==2.9.1.
export PYTORCH_BUILD_VERSION="${PYTORCH_BUILD_VERSION:-${PKG_VERSION}}"
export PYTORCH_BUILD_NUMBER=0

export CMAKE_GENERATOR=Ninja
export CMAKE_BUILD_TYPE=Release
export CMAKE_PREFIX_PATH="${PREFIX}"
# setup.py never reads CMAKE_ARGS, but it hands every CMAKE_* variable of its environment to
# CMake. conda's CMAKE_ARGS carries the search roots (CMAKE_FIND_ROOT_PATH and friends) that
# let CMake find the CUDA toolkit in the host prefix; without them FindCUDA silently turns
# CUDA off. conda-forge/pytorch-cpu-feedstock's build.sh forwards them the same way.
for arg in ${CMAKE_ARGS:-}; do
  if [[ "${arg}" == -DCMAKE_* ]]; then
    name="${arg#-D}"
    name="${name%%=*}"
    name="${name%%:*}"
    export "${name}=${arg#*=}"
  fi
done
unset CMAKE_INSTALL_PREFIX
# Shared libraries load lazily, so `import torch` works on a machine without a GPU driver
# (the recipe tests on CPU runners do exactly that).
export LDFLAGS="${LDFLAGS:-}"
LDFLAGS="${LDFLAGS//-Wl,-z,now/-Wl,-z,lazy}"
export Python_ROOT_DIR="${PREFIX}"
export BUILD_TEST=0
export INSTALL_TEST=0
export USE_SYSTEM_SLEEF=1
export USE_SYSTEM_PYBIND11=1
export USE_SYSTEM_EIGEN_INSTALL=1
export USE_SYSTEM_NVTX=1
export BUILD_CUSTOM_PROTOBUF=OFF
export USE_NUMA=0
export USE_ITT=0
export USE_CUFILE=0
# FBGEMM's GPU code needs sm_70+, and nothing on Pascal uses it.
export USE_FBGEMM=0
# FlashAttention-2 kernels are sm_80+ only, and nvcc on them needs the most memory of the
# whole build; the memory-efficient attention kernels (sm_50+) stay.
export USE_FLASH_ATTENTION=0
# NNPACK (mobile CPU convolutions) downloads the `six` module at configure time.
export USE_NNPACK=0
# The build's protoc (build requirements) generates the sources; the host's may not run here.
rm -f "${PREFIX}/bin/protoc"
export USE_MKLDNN=1
export BLAS=MKL

export USE_CUDA=1
export USE_CUDNN=1
export USE_MAGMA=1
export MAGMA_HOME="${PREFIX}"
# CUDA_VERSION comes from the recipe (cuda_compiler_version of the variant).
export CUDA_VERSION="${CUDA_VERSION:?the recipe sets CUDA_VERSION}"
export CUDAToolkit_ROOT="${PREFIX}"
export CUDA_TOOLKIT_ROOT_DIR="${PREFIX}"
export CUDAToolkit_BIN_DIR="${BUILD_PREFIX}/bin"
export CUDAToolkit_TARGET_DIR="${PREFIX}/targets/x86_64-linux"
export TORCH_NVCC_FLAGS="-Xfatbin -compress-all"
# NCCL from conda-forge, shared: tensor parallelism on multi-P40 boxes needs it.
export USE_DISTRIBUTED=1
export USE_NCCL=1
export USE_SYSTEM_NCCL=1
export USE_STATIC_NCCL=0
export NCCL_ROOT_DIR="${PREFIX}"
export NCCL_INCLUDE_DIR="${PREFIX}/include"

if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  echo "TORCH_CUDA_ARCH_LIST is empty: the recipe passes cuda_arch_list from conda_build_config.yaml" >&2
  exit 1
fi

# nvcc on the attention and linear-algebra kernels takes several GB per job: conda-forge runs 4
# jobs on 32 GB and 8 on 64 GB "to avoid getting OOM-killed", so allow one job per 8 GiB, and
# leave a core free. Sized from this machine: rattler-build's isolation hides CI and the like.
cpus="${CPU_COUNT:-2}"
memory_gib=$(awk '/^MemTotal:/ { print int($2 / 1048576) }' /proc/meminfo)
by_cpus=$((cpus > 1 ? cpus - 1 : 1))
by_memory=$((memory_gib >= 16 ? memory_gib / 8 : 1))
export MAX_JOBS=$((by_cpus < by_memory ? by_cpus : by_memory))

case "${PASCAL_STAGE}" in
  cpp)
    # The staging build uses Python 3.12 only for code generation; keep its CMake cache
    # so each pytorch output can point it at its own Python.
    rm -f pyproject.toml .gitmodules
    "${PYTHON}" setup.py -q build
    cp build/CMakeCache.txt build/CMakeCache.txt.orig
    ;;
  libtorch)
    mkdir -p "${PREFIX}/bin" "${PREFIX}/lib" "${PREFIX}/include" "${PREFIX}/share"
    cp -a build/lib.*/torch/bin/. "${PREFIX}/bin/"
    cp -a build/lib.*/torch/lib/. "${PREFIX}/lib/"
    rsync -a build/lib.*/torch/share/ "${PREFIX}/share/"
    for d in ATen c10 caffe2 torch; do
      cp -a build/lib.*/torch/include/"${d}" "${PREFIX}/include/"
    done
    # Python-ABI specific: shipped by each pytorch build instead.
    rm -f "${PREFIX}"/lib/libtorch_python.*
    ;;
  pytorch)
    py_nodot="${PY_VER/./}"
    sed -e "s/3\.12/${PY_VER}/g" \
        -e "s/3;12/${PY_VER%.*};${PY_VER#*.}/g" \
        -e "s/cpython-312/cpython-${py_nodot}/g" \
        build/CMakeCache.txt.orig > build/CMakeCache.txt
    "${PYTHON}" -m pip install . --no-deps --no-build-isolation -v
    # The shared libraries already live in libtorch; point the Python package at them.
    cp "${SP_DIR}/torch/lib/libtorch_python.so" "${PREFIX}/lib/"
    pushd "${SP_DIR}/torch"
    for f in bin/* lib/* share/* include/*; do
      if [[ -e "${PREFIX}/${f}" ]]; then
        rm -rf "${f}"
        ln -sf "${PREFIX}/${f}" "${PWD}/${f}"
      fi
    done
    popd
    ;;
  *)
    echo "unknown PASCAL_STAGE '${PASCAL_STAGE:-}'" >&2
    exit 1
    ;;
esac
