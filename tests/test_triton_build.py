"""triton's build without clang: 3.8's GSan runtime is left out instead of building clang for it.

Triton 3.8 compiles its GSan runtime (a data-race sanitizer built for sm_80: the released wheel's
gsan.ll says `"target-cpu"="sm_80"`) with a clang it finds through the CMake cache variable
TRITON_GSAN_CLANGXX. Building clang with LLVM only for that costs hours. These tests run the
real build.sh (its triton stage, with `pip install .` standing in) and the real stand-in.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.repo import RECIPES, VARIANT_CONFIG, committed_text

from pascal_forge.recipes.plan import make_plan

TRITON = RECIPES / "triton"
STAND_IN = TRITON / "gsan-clang-stand-in.sh"
# Stands in for `$PYTHON -m pip install .`: records what CMake would get, installs a gsan.ll.
PIP_STAND_IN = """#!/usr/bin/env bash
printf '%s' "${TRITON_APPEND_CMAKE_ARGS:-}" > "$SRC_DIR/cmake-args"
mkdir -p "$SP_DIR/triton/backends/nvidia/lib"
echo '; gsan' > "$SP_DIR/triton/backends/nvidia/lib/gsan.ll"
"""


def _run_triton_stage(tmp_path: Path, script: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    src, site = tmp_path / "work" / "src", tmp_path / "site-packages"
    (src / "llvm-project" / "build" / "lib" / "cmake" / "mlir").mkdir(parents=True)
    (src / "third_party" / "nvidia").mkdir(parents=True)
    (src / "CMakeLists.txt").write_text("option(TRITON_BUILD_UT ON)\n")
    # The one fact of 3.8's CMake the script relies on: the variable it finds clang with.
    (src / "third_party" / "nvidia" / "CMakeLists.txt").write_text(
        "find_program(TRITON_GSAN_CLANGXX clang++)\n"
    )
    stand_in = tmp_path / "python"
    stand_in.write_text(PIP_STAND_IN)
    stand_in.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "PASCAL_STAGE": "triton",
        "SRC_DIR": str(src),
        "PREFIX": str(tmp_path / "host"),
        "SP_DIR": str(site),
        "RECIPE_DIR": str(TRITON),
        "PYTHON": str(stand_in),
    }
    (tmp_path / "build.sh").write_text(script)
    result = subprocess.run(
        ["bash", str(tmp_path / "build.sh")], cwd=src, env=env, capture_output=True, text=True, check=False
    )
    return result, src


def test_the_llvm_build_leaves_clang_out_for_every_triton_release(tmp_path):
    plan = make_plan(RECIPES, VARIANT_CONFIG, tmp_path / "channel")
    projects = {}
    for build in plan.builds:
        recipe = build.output.rendered.recipe.to_dict()
        if recipe["package"]["name"] == "triton":
            env = recipe["staging_caches"][0]["build"]["script"]["env"]
            projects[recipe["package"]["version"]] = env["LLVM_PROJECTS"]
    assert projects == {"3.6.0": "mlir;lld", "3.8.0": "mlir;lld"}


def test_the_triton_stage_points_cmake_at_the_stand_in_and_ships_no_gsan_runtime(tmp_path):
    result, src = _run_triton_stage(tmp_path, (TRITON / "build.sh").read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert (src / "cmake-args").read_text().split() == [f"-DTRITON_GSAN_CLANGXX={STAND_IN}"]
    assert not (tmp_path / "site-packages" / "triton" / "backends" / "nvidia" / "lib" / "gsan.ll").exists()


def test_twin_the_triton_stage_before_this_review_left_cmake_looking_for_clang(tmp_path):
    result, src = _run_triton_stage(tmp_path, committed_text("ea1b55a", "recipes/triton/build.sh"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (src / "cmake-args").read_text() == ""
    # and its LLVM build compiled clang for 3.8.0 to satisfy that search
    old_recipe = committed_text("ea1b55a", "recipes/triton/recipe.yaml")
    assert '"mlir;lld;clang" if version == "3.8.0"' in old_recipe


def test_the_stand_in_writes_what_cmake_asks_for_and_refuses_a_changed_command(tmp_path):
    written = tmp_path / "gsan.ll"
    clang_like = ["--cuda-device-only", "-S", "-emit-llvm", "-O3", "-o", str(written), "GSanLibrary.cu"]
    done = subprocess.run([str(STAND_IN), *clang_like], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert written.read_text().startswith("; GSan runtime not built")
    refused = subprocess.run(
        [str(STAND_IN), "--cuda-device-only", "GSanLibrary.cu"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "no -o OUTPUT among the arguments" in refused.stderr


# Stands in for cmake in the LLVM stage: records the configure arguments, makes the build dir.
CMAKE_STAND_IN = """#!/usr/bin/env bash
if [[ $1 == --build ]]; then exit 0; fi
printf '%s\\n' "$@" > "$SRC_DIR/cmake-args"
while (($#)); do if [[ $1 == -B ]]; then mkdir -p "$2"; fi; shift; done
"""


def test_the_llvm_stage_links_one_tool_at_a_time_without_clang(tmp_path):
    src, bin_dir = tmp_path / "work" / "src", tmp_path / "bin"
    src.mkdir(parents=True)
    bin_dir.mkdir()
    (bin_dir / "cmake").write_text(CMAKE_STAND_IN)
    (bin_dir / "cmake").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PASCAL_STAGE": "llvm",
        "SRC_DIR": str(src),
        "LLVM_PROJECTS": "mlir;lld",
        "CPU_COUNT": "2",
    }
    result = subprocess.run(
        ["bash", str(TRITON / "build.sh")], cwd=src, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    args = (src / "cmake-args").read_text().split("\n")
    assert "-DLLVM_PARALLEL_LINK_JOBS=1" in args
    assert "-DLLVM_ENABLE_PROJECTS=mlir;lld" in args
