"""A structural build of the real recipes: real rattler-build, real recipe.yaml files, fake payloads.

conda-forge and the upstream sources cannot be reached from the test machines, so the three
big builds cannot run here. What can run is everything around their compile steps:

- `stub_channel` writes an offline, conda-forge-shaped channel generated from the
  requirements that the recipes themselves render to: one small package per name, at a
  version that satisfies each spec, shaped where it matters the way conda-forge ships it
  (`python` run-exports `python_abi`, the compilers are the `<name>_linux-64` packages that
  `compiler()` renders to and run-export their runtimes, `cuda-version` constrains `__cuda`,
  `python-abi3` run-exports `cpython`), with conda-forge's real versions where a recipe's pin
  is known to miss them (CONDA_FORGE_VERSIONS);
- `structural_recipes` copies recipes/ with each source replaced by a tiny local folder (the
  patch series are proven on the released files elsewhere) and each build script by
  STUB_SCRIPT, which writes the files a package is known by and logs every run.

`pascal-forge build` then builds every output of every variant for real, and the tests read
what the packages carry: run exports, pins, build strings, and how often each staging build ran.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from rattler import BuildString, MatchSpec, PackageRecord, Version

from pascal_forge.build.preflight import DISK_KEY
from pascal_forge.channel.local import index_channel
from pascal_forge.recipes.plan import Plan

SUBDIR = "linux-64"

# Versions conda-forge is known to have, and versions it is known never to have built. A stub
# channel that offered every pinned version would hide exactly the failure a first build meets.
CONDA_FORGE_VERSIONS = {
    # conda-forge built xgrammar 0.1.23 and 0.1.32, never 0.1.29 (vllm-feedstock pins >=0.1.32);
    # 0.2.2 is its newest (xgrammar-feedstock 64e5bab).
    "xgrammar": ("0.1.23", "0.1.32", "0.2.2"),
}
NEVER_BUILT = {"xgrammar": ("0.1.29",)}
# The newest build conda-forge has of names vLLM 0.34.0 pins above it, read from the newest
# stored commit of each feedstock on 2026-12-02, 2026-12-06 for 0.34.0's new floors
# (docs/current-stack-research.md has the table):
# no stub version above these exists, so a floor beyond conda-forge fails here as it would there.
CONDA_FORGE_NEWEST = {
    "certifi": "2026.2.25",  # certifi-feedstock c0e425a
    "filelock": "3.32.3",  # filelock-feedstock be329a0
    # 1.x only: conda-forge's tokenizers 0.23.1 (4f21125) requires huggingface_hub <2.0
    "huggingface_hub": "1.31.0",
    "mistral-common": "1.12.0",  # mistral-common-feedstock 06e69a6 (index)
    "opentelemetry-api": "1.44.0",  # opentelemetry-sdk-feedstock a936177 pins it
    "opentelemetry-exporter-otlp": "1.44.0",  # its feedstock 2352e96
    "opentelemetry-sdk": "1.44.0",  # opentelemetry-sdk-feedstock a936177
    "mcp": "1.28.1",  # mcp-feedstock e957ad0
    "multidict": "6.7.1",  # multidict-feedstock 55762c2
    "pillow": "12.3.0",  # pillow-feedstock 0d69e2d
    "tokenizers": "0.23.1",  # tokenizers-feedstock 4f21125
    "xgrammar": "0.2.2",  # xgrammar-feedstock 64e5bab
}

# Python as conda-forge ships it: the full version, and the build string tag the matrix selects.
PYTHONS = {
    "3.10": ("3.10.19", "cpython"),
    "3.11": ("3.11.14", "cpython"),
    "3.12": ("3.12.12", "cpython"),
    "3.13": ("3.13.9", "cp313"),
    "3.14": ("3.14.0", "cp314"),
}

# What conda-forge's compiler and runtime packages pass on to what they build.
COMPILER_RUN_EXPORTS = {
    "gcc_linux-64": ["libgcc >={major}"],
    "gxx_linux-64": ["libstdcxx >={major}", "libgcc >={major}"],
    "cuda-nvcc_linux-64": ["cuda-cudart_linux-64 >={version}"],
}

# Replaces every build script: writes what each package is known by and logs the run.
# What the preflight is told a stub payload needs on disk (it writes a few small files).
STUB_DISK_GIB = 0.01

STUB_SCRIPT = r"""#!/usr/bin/env bash
# Structural stand-in for the real build script: no compile, only the files a package is
# known by, and one line per run in the log the test reads.
set -euo pipefail
exec > >(tee -a "${SRC_DIR}/../script.log") 2>&1
stage="${PASCAL_STAGE:-package}"
# A staging build has no package of its own: no PKG_NAME, and the version only from the recipe.
name="${PKG_NAME:-staging}"
version="${PKG_VERSION:-${PYTORCH_BUILD_VERSION:-${PASCAL_VERSION:-unknown}}}"
echo "${name} ${version} ${stage} ${CUDA_VERSION:-} ${PY_VER:-}" >> "@LOG@"
sp="${SP_DIR:-${PREFIX}/lib/python/site-packages}"
module() {
  mkdir -p "${sp}/$1" "${sp}/$2-${version}.dist-info"
  echo "__version__ = '${version}'" > "${sp}/$1/__init__.py"
  printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' "$2" "${version}" \
    > "${sp}/$2-${version}.dist-info/METADATA"
  echo "stub" > "${sp}/$2-${version}.dist-info/INSTALLER"
}
case "${stage}" in
  cpp)
    # The C++/CUDA build tree that libtorch and pytorch take their files from.
    mkdir -p build/stub
    echo "${version}" > build/stub/built
    ;;
  llvm)
    mkdir -p llvm-project/build/lib/cmake/mlir
    echo "${version}" > llvm-project/build/lib/cmake/mlir/built
    ;;
  libtorch)
    test -f build/stub/built
    mkdir -p "${PREFIX}/lib"
    echo stub > "${PREFIX}/lib/libtorch_cuda.so"
    ;;
  *)
    case "${name}" in
      triton) test -f llvm-project/build/lib/cmake/mlir/built; module triton triton ;;
      pytorch) test -f build/stub/built; module torch torch ;;
      vllm) module vllm vllm ;;
      *) module "${name//-/_}" "${name}" ;;
    esac
    ;;
esac
# The files the recipe's package_contents tests look for.
contents="@CONTENTS@/${name}.txt"
if [[ "${stage}" != cpp && "${stage}" != llvm && -f "${contents}" ]]; then
  while read -r kind path; do
    case "${kind}" in
      lib) target="${PREFIX}/lib/lib${path}.so" ;;
      include) target="${PREFIX}/include/${path}" ;;
      site_packages) target="${sp}/${path}" ;;
      *) target="${PREFIX}/${path}" ;;
    esac
    mkdir -p "$(dirname "${target}")"
    echo stub > "${target}"
  done < "${contents}"
fi
"""


# --------------------------------------------------------------------------- recipes


def structural_recipes(recipes: Path, destination: Path, log: Path) -> Path:
    """A copy of `recipes` whose sources are local stubs and whose build scripts are STUB_SCRIPT."""
    shutil.copytree(recipes, destination)
    stub_source = destination.parent / "stub-source"
    stub_source.mkdir(exist_ok=True)
    (stub_source / "LICENSE").write_text("stub\n")
    (stub_source / "NOTICE").write_text("stub\n")
    contents = destination.parent / "stub-contents"
    contents.mkdir(exist_ok=True)
    for recipe_file in destination.glob("*/recipe.yaml"):
        recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
        _write_expected_contents(recipe, contents)
        if DISK_KEY in (recipe.get("extra") or {}):
            # A stub payload is a few files: the preflight should ask for that, not for the
            # real build's tens of GiB, so the structural build runs on any test machine.
            recipe["extra"][DISK_KEY] = STUB_DISK_GIB
        recipe_file.write_text(
            yaml.safe_dump(_stub_sources(recipe, stub_source), sort_keys=False, width=1000)
        )
        # The stubs take no patches: the series are proven on the released files instead.
        shutil.rmtree(recipe_file.parent / "patches", ignore_errors=True)
        for script in recipe_file.parent.glob("*.sh"):
            script.write_text(STUB_SCRIPT.replace("@LOG@", str(log)).replace("@CONTENTS@", str(contents)))
    return destination


def _write_expected_contents(recipe: dict[str, Any], directory: Path) -> None:
    """<package>.txt: `kind path` for each file its package_contents tests name."""
    outputs = recipe.get("outputs") or [recipe]
    for output in outputs:
        name = str((output.get("package") or {}).get("name") or "")
        lines = []
        for test in output.get("tests") or []:
            for kind, paths in (test.get("package_contents") or {}).items():
                lines += [f"{kind} {path}" for path in _every_branch(paths) if "*" not in path]
        if name and lines:
            (directory / f"{name}.txt").write_text("\n".join(lines) + "\n")


def _every_branch(items: list[Any]) -> list[str]:
    """The strings of a list whose entries may be `if:/then:/else:` selectors, all branches
    taken: a stub that writes one file too many passes the same checks."""
    flat: list[str] = []
    for item in items:
        if isinstance(item, dict):
            flat += _every_branch(list(item.get("then") or [])) + _every_branch(list(item.get("else") or []))
        else:
            flat.append(str(item))
    return flat


def _stub_sources(node: Any, stub: Path) -> Any:
    """Every `source:` list of the recipe, with each upstream source swapped for `stub`."""
    if isinstance(node, list):
        return [_stub_sources(item, stub) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        result[key] = _stub_source_list(value, stub) if key == "source" else _stub_sources(value, stub)
    return result


def _stub_source_list(sources: Any, stub: Path) -> Any:
    if isinstance(sources, dict):
        sources = [sources]
    stubbed = []
    for entry in sources:
        if "if" in entry:
            branch = {"if": entry["if"], "then": _stub_source_list(entry.get("then") or [], stub)}
            if "else" in entry:
                branch["else"] = _stub_source_list(entry["else"], stub)
            stubbed.append(branch)
            continue
        replaced: dict[str, Any] = {"path": str(stub)}
        if "target_directory" in entry:
            replaced["target_directory"] = entry["target_directory"]
        stubbed.append(replaced)
    return stubbed


def script_runs(log: Path) -> list[tuple[str, ...]]:
    """The stub script's log: (package, version, stage, CUDA, Python) per run."""
    if not log.is_file():
        return []
    return [tuple(line.split(" ")) for line in log.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- stub channel


def rendered_specs(plan: Plan) -> dict[str, set[str]]:
    """Every requirement spec of every planned output that none of our own builds satisfies, by
    package name: a name we build is stubbed only for a version or build we do not make."""
    ours: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for b in plan.builds:
        ours[b.output.name].append((b.output.version, b.output.build_string))
    specs: dict[str, set[str]] = defaultdict(set)
    for build in plan.builds:
        recipe = build.output.rendered.recipe.to_dict()
        for spec in _all_specs(recipe):
            name = spec.split()[0]
            # rattler-build pins a bare requirement to the variant's value of its name
            # (libprotobuf 7.35.1 from conda_build_config.yaml) when it solves.
            pinned = build.output.variant.get(name.replace("-", "_"))
            if spec == name and pinned is not None and name != "python":
                spec = f"{name} {pinned}.*"
            if name.startswith("__"):
                continue
            match = MatchSpec(spec)
            if not any(_matches(match, name, version, string) for version, string in ours.get(name, ())):
                specs[name].add(spec)
    return specs


def _all_specs(recipe: dict[str, Any]) -> Iterator[str]:
    sections = [recipe.get("requirements") or {}]
    sections += [cache.get("requirements") or {} for cache in recipe.get("staging_caches") or []]
    for test in recipe.get("tests") or []:
        sections.append(test.get("requirements") or {})
    for section in sections:
        for kind in ("build", "host", "run"):
            for spec in section.get(kind) or []:
                if isinstance(spec, str) and spec.strip():
                    yield spec


def stub_channel(directory: Path, plans: Iterable[Plan]) -> Path:
    """An indexed channel of stub packages that satisfies what the plans' recipes ask for."""
    specs: dict[str, set[str]] = defaultdict(set)
    for plan in plans:
        for name, found in rendered_specs(plan).items():
            specs[name] |= found
    records = list(_python_family())
    handled = {record["name"] for record in records}
    for name in sorted(specs):
        if name in handled:
            continue
        for version, build in sorted(_versions_for(name, specs[name])):
            records.append(_stub_record(name, version, build))
    # What the compilers and runtimes pass on must exist too.
    exported: dict[str, set[str]] = defaultdict(set)
    for record in records:
        for spec in (s for kind in record["run_exports"].values() for s in kind):
            exported[spec.split()[0]].add(spec)
    names = {record["name"] for record in records}
    for name in sorted(set(exported) - names):
        for version, build in sorted(_versions_for(name, exported[name])):
            records.append(_stub_record(name, version, build))
    for record in records:
        _write_package(directory / SUBDIR, record)
    index_channel(directory, [SUBDIR, "noarch"])
    return directory


def _python_family() -> Iterator[dict[str, Any]]:
    for minor, (version, tag) in PYTHONS.items():
        abi_tag = f"cp{minor.replace('.', '')}"
        yield _stub_record(
            "python",
            version,
            f"h0_{tag}",
            run_exports={"weak": [f"python_abi {minor}.* *_{abi_tag}"]},
            files={"bin/python": '#!/bin/sh\nexec python3 "$@"\n'},
        )
        # As conda-forge's: python_abi ties itself to one Python, so a package that carries
        # `python_abi 3.12.* *_cp312` installs with Python 3.12 alone.
        yield _stub_record("python_abi", minor, f"8_{abi_tag}", constrains=[f"python {minor}.* *_{tag}"])
        yield _stub_record("cpython", version, "h0", depends=[f"python =={version}"])
        yield _stub_record(
            "python-abi3",
            minor,
            "h0",
            depends=[f"python >={minor}"],
            run_exports={"weak": [f"cpython >={minor}", "_python_abi3_support 1.*"]},
        )
    yield _stub_record("_python_abi3_support", "1.0", "h0")


def _versions_for(name: str, specs: set[str]) -> set[tuple[str, str]]:
    """One (version, build string) per spec, from conda-forge's versions where they are known."""
    known = CONDA_FORGE_VERSIONS.get(name, ())
    never = NEVER_BUILT.get(name, ())
    chosen: set[tuple[str, str]] = {(v, "h0") for v in known}
    for text in specs:
        match = MatchSpec(text)
        build = _build_for(str(match.build) if match.build else "")
        candidates = [v for v in (*known, *_candidate_versions(text)) if v not in never and _built(name, v)]
        version = next((v for v in candidates if _matches(match, name, v, build)), None)
        if version is not None:
            chosen.add((version, build))
    return chosen or {("1.0.0", "h0")}


def _built(name: str, version: str) -> bool:
    newest = CONDA_FORGE_NEWEST.get(name)
    return newest is None or Version(version) <= Version(newest)


def _candidate_versions(spec: str) -> list[str]:
    literals = re.findall(r"\d+(?:\.\d+)*", spec.split(" ", 1)[1] if " " in spec else "")
    candidates = []
    for literal in literals:
        parts = literal.split(".")
        candidates += [literal, ".".join([*parts[:-1], str(int(parts[-1]) + 1)]), f"{literal}.1"]
    return [*candidates, "1.0.0", "99.0"]


def _build_for(build_glob: str) -> str:
    return build_glob.replace("*", "h0") if build_glob else "h0"


def _matches(spec: MatchSpec, name: str, version: str, build: str) -> bool:
    record = PackageRecord(
        name=name, version=version, build=BuildString(build), build_number=0, subdir=SUBDIR
    )
    return spec.matches(record)


def _stub_record(
    name: str,
    version: str,
    build: str,
    *,
    depends: list[str] | None = None,
    constrains: list[str] | None = None,
    run_exports: dict[str, list[str]] | None = None,
    files: dict[str, str] | None = None,
) -> dict[str, Any]:
    if run_exports is None and name in COMPILER_RUN_EXPORTS:
        major = Version(version).segments()[0][0]
        run_exports = {"strong": [s.format(major=major, version=version) for s in COMPILER_RUN_EXPORTS[name]]}
    if constrains is None and name == "cuda-version":
        constrains = [f"__cuda >={version}"]
    return {
        "name": name,
        "version": version,
        "build": build,
        "depends": depends or [],
        "constrains": constrains or [],
        "run_exports": run_exports or {},
        "files": files or {},
    }


def _write_package(subdir: Path, record: dict[str, Any]) -> Path:
    """A .tar.bz2 conda package: info/index.json, paths.json, run_exports.json and its files."""
    subdir.mkdir(parents=True, exist_ok=True)
    staging = subdir.parent / ".stub-build" / f"{record['name']}-{record['version']}-{record['build']}"
    info = staging / "info"
    info.mkdir(parents=True, exist_ok=True)
    index = {
        "name": record["name"],
        "version": record["version"],
        "build": record["build"],
        "build_number": 0,
        "depends": record["depends"],
        "constrains": record["constrains"],
        "subdir": SUBDIR,
        "arch": "x86_64",
        "platform": "linux",
        "license": "BSD-3-Clause",
        "timestamp": 1_700_000_000_000,
    }
    (info / "index.json").write_text(json.dumps(index))
    if record["run_exports"]:
        (info / "run_exports.json").write_text(json.dumps(record["run_exports"]))
    paths = []
    for relative, text in record["files"].items():
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755)
        paths.append({"_path": relative, "path_type": "hardlink", "size_in_bytes": len(text.encode())})
    (info / "paths.json").write_text(json.dumps({"paths": paths, "paths_version": 1}))
    (info / "files").write_text("".join(f"{p['_path']}\n" for p in paths))
    archive = subdir / f"{record['name']}-{record['version']}-{record['build']}.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(staging)))
    shutil.rmtree(staging)
    return archive
