#!/usr/bin/env bash
# Installs the Python packages a vLLM release imports into a target folder of its own, so the
# checks of two vLLM releases (0.14.0 wants transformers < 5, 0.34.0 >= 5.16.1) can share one venv.
#
# pip resolves REQUIREMENTS (a requirements file, e.g. the patched tree's requirements/common.txt)
# against the running venv, where the CPU torch is installed; everything it would add, except
# torch and triton, goes into TARGET with --no-deps. torch stays the venv's CPU build and triton
# is the patched wheel the checks put first on PYTHONPATH, so neither a CUDA torch nor a stock
# triton is ever downloaded. Put TARGET first on PYTHONPATH.
#
# Usage: scripts/setup-vllm-deps.sh REQUIREMENTS TARGET      (python: $PYTHON, else python3)
# Prints TARGET. A TARGET made from the same requirements is reused.
set -euo pipefail

requirements="$1"
target="$2"
python="${PYTHON:-python3}"

stamp="$(sha256sum "${requirements}" | cut -d' ' -f1)"
if [[ -f "${target}/.requirements-sha256" && "$(cat "${target}/.requirements-sha256")" == "${stamp}" ]]; then
  echo "${target}"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
"${python}" -m pip install --dry-run --quiet --report "${work}/report.json" -r "${requirements}" >&2
"${python}" - "${work}/report.json" >"${work}/pins.txt" <<'EOF'
import json
import sys

report = json.load(open(sys.argv[1]))
for item in report["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if name.lower() not in ("torch", "triton"):
        print(f"{name}=={version}")
EOF
rm -rf "${target}.partial"
"${python}" -m pip install --quiet --no-deps --target "${target}.partial" -r "${work}/pins.txt" >&2
cp "${work}/pins.txt" "${target}.partial/.pins.txt"
echo "${stamp}" >"${target}.partial/.requirements-sha256"
rm -rf "${target}"
mv "${target}.partial" "${target}"
echo "${target}"
