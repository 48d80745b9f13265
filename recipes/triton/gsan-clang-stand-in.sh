#!/usr/bin/env bash
# Stands in for clang++ where triton 3.8's CMake compiles its GSan runtime (gsan.ll).
# GSan is a data-race sanitizer whose runtime is built for sm_80 (+ptx70, +sm_80 in the
# released wheel's gsan.ll), so it cannot instrument a Pascal kernel, and the real clang would
# have to be built with LLVM first (hours) and find a CUDA installation offline. This writes
# the file CMake asks for with -o; build.sh leaves it out of the package, so asking for
# instrumentation_mode="gsan" fails with triton's own "GSan runtime is missing" error.
set -euo pipefail

output=""
while (($# > 0)); do
  case "$1" in
    -o)
      output="${2:-}"
      shift 2 || shift
      ;;
    -o*)
      output="${1#-o}"
      shift
      ;;
    *)
      shift
      ;;
  esac
done
if [[ -z "${output}" ]]; then
  echo "gsan-clang-stand-in: no -o OUTPUT among the arguments; triton's GSan build changed" >&2
  exit 1
fi
printf '; GSan runtime not built: this Pascal build of triton has no clang\n' >"${output}"
