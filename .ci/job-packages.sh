#!/usr/bin/env bash
# The packages one CI job builds for one .ci_support config, exactly as `pascal-forge plan`
# names them, and what the job does with them:
#   job-packages.sh list  -c CONFIG [-r RECIPE] [-p PYTHON]
#   job-packages.sh test  -c CONFIG [-r RECIPE] [-p PYTHON] [-s SOURCE_CHANNEL]... [-g]
#   job-packages.sh stage -c CONFIG [-r RECIPE] [-p PYTHON] -o DIR
# `test` runs each package's recipe tests with rattler-build against the channel and the
# source channels. With -g (the Pascal runner) it also fails unless every recipe with
# GPU-only tests printed its marker line, so a gated test cannot skip silently.
# `stage` copies the packages to DIR/<subdir>/ for the job's artifact.
# CHANNEL (default: channel) is the channel folder.
set -euo pipefail

usage="usage: job-packages.sh list|test|stage -c CONFIG [-r RECIPE] [-p PYTHON] [-s CHANNEL]... [-o DIR] [-g]"
action=${1:-}
case $action in
  list | test | stage) shift ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

config="" recipe="" python="" out="" require_gpu=0
channel=${CHANNEL:-channel}
sources=()
while getopts "c:r:p:s:o:g" option; do
  case $option in
    c) config=$OPTARG ;;
    r) recipe=$OPTARG ;;
    p) python=$OPTARG ;;
    s) sources+=("$OPTARG") ;;
    o) out=$OPTARG ;;
    g) require_gpu=1 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
if [[ -z $config ]]; then
  echo "job-packages.sh: -c CONFIG is required; $usage" >&2
  exit 2
fi
if [[ ! -f .ci_support/${config}.yaml ]]; then
  echo "job-packages.sh: .ci_support/${config}.yaml does not exist; run pascal-forge rerender" >&2
  exit 2
fi

# Python rather than jq: the self-hosted GPU runner need not have jq.
select_packages='
import json, sys
recipe, python, channel = sys.argv[1:]
for build in json.load(sys.stdin):
    if recipe and build["recipe"] != recipe:
        continue
    if python and build["python"] not in (None, python):
        continue
    print(channel + "/" + build["subdir"] + "/" + build["filename"])
'
# A failing plan stops the script here, with pascal-forge's own message.
plan=$(pascal-forge plan -m ".ci_support/${config}.yaml" --channel "$channel" --json)
mapfile -t packages < <(python3 -c "$select_packages" "$recipe" "$python" "$channel" <<<"$plan")
if ((${#packages[@]} == 0)); then
  echo "job-packages.sh: the plan for ${config} has no package of recipe '${recipe:-any}' for Python '${python:-any}'" >&2
  exit 1
fi
missing=0
for package in "${packages[@]}"; do
  if [[ ! -f $package ]]; then
    echo "job-packages.sh: ${package} is in the plan for ${config} but was not built" >&2
    missing=1
  fi
done
((missing == 0)) || exit 1

run_tests() {
  local channel_args=(--channel "file://$(realpath "$channel")")
  local source log
  for source in "${sources[@]}"; do
    channel_args+=(--channel "$source")
  done
  log=$(mktemp)
  for package in "${packages[@]}"; do
    echo "::group::rattler-build test ${package##*/}"
    rattler-build test --package-file "$package" "${channel_args[@]}" 2>&1 | tee -a "$log"
    echo "::endgroup::"
  done
  if ((require_gpu)); then
    local gated
    for gated in $(grep -l "pascal-gpu-test:" recipes/*/recipe.yaml | xargs -n1 dirname | xargs -n1 basename); do
      if [[ -n $recipe && $gated != "$recipe" ]]; then
        continue
      fi
      if ! grep -q "pascal-gpu-test: ${gated} " "$log"; then
        echo "job-packages.sh: the GPU-only tests of ${gated} did not run (no 'pascal-gpu-test: ${gated}' line)" >&2
        return 1
      fi
    done
  fi
}

case $action in
  list) printf '%s\n' "${packages[@]}" ;;
  test) run_tests ;;
  stage)
    if [[ -z $out ]]; then
      echo "job-packages.sh: stage needs -o DIR" >&2
      exit 2
    fi
    for package in "${packages[@]}"; do
      install -D -m 0644 "$package" "${out}/${package#"${channel}"/}"
    done
    printf 'staged %s\n' "${packages[@]}"
    ;;
esac
