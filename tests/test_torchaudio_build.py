"""torchaudio's build script against a real CUDA 12 nvcc: what it sets must make Pascal code compile.

The torchaudio source cannot be fetched here (no sdist on PyPI, GitHub out of reach), so the
check is the failure itself: a CUDA file that uses FLT_MAX without including <cfloat>, as the
CUDA CTC decoder does, compiled for sm_60/sm_61 with and without the flags build.sh exports.

Likewise for how 2.9.1's CMake finds CUDA: the arguments its setup helper hands CMake (read at
the tag, lines cited below) are replayed against a real CMake and nvcc.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from support.repo import RECIPES, VARIANT_CONFIG
from support.vllm import setup_cuda12

BUILD_SCRIPT = RECIPES / "torchaudio" / "build.sh"
RECIPE = RECIPES / "torchaudio" / "recipe.yaml"
USES_FLT_MAX = "__global__ void lowest(float* out) { out[threadIdx.x] = -FLT_MAX; }\n"


@pytest.fixture(scope="module")
def cuda12() -> Path:
    return setup_cuda12()


def _exported_by_build_script(name: str, env: dict[str, str] | None = None) -> str:
    """The variable `name` as build.sh's own export line leaves it, under `env`."""
    (line,) = [x for x in BUILD_SCRIPT.read_text().splitlines() if x.startswith(f"export {name}=")]
    result = subprocess.run(
        ["bash", "-c", f'{line}\nprintf "%s" "${name}"'],
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _nvcc_flags_of_build_script() -> str:
    """NVCC_APPEND_FLAGS as build.sh leaves it, from the script's own export line."""
    return _exported_by_build_script("NVCC_APPEND_FLAGS").strip()


def _compile(nvcc_root: Path, tmp_path: Path, append_flags: str | None) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "uses_flt_max.cu"
    source.write_text(USES_FLT_MAX)
    env = {k: v for k, v in os.environ.items() if k != "NVCC_APPEND_FLAGS"}
    if append_flags is not None:
        env["NVCC_APPEND_FLAGS"] = append_flags
    arches = ["-gencode", "arch=compute_60,code=sm_60", "-gencode", "arch=compute_61,code=sm_61"]
    return subprocess.run(
        [str(nvcc_root / "bin" / "nvcc"), "-c", str(source), "-o", str(tmp_path / "out.o"), *arches],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
def test_build_scripts_nvcc_flags_compile_flt_max_for_pascal(
    tmp_path: Path,
    cuda12: Path,
) -> None:
    result = _compile(cuda12, tmp_path, _nvcc_flags_of_build_script())
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_twin_without_them_cuda12_rejects_flt_max(
    tmp_path: Path,
    cuda12: Path,
) -> None:
    result = _compile(cuda12, tmp_path, None)
    assert result.returncode != 0
    assert 'identifier "FLT_MAX" is undefined' in result.stderr + result.stdout


# torchaudio 2.9.1 configures its extensions with CMake from tools/setup_helpers/extension.py
# (the file conda-forge's 2.9.1 patches were made against, git blob 635b4ae4). What reaches CMake:
# - line 98: CMAKE_PREFIX_PATH is torch.utils.cmake_prefix_path (site-packages/torch/share/cmake,
#   which this channel's pytorch links to libtorch's $PREFIX/share/cmake);
# - lines 115-120: TORCH_CUDA_ARCH_LIST becomes CMAKE_CUDA_ARCHITECTURES ("6.1" -> "61-real",
#   "6.1+PTX" -> "61");
# - lines 122-124: CMAKE_CUDA_COMPILER='$CUDA_HOME/bin/nvcc' and CUDA_TOOLKIT_ROOT_DIR='$CUDA_HOME',
#   single quotes included (the list goes to subprocess without a shell), where CUDA_HOME is
#   torch.utils.cpp_extension's, i.e. the environment's CUDA_HOME;
# - line 156: nothing of $CMAKE_ARGS.
# CMakeLists.txt:80 then calls enable_language(CUDA), and cmake/TorchAudioHelper.cmake:1
# find_package(Torch). So the CUDA toolkit CMake finds is the one around $CUDA_HOME/bin/nvcc.
CONFIGURES_CUDA = (
    "cmake_minimum_required(VERSION 3.18)\nproject(probe LANGUAGES CXX)\nenable_language(CUDA)\n"
)


def _cuda_home_of_build_script(prefix: Path) -> str:
    """CUDA_HOME as build.sh exports it, for a given $PREFIX."""
    return _exported_by_build_script("CUDA_HOME", {"PREFIX": str(prefix)})


def _cmake_architectures() -> str:
    """CMAKE_CUDA_ARCHITECTURES as torchaudio 2.9.1 derives it from this channel's arch list."""
    (arch_list,) = yaml.safe_load(VARIANT_CONFIG.read_text())["cuda_arch_list"]
    arches = []
    for arch in arch_list.split(";"):
        digits = arch.removesuffix("+PTX").replace(".", "")
        arches.append(digits if arch.endswith("+PTX") else f"{digits}-real")
    return ";".join(arches)


def _configure_as_torchaudio_291(tmp_path: Path, cuda_home: str) -> subprocess.CompletedProcess[str]:
    source, build = tmp_path / "src", tmp_path / "build"
    source.mkdir()
    build.mkdir()
    (source / "CMakeLists.txt").write_text(CONFIGURES_CUDA)
    args = [
        f"-DCMAKE_CUDA_ARCHITECTURES={_cmake_architectures()}",
        f"-DCMAKE_CUDA_COMPILER='{cuda_home}/bin/nvcc'",
        f"-DCUDA_TOOLKIT_ROOT_DIR='{cuda_home}'",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDAARCHS", "CMAKE_ARGS")}
    command = ["cmake", str(source), *args]
    return subprocess.run(command, cwd=build, env=env, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_torchaudio_291_cmake_finds_the_nvcc_under_build_scripts_cuda_home(
    tmp_path: Path,
    cuda12: Path,
) -> None:
    # The CUDA 12 prefix stands in for the host prefix, which holds nvcc because the recipe
    # puts cuda-nvcc in host (test below): conda-forge's patch 0002 is not needed.
    result = _configure_as_torchaudio_291(tmp_path, _cuda_home_of_build_script(cuda12))
    assert result.returncode == 0, result.stderr
    assert f"CUDA compiler: {cuda12}/bin/nvcc" in result.stdout


@pytest.mark.slow
def test_twin_a_cuda_home_without_nvcc_fails_as_conda_forges_unpatched_291_would(tmp_path: Path) -> None:
    # conda-forge's 2.9.1 host held no cuda-nvcc, so $PREFIX/bin/nvcc was missing: what its
    # patch 0002 (dropping extension.py:122-124) avoided.
    prefix = tmp_path / "host-prefix-without-nvcc"
    prefix.mkdir()
    result = _configure_as_torchaudio_291(tmp_path, _cuda_home_of_build_script(prefix))
    assert result.returncode != 0
    assert "is not a full path to an existing compiler tool" in result.stderr


def _host_names_for(recipe_text: str, version: str) -> set[str]:
    """Package names of the recipe's host requirements for `version`, conditions evaluated."""

    def names(entries: list) -> set[str]:
        found: set[str] = set()
        for entry in entries:
            if isinstance(entry, str):
                found.add(entry.split()[0])
                continue
            condition = entry["if"].replace(" ", "")
            if not condition.startswith("version=="):
                raise AssertionError(f"cannot evaluate host condition {entry['if']!r}")
            taken = condition == f'version=="{version}"'
            found |= names(entry.get("then" if taken else "else", []))
        return found

    return names(yaml.safe_load(recipe_text)["requirements"]["host"])


def test_the_291_host_prefix_holds_the_nvcc_that_cuda_home_names() -> None:
    assert _cuda_home_of_build_script(Path("/host")) == "/host"
    assert "cuda-nvcc" in _host_names_for(RECIPE.read_text(), "2.9.1")


def test_twin_the_check_fails_on_the_recipe_without_cuda_nvcc_in_host() -> None:
    text = RECIPE.read_text()
    without = "\n".join(x for x in text.splitlines() if x.strip() != "- cuda-nvcc")
    assert without != text
    assert "cuda-nvcc" not in _host_names_for(without, "2.9.1")
