"""torchaudio's build script against a real CUDA 12 nvcc: what it sets must make Pascal code compile.

The torchaudio source cannot be fetched here (no sdist on PyPI, GitHub out of reach), so the
check is the failure itself: a CUDA file that uses FLT_MAX without including <cfloat>, as the
CUDA CTC decoder does, compiled for sm_60/sm_61 with and without the flags build.sh exports.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from vllm_support import setup_cuda12

from conftest import RECIPES

BUILD_SCRIPT = RECIPES / "torchaudio" / "build.sh"
USES_FLT_MAX = "__global__ void lowest(float* out) { out[threadIdx.x] = -FLT_MAX; }\n"


@pytest.fixture(scope="module")
def cuda12() -> Path:
    return setup_cuda12()


def _nvcc_flags_of_build_script() -> str:
    """NVCC_APPEND_FLAGS as build.sh leaves it, from the script's own export line."""
    (line,) = [x for x in BUILD_SCRIPT.read_text().splitlines() if x.startswith("export NVCC_APPEND_FLAGS=")]
    result = subprocess.run(
        ["bash", "-c", f'{line}\nprintf "%s" "$NVCC_APPEND_FLAGS"'],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


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
