"""The torchvision and torchaudio recipe tests, run on the released wheels of each version.

Neither project publishes an sdist, and the recipes have never been built, so the file layout
their tests inspect is only known from the wheels on PyPI, which the same setup.py produced.
Each recipe test that inspects a library (cuobjdump, readelf) is taken from the rendered recipe
of that version and run with bash in a venv that has the real wheel installed:
- the nvjpeg link check passes on the wheels, which link nvjpeg;
- the Pascal SASS check finds the libraries and refuses them, because the wheels carry no
  sm_60/sm_61 code (the reason the channel builds these packages);
- with those libraries replaced by a real nvcc build for sm_60/sm_61, the same check passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from support.repo import RECIPES, VARIANT_CONFIG

from pascal_forge.recipes.plan import make_plan
from pascal_forge.upstream.artifacts import UpstreamArtifact, fetch

pytestmark = pytest.mark.slow


# The cp311 manylinux x86_64 wheels (this machine's Python), sha256 as PyPI lists them.
WHEEL_SHA256 = {
    ("torchvision", "0.24.1"): "a0f106663e60332aa4fcb1ca2159ef8c3f2ed266b0e6df88de261048a840e0df",
    ("torchvision", "0.29.0"): "85fa54bec1f7d9227b5e4e201ed4bac92247ee10fb19148d92f9836e3e91d5c3",
    ("torchaudio", "2.9.1"): "8327e21f51dced2b6de3ac6a63f04bae9be9bc213e151f85c76164568c7ebc3d",
    ("torchaudio", "2.11.0"): "1a07ec72fd6f26a588c39b5f029e0130d16bb40bc4221635580bf8fb18fcbc80",
}
WHEELS = {
    (name, version): UpstreamArtifact(name, f"{name}-{version}-cp311-cp311-manylinux_2_28_x86_64.whl", sha256)
    for (name, version), sha256 in WHEEL_SHA256.items()
}
# The libraries each release's SASS check must examine, relative to site-packages.
CUDA_LIBRARIES = {
    ("torchvision", "0.24.1"): ["torchvision/_C.so"],
    ("torchvision", "0.29.0"): ["torchvision/_C_stable.so"],
    ("torchaudio", "2.9.1"): ["torchaudio/lib/libtorchaudio.so", "torchaudio/lib/libctc_prefix_decoder.so"],
    ("torchaudio", "2.11.0"): [
        "torchaudio/lib/libtorchaudio.abi3.so",
        "torchaudio/lib/torchaudio_prefixctc.abi3.so",
    ],
}
PASCAL_KERNEL = "__global__ void scale(float* x, float a) { x[threadIdx.x] *= a; }\n"


@pytest.fixture(scope="module")
def recipe_tests() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The rendered tests of every torchvision/torchaudio version the matrix builds."""
    plan = make_plan(RECIPES, VARIANT_CONFIG, Path("channel-not-built"))
    tests: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for build in plan.builds:
        if build.output.recipe in ("torchvision", "torchaudio"):
            recipe = build.output.rendered.recipe.to_dict()
            tests.setdefault((recipe["package"]["name"], recipe["package"]["version"]), recipe["tests"])
    return tests


def _library_checks(tests: list[dict[str, Any]], tool: str, mentions: str = "") -> list[str]:
    """The script of each test that brings `tool`'s package into its environment (and names `mentions`)."""
    scripts = [
        _script_text(test["script"])
        for test in tests
        if tool in (test.get("requirements") or {}).get("run", [])
    ]
    return [script for script in scripts if mentions in script]


def _script_text(script: str | list[str] | dict[str, Any]) -> str:
    # A rendered script is a string, a list of lines, or a mapping whose `content` is either.
    content = script["content"] if isinstance(script, dict) else script
    return content if isinstance(content, str) else "\n".join(content)


def _released_venv(key: tuple[str, str], upstream_cache: Path, tmp_path: Path) -> Path:
    """A venv with the release's wheel installed by pip, nothing else (the checks import nothing)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--no-index", str(fetch(WHEELS[key], upstream_cache))],
        check=True,
    )  # fmt: skip
    return venv


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _run(script: str, venv: Path, cuda12: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # bash -e, as strict as a test runner can be; the scripts must not depend on it either way.
    path = f"{venv / 'bin'}:{cuda12 / 'bin'}:{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", script],
        env={"PATH": path, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def pascal_library(cuda12: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared library with sm_60 and sm_61 SASS, as our build makes them (compiled once)."""
    work = tmp_path_factory.mktemp("pascal-library")
    source = work / "scale.cu"
    source.write_text(PASCAL_KERNEL)
    library = work / "libscale.so"
    subprocess.run(
        [str(cuda12 / "bin" / "nvcc"), "-shared", "-Xcompiler", "-fPIC", str(source), "-o", str(library),
         "-gencode", "arch=compute_60,code=sm_60", "-gencode", "arch=compute_61,code=sm_61"],
        check=True,
    )  # fmt: skip
    return library


@pytest.mark.parametrize("key", list(WHEELS), ids=[f"{name}-{version}" for name, version in WHEELS])
def test_the_sass_check_examines_each_releases_cuda_libraries(
    key: tuple[str, str],
    recipe_tests,
    cuda12: Path,
    pascal_library: Path,
    upstream_cache: Path,
    tmp_path: Path,
) -> None:
    (script,) = _library_checks(recipe_tests[key], "cuda-cuobjdump")
    venv = _released_venv(key, upstream_cache, tmp_path)
    site = _site_packages(venv)

    released = _run(script, venv, cuda12, tmp_path)
    # Found and read, and refused: the released wheels carry no Pascal SASS.
    first = CUDA_LIBRARIES[key][0]
    assert released.returncode != 0, released.stdout
    assert f"no sm_60/sm_61 SASS in {site / first}" in released.stdout, released.stdout + released.stderr

    for library in CUDA_LIBRARIES[key]:
        shutil.copyfile(pascal_library, site / library)
    rebuilt = _run(script, venv, cuda12, tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr


@pytest.mark.parametrize("version", ["0.24.1", "0.29.0"])
def test_the_nvjpeg_check_passes_on_the_released_image_extension(
    version: str, recipe_tests, cuda12: Path, upstream_cache: Path, tmp_path: Path
) -> None:
    key = ("torchvision", version)
    (script,) = _library_checks(recipe_tests[key], "binutils", "libnvjpeg")
    venv = _released_venv(key, upstream_cache, tmp_path)
    result = _run(script, venv, cuda12, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_twin_the_nvjpeg_check_refuses_an_image_extension_without_it(
    recipe_tests, cuda12: Path, pascal_library: Path, upstream_cache: Path, tmp_path: Path
) -> None:
    key = ("torchvision", "0.29.0")
    (script,) = _library_checks(recipe_tests[key], "binutils", "libnvjpeg")
    venv = _released_venv(key, upstream_cache, tmp_path)
    # What setup.py builds when it misses nvjpeg: an image extension that does not link it.
    shutil.copyfile(pascal_library, _site_packages(venv) / "torchvision" / "image_stable.so")
    result = _run(script, venv, cuda12, tmp_path)
    assert result.returncode != 0
    assert "does not link libnvjpeg" in result.stdout


@pytest.mark.parametrize(
    ("key", "assumed"),
    [
        (("torchaudio", "2.9.1"), "torchaudio/lib/libtorchaudio.abi3.so"),
        (("torchvision", "0.29.0"), "torchvision/image.so"),
    ],
    ids=["torchaudio-2.9.1", "torchvision-0.29.0"],
)
def test_twin_the_names_the_first_recipes_assumed_are_not_in_those_releases(
    key: tuple[str, str], assumed: str, upstream_cache: Path
) -> None:
    # The recipes of 0f24d7b looked for these fixed names, taken from the other release.
    with zipfile.ZipFile(fetch(WHEELS[key], upstream_cache)) as wheel:
        names = set(wheel.namelist())
    assert assumed not in names
    assert set(CUDA_LIBRARIES[key]) <= names


# torchvision 0.29.2 (py3-none): the same libraries as 0.29.0, linked without libtorch_python.
TORCHVISION_0292 = UpstreamArtifact(
    "torchvision",
    "torchvision-0.29.2-py3-none-manylinux_2_28_x86_64.whl",
    "0875f7a23bd298813240f716c56df44ce72ddb45146589442a38edd0e1f59637",
)


def _independence_check(recipe_tests, key: tuple[str, str]) -> str:
    (script,) = _library_checks(recipe_tests[key], "binutils", "not Python-independent")
    return script


@pytest.mark.parametrize(
    ("key", "wheel"),
    [
        (("torchaudio", "2.11.0"), WHEELS[("torchaudio", "2.11.0")]),
        (("torchvision", "0.29.0"), TORCHVISION_0292),
    ],
    ids=["torchaudio-2.11.0", "torchvision-0.29.2"],
)
def test_the_python_independence_check_passes_on_libraries_without_python(
    key, wheel, recipe_tests, cuda12: Path, upstream_cache: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # Unpacked rather than installed: the checks read files only, and this machine's pip
    # constraints stop at torchvision 0.29.1.
    with zipfile.ZipFile(fetch(wheel, upstream_cache)) as archive:
        archive.extractall(_site_packages(venv))
    result = _run(_independence_check(recipe_tests, key), venv, cuda12, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_twin_the_python_independence_check_refuses_a_library_that_lists_libtorch_python(
    recipe_tests, cuda12: Path, upstream_cache: Path, tmp_path: Path
) -> None:
    # 0.29.0 as released lists libtorch_python.so (one per Python in this channel) though it
    # uses none of its symbols; our build links --as-needed so that it does not.
    key = ("torchvision", "0.29.0")
    venv = _released_venv(key, upstream_cache, tmp_path)
    result = _run(_independence_check(recipe_tests, key), venv, cuda12, tmp_path)
    assert result.returncode != 0
    assert "_C_stable.so needs libpython or libtorch_python: not Python-independent" in result.stdout
