#!/usr/bin/env bash
# Sets up a CUDA 12 compiler (nvcc, ptxas, headers) that still targets Pascal (sm_60/sm_61).
#
# CUDA 13 dropped sm_50..sm_72, and this machine is Debian bookworm, whose archive has no
# CUDA 12 toolkit. Debian trixie's non-free nvidia-cuda-toolkit (12.4) has one: its .debs
# are downloaded with a private apt state (the system's sources and packages stay as they
# are), unpacked without installing, and laid out as a relocatable toolkit prefix with an
# nvcc.profile of its own. Host compiler: the system g++ (12 on bookworm; CUDA 12.4 takes up to 13).
#
# Usage: scripts/setup-cuda12.sh [PREFIX]     (default: .cache/cuda12 in the repository)
# Prints the prefix; use PREFIX/bin/nvcc. Repeated runs reuse a working prefix.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-${repo_root}/.cache/cuda12}"
suite="trixie"
packages=(nvidia-cuda-toolkit nvidia-cuda-dev libnvvm4 libcudart12 libcu++-dev libcub-dev libthrust-dev)
tools=(ptxas fatbinary cudafe++ nvlink bin2c nvprune cuobjdump nvdisasm cu++filt)

smoke_test() {
  local work
  work="$(mktemp -d)"
  printf '__global__ void add_one(float* x) { x[threadIdx.x] += 1.0f; }\n' >"${work}/smoke.cu"
  "${prefix}/bin/nvcc" -c "${work}/smoke.cu" -o "${work}/smoke.o" \
    -gencode arch=compute_60,code=sm_60 -gencode arch=compute_61,code=sm_61
  "${prefix}/bin/cuobjdump" --list-elf "${work}/smoke.o" | grep -q sm_61
  rm -rf "${work}"
}

if [[ -x "${prefix}/bin/nvcc" ]] && smoke_test 2>/dev/null; then
  echo "${prefix}"
  exit 0
fi

if ! command -v g++ >/dev/null; then
  echo "g++ is missing: apt-get install g++ (nvcc needs a host compiler)" >&2
  exit 1
fi

state="${prefix}.apt"
debs="${prefix}.debs"
staging="${prefix}.staging"
rm -rf "${prefix}" "${staging}"
mkdir -p "${state}/lists/partial" "${state}/cache/archives/partial" "${debs}" "${staging}"
echo "deb http://deb.debian.org/debian ${suite} main contrib non-free" >"${state}/sources.list"
touch "${state}/status"
apt_options=(
  -o "Dir::State=${state}" -o "Dir::State::Lists=${state}/lists" -o "Dir::State::status=${state}/status"
  -o "Dir::Cache=${state}/cache" -o "Dir::Etc::SourceList=${state}/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null" -o "APT::Get::List-Cleanup=0"
  -o "APT::Sandbox::User=root"
)
apt-get "${apt_options[@]}" update >/dev/null
candidate="$(apt-cache "${apt_options[@]}" policy nvidia-cuda-toolkit | awk '/Candidate:/ {print $2}')"
case "${candidate}" in
  12.*) echo "nvidia-cuda-toolkit ${candidate} from Debian ${suite} non-free" >&2 ;;
  *)
    echo "Debian ${suite} offers nvidia-cuda-toolkit '${candidate}', not a 12.x: CUDA 13 cannot build sm_60/sm_61" >&2
    exit 1
    ;;
esac
(cd "${debs}" && apt-get "${apt_options[@]}" download "${packages[@]}" >/dev/null)

for deb in "${debs}"/*.deb; do
  # nvidia-cuda-dev is ~1 GB, mostly libraries a compile check does not need.
  dpkg-deb --fsys-tarfile "${deb}" | tar -x -C "${staging}" --wildcards \
    './usr/bin/*' './usr/include/*' './usr/lib/nvidia-cuda-toolkit/*' \
    './usr/lib/x86_64-linux-gnu/libcudart*' './usr/lib/x86_64-linux-gnu/libcudadevrt.a' \
    './usr/lib/x86_64-linux-gnu/stubs/*' 2>/dev/null || true
done

mkdir -p "${prefix}/bin" "${prefix}/nvvm" "${prefix}/lib64"
toolkit="${staging}/usr/lib/nvidia-cuda-toolkit"
cp -a "${toolkit}/bin/nvcc" "${toolkit}/bin/cicc" "${toolkit}/bin/crt" "${prefix}/bin/"
for tool in "${tools[@]}"; do
  cp -a "${staging}/usr/bin/${tool}" "${prefix}/bin/"
done
cp -a "${toolkit}/libdevice" "${prefix}/nvvm/"
cp -a "${staging}/usr/include" "${prefix}/include"
cp -a "${staging}/usr/lib/x86_64-linux-gnu/"{libcudart*,libcudadevrt.a,stubs} "${prefix}/lib64/"
# Debian's profile points at /usr paths; this one is relative to nvcc's own directory.
cat >"${prefix}/bin/nvcc.profile" <<'PROFILE'
TOP = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH += $(_HERE_):
INCLUDES += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(TOP)/lib64" "-L$(TOP)/lib64/stubs"
PROFILE
rm -rf "${staging}"

smoke_test
rm -rf "${debs}"
"${prefix}/bin/nvcc" --version | tail -n 2 >&2
echo "${prefix}"
