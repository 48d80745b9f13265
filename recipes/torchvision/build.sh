#!/usr/bin/env bash
# Builds torchvision's C++/CUDA ops against this channel's libtorch, for cuda_arch_list only.
set -euxo pipefail

export FORCE_CUDA=1
# No CUDA_HOME: torch's extension builder then takes the nvcc on PATH, the build environment's
# full compiler. CUDA_HOME=$PREFIX picked the host prefix's nvcc (pulled in by triton's run
# requirements), which has no crt/ headers. conda-forge's torchvision sets none either.
unset CUDA_HOME
# Video decoding moved to torchcodec; images only (nvjpeg on the GPU).
export TORCHVISION_USE_FFMPEG=0
export TORCHVISION_USE_NVJPEG=1
# conda's CUDA 12 packages keep their headers under targets/x86_64-linux/include.
cuda_include="${PREFIX}/targets/x86_64-linux/include"
export TORCHVISION_INCLUDE="${PREFIX}/include/:${cuda_include}"
export TORCHVISION_LIBRARY="${PREFIX}/lib/"
export MAX_JOBS="${CPU_COUNT:-2}"
# 0.29's libraries use no symbol of libtorch_python; linked as needed they do not list it,
# so one build serves every Python (recipe.yaml's Python-independence test).
export LDFLAGS="${LDFLAGS:-} -Wl,--as-needed"

# setup.py decides on nvjpeg by looking for $CUDA_HOME/include/nvjpeg.h only, and without it
# quietly builds the image extension with no GPU decoding. conda's libnvjpeg-dev installs the
# header under targets/x86_64-linux/include (libnvjpeg-feedstock), so point the test there,
# and stop here if the header is missing or setup.py no longer asks in that way.
nvjpeg_header="${cuda_include}/nvjpeg.h"
upstream_test='(Path(CUDA_HOME) / "include/nvjpeg.h").exists()'
if [[ ! -f "${nvjpeg_header}" ]]; then
  echo "no ${nvjpeg_header}: the host requirements must bring libnvjpeg-dev" >&2
  exit 1
fi
if ! grep -qF "${upstream_test}" setup.py; then
  echo "setup.py no longer tests ${upstream_test}: review how it finds nvjpeg before building" >&2
  exit 1
fi
sed -i -e "s|(Path(CUDA_HOME) / \"include/nvjpeg.h\").exists()|Path(\"${nvjpeg_header}\").exists()|" setup.py

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv

# The quiet fallback, made loud: every image extension must link nvjpeg.
shopt -s nullglob
images=("${SP_DIR}"/torchvision/image*.so)
if [[ -z ${images[*]} ]]; then
  echo "no torchvision/image*.so in ${SP_DIR}: the image extension was not built" >&2
  exit 1
fi
for image in "${images[@]}"; do
  if [[ $("${READELF:-readelf}" -d "${image}") != *libnvjpeg* ]]; then
    echo "${image} does not link libnvjpeg: setup.py built it without GPU decoding" >&2
    exit 1
  fi
done
