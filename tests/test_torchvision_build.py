"""torchvision's build script in conda's CUDA 12 layout: it must find nvjpeg and the build nvcc.

torchvision publishes no sdist and GitHub is out of reach, so the real setup.py cannot run here.
What decides the outcome is small and known: torch's extension builder takes CUDA_HOME from the
environment, else from the nvcc on PATH; setup.py then builds GPU JPEG decoding only if
`$CUDA_HOME/include/nvjpeg.h` exists (the line below, as in 0.24 and 0.29), and otherwise
warns and goes on. conda's libnvjpeg-dev installs the header only as
`targets/x86_64-linux/include/nvjpeg.h` (libnvjpeg-feedstock's file list). The real build.sh
runs here in that layout, with `python -m pip install .` standing in as that decision.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.repo import RECIPES, committed_text

BUILD_SCRIPT = RECIPES / "torchvision" / "build.sh"
# The test torchvision's setup.py makes (make_image_extension and make_image_stable_extension).
SETUP_NVJPEG_TEST = 'nvjpeg_found = CUDA_HOME is not None and (Path(CUDA_HOME) / "include/nvjpeg.h").exists()'
# Stands in for `$PYTHON -m pip install .`: torch's CUDA_HOME rule, then setup.py's nvjpeg test.
PIP_STAND_IN = """#!/usr/bin/env bash
cuda_home="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}"
CUDA_HOME="$cuda_home" python3 -c '
import os
from pathlib import Path
CUDA_HOME = os.environ["CUDA_HOME"]
exec(open("setup.py").read().split("\\n", 1)[1])
print(f"CUDA_HOME={CUDA_HOME} nvjpeg_found={nvjpeg_found}")
' > decision
exit 3
"""


def _run(tmp_path: Path, script: str, *, header: bool = True, setup: str = SETUP_NVJPEG_TEST):
    host, build, src = tmp_path / "host", tmp_path / "build", tmp_path / "src"
    include = host / "targets" / "x86_64-linux" / "include"
    include.mkdir(parents=True)
    if header:
        (include / "nvjpeg.h").write_text("/* libnvjpeg-dev's header */\n")
    # nvcc: the build environment's compiler (with crt/), and the host prefix's from triton's
    # run requirements (cuda-nvcc-tools, without crt/).
    for prefix in (build, host):
        (prefix / "bin").mkdir(parents=True)
        (prefix / "bin" / "nvcc").write_text("#!/bin/sh\nexit 1\n")
        (prefix / "bin" / "nvcc").chmod(0o755)
    src.mkdir()
    (src / "setup.py").write_text(f"# torchvision's nvjpeg test\n{setup}\n")
    stand_in = tmp_path / "python"
    stand_in.write_text(PIP_STAND_IN)
    stand_in.chmod(0o755)
    (tmp_path / "build.sh").write_text(script)
    env = {
        # rattler-build puts the build environment's bin first, then the host's.
        "PATH": f"{build / 'bin'}:{host / 'bin'}:{os.environ['PATH']}",
        "PREFIX": str(host),
        "BUILD_PREFIX": str(build),
        "SRC_DIR": str(src),
        "SP_DIR": str(host / "site-packages"),
        "PYTHON": str(stand_in),
        "CPU_COUNT": "2",
    }
    result = subprocess.run(
        ["bash", str(tmp_path / "build.sh")], cwd=src, env=env, capture_output=True, text=True, check=False
    )
    decision = (src / "decision").read_text().strip() if (src / "decision").is_file() else ""
    return result, decision, build


def test_build_script_builds_nvjpeg_with_the_build_environments_nvcc(tmp_path):
    result, decision, build = _run(tmp_path, BUILD_SCRIPT.read_text())
    assert result.returncode == 3, result.stderr  # stopped by the stand-in, after the nvjpeg set-up
    assert decision == f"CUDA_HOME={build} nvjpeg_found=True"


def test_twin_the_build_script_before_this_review_builds_without_nvjpeg(tmp_path):
    before = committed_text("ea1b55a", "recipes/torchvision/build.sh")
    _, decision, build = _run(tmp_path, before)
    # CUDA_HOME=$PREFIX: the host prefix's nvcc, and no $PREFIX/include/nvjpeg.h, so no nvjpeg.
    assert decision == f"CUDA_HOME={build.parent / 'host'} nvjpeg_found=False"


def test_twin_the_build_script_stops_without_the_header_or_the_test_it_rewrites(tmp_path):
    no_header, _, _ = _run(tmp_path / "a", BUILD_SCRIPT.read_text(), header=False)
    assert no_header.returncode == 1
    assert "targets/x86_64-linux/include/nvjpeg.h: the host requirements must bring libnvjpeg-dev" in (
        no_header.stderr
    )
    changed, _, _ = _run(tmp_path / "b", BUILD_SCRIPT.read_text(), setup="nvjpeg_found = True")
    assert changed.returncode == 1
    assert "setup.py no longer tests" in changed.stderr
