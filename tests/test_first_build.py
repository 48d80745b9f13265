"""What a first real build of each recipe would have met, checked on the recipes and the real
released files (issue 13). The structural build (test_structural.py) covers the items that
need a build: staging builds run once, run exports, pins."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.repo import RECIPES, REPO, VARIANT_CONFIG

from pascal_forge.checks.triton.suite import prepare_tree
from pascal_forge.recipes.patches import apply_series, patch_check_target, recipe_patch_series
from pascal_forge.recipes.plan import make_plan
from pascal_forge.recipes.recipe import Recipe
from pascal_forge.upstream.artifacts import UpstreamArtifact, fetch

# nvidia-cuda-runtime-cu12 12.9.79, the wheel of the CUDA runtime headers (cuda.h among them).
CUDA_RUNTIME_HEADERS = UpstreamArtifact(
    project="nvidia-cuda-runtime-cu12",
    filename="nvidia_cuda_runtime_cu12-12.9.79-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    sha256="25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3",
)


def _staging_and_outputs(recipe_name: str) -> list[dict[str, Any]]:
    plan = make_plan(RECIPES, VARIANT_CONFIG, Path("channel-not-built"))
    return [b.output.rendered.recipe.to_dict() for b in plan.builds if b.output.recipe == recipe_name]


def _names(specs: list[Any]) -> set[str]:
    return {s.split()[0] for s in specs if isinstance(s, str)}


def host_gaps(rendered: list[dict[str, Any]]) -> dict[str, set[str]]:
    """For each pytorch build, the staging host's packages its own host lacks (Python aside)."""
    gaps = {}
    for recipe in rendered:
        if recipe["package"]["name"] != "pytorch":
            continue
        staging_host = _names(recipe["staging_caches"][0]["requirements"]["host"])
        own_host = _names(recipe["requirements"]["host"])
        gaps[recipe["build"]["string"]] = staging_host - own_host - {"python"}
    return gaps


def test_each_pytorch_output_hosts_what_the_staging_build_hosted() -> None:
    """Item 3: each pytorch reruns the CMake build and needs every library of the C++ build."""
    gaps = host_gaps(_staging_and_outputs("pytorch"))
    assert len(gaps) == 16
    assert all(not missing for missing in gaps.values()), gaps


def test_twin_a_pytorch_host_list_that_drifted_is_named(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES, recipes)
    recipe_file = recipes / "pytorch" / "recipe.yaml"
    recipe = yaml.safe_load(recipe_file.read_text())
    pytorch = next(o for o in recipe["outputs"] if (o.get("package") or {}).get("name") == "pytorch")
    pytorch["requirements"]["host"].remove("libcublas-dev")
    recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False, width=1000))
    plan = make_plan(recipes, VARIANT_CONFIG, tmp_path / "channel")
    gaps = host_gaps(
        [b.output.rendered.recipe.to_dict() for b in plan.builds if b.output.recipe == "pytorch"]
    )
    assert all(missing == {"libcublas-dev"} for missing in gaps.values())


def test_cudnn_stays_below_9_11_which_has_no_kernels_for_pascal() -> None:
    """L6: cuDNN 9.11 dropped sm_50..sm_72 (pytorch/pytorch#162574)."""
    for recipe in _staging_and_outputs("pytorch"):
        sections = [recipe["requirements"], *(c["requirements"] for c in recipe.get("staging_caches") or [])]
        hosts = [section.get("host") or [] for section in sections]
        for host in hosts:
            if "cudnn" in _names(host):
                assert "cudnn >=9.10,<9.11.0a0" in host


def test_cpu_only_recipe_tests_never_load_libcuda() -> None:
    """Item 8: `import vllm.platforms.cuda` and the `vllm` command need libcuda.so.1, which a
    CPU-only runner lacks; they belong to the GPU-gated test only."""
    loads_libcuda = ("vllm.platforms.cuda", "vllm --help", "vllm --version", "vllm._C")
    for recipe in _staging_and_outputs("vllm"):
        for test in recipe.get("tests") or []:
            text = json.dumps(test)
            if "nvidia-smi" in text:
                continue
            assert not [needle for needle in loads_libcuda if needle in text], test


def test_twin_the_old_vllm_tests_loaded_libcuda_on_cpu() -> None:
    old = subprocess.run(
        ["git", "show", "cec5a91:recipes/vllm/recipe.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if old.returncode != 0:
        pytest.skip("the repository history is not there")
    tests = yaml.safe_load(old.stdout)["outputs"][0]["tests"]
    cpu_tests = [json.dumps(t) for t in tests if "nvidia-smi" not in json.dumps(t)]
    assert any("vllm.platforms.cuda" in t for t in cpu_tests)
    assert any("vllm --help" in t for t in cpu_tests)


def test_triton_build_drops_werror_from_the_cmake_flags(tmp_path: Path) -> None:
    """L2: the sed in build.sh turns triton's `-Werror` (CMakeLists.txt line 146 of 3.6.0, as
    conda-forge/triton-feedstock patch 0001 quotes it) off, and leaves other flags alone."""
    script = (RECIPES / "triton" / "build.sh").read_text()
    sed = next(
        line.strip() for line in script.splitlines() if "Werror" in line and line.strip().startswith("sed")
    )
    cmake = tmp_path / "CMakeLists.txt"
    line = '  set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} -Werror -Wno-covered-switch-default")\n'
    cmake.write_text(line)
    subprocess.run(["bash", "-c", sed], cwd=tmp_path, check=True)
    assert cmake.read_text() == line.replace(" -Werror ", " ")


# --------------------------------------------------------------------------- real released files


@pytest.mark.slow
def test_vllm_setup_survives_a_build_without_triton_kernels(upstream_cache: Path, tmp_path: Path) -> None:
    """Item 5: vLLM's own cmake_build_ext.run, after a Pascal build (patch 0002 builds no
    triton_kernels), must not die copying build_lib/vllm/third_party/triton_kernels."""
    patched = _vllm_tree(upstream_cache, tmp_path / "patched", patched=True)
    _run_post_build_copy(patched, tmp_path / "build-lib")


@pytest.mark.slow
def test_twin_the_0_14_0_series_without_0012_dies_after_the_compile(
    upstream_cache: Path, tmp_path: Path
) -> None:
    tree = _vllm_tree(upstream_cache, tmp_path / "without-0012", patched=True, leave_out="0012-")
    with pytest.raises(FileNotFoundError, match="third_party/triton_kernels"):
        _run_post_build_copy(tree, tmp_path / "build-lib")


def _vllm_tree(cache: Path, destination: Path, *, patched: bool, leave_out: str = "") -> Path:
    recipe = Recipe("vllm", RECIPES / "vllm")
    target = patch_check_target(recipe, "0.14.0")
    archive = fetch(target.artifact, cache)
    destination.mkdir(parents=True)
    with tarfile.open(archive) as sdist:
        sdist.extractall(destination, filter="data")
    tree = destination / target.strip_prefix
    if patched:
        series = [
            p
            for p in recipe_patch_series(recipe, VARIANT_CONFIG, "0.14.0")
            if leave_out not in p.name or not leave_out
        ]
        apply_series(series, tree, target.path_map)
    return tree


def _run_post_build_copy(tree: Path, build_lib: Path) -> None:
    """Run cmake_build_ext.run from the tree's setup.py, its compile step (build_ext.run) done.

    The class is taken from setup.py as written and given a base whose run() is the finished
    compile: a build_lib holding what a Pascal build produces (the extension, no
    triton_kernels). _is_cuda() is true, as in the recipe's build.
    """
    source = (tree / "setup.py").read_text()
    module = ast.parse(source)
    (cls,) = [n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "cmake_build_ext"]
    cls.bases = [ast.Name("CompiledBase", ast.Load())]
    namespace: dict[str, Any] = {
        "os": os,
        "shutil": shutil,
        "CompiledBase": type("CompiledBase", (), {"run": lambda self: None}),
        "_is_cuda": lambda: True,
        "_is_hip": lambda: False,
    }
    code = compile(ast.fix_missing_locations(ast.Module([cls], [])), str(tree / "setup.py"), "exec")
    exec(code, namespace)
    (build_lib / "vllm").mkdir(parents=True)
    (build_lib / "vllm" / "_C.abi3.so").write_bytes(b"")
    command = namespace["cmake_build_ext"].__new__(namespace["cmake_build_ext"])
    command.build_lib = str(build_lib)
    cwd = Path.cwd()
    os.chdir(tree)
    try:
        command.run()
    finally:
        os.chdir(cwd)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.6.0", "3.8.0"])
def test_triton_launcher_finds_cuda_h_in_the_conda_environment(
    upstream_cache: Path, tmp_path: Path, version: str
) -> None:
    """Item 9: an offline build bundles no CUDA headers; the launcher triton compiles at first use
    must find cuda.h where conda-forge's cuda-cudart-dev puts it. Compiled for real with gcc."""
    tree = _offline_triton(upstream_cache, tmp_path, version, patched=True)
    assert _compile_launcher_probe(tree, _conda_env_with_cuda_h(upstream_cache, tmp_path)) == 0


@pytest.mark.slow
def test_twin_stock_triton_offline_misses_cuda_h(upstream_cache: Path, tmp_path: Path) -> None:
    tree = _offline_triton(upstream_cache, tmp_path, "3.6.0", patched=False)
    assert _compile_launcher_probe(tree, _conda_env_with_cuda_h(upstream_cache, tmp_path)) != 0


def _offline_triton(cache: Path, tmp_path: Path, version: str, *, patched: bool) -> Path:
    recipe = Recipe("triton", RECIPES / "triton")
    series = recipe_patch_series(recipe, VARIANT_CONFIG, version) if patched else []
    prepared = prepare_tree(
        patch_check_target(recipe, version), series, cache.parent / "pascal-kernels", cache
    )
    tree = tmp_path / f"triton-{version}"
    shutil.copytree(prepared, tree, symlinks=True)
    # What TRITON_OFFLINE_BUILD=1 leaves out of the package: the bundled CUDA headers.
    shutil.rmtree(tree / "triton" / "backends" / "nvidia" / "include")
    return tree


def _conda_env_with_cuda_h(cache: Path, tmp_path: Path) -> Path:
    env = tmp_path / "env"
    if not env.is_dir():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
        include = env / "targets" / "x86_64-linux" / "include"
        include.mkdir(parents=True)
        with zipfile.ZipFile(fetch(CUDA_RUNTIME_HEADERS, cache)) as wheel:
            for name in wheel.namelist():
                if name.startswith("nvidia/cuda_runtime/include/"):
                    (include / Path(name).name).write_bytes(wheel.read(name))
    return env


def _compile_launcher_probe(tree: Path, env: Path) -> int:
    """In `env`'s Python: compile a C file that includes cuda.h with the NVIDIA backend's include dirs."""
    probe = (
        "import subprocess, sys, tempfile, os\n"
        "from triton.backends.nvidia import driver\n"
        "src = os.path.join(tempfile.mkdtemp(), 'probe.c')\n"
        "open(src, 'w').write('#include \"cuda.h\"\\nint probe(void) { return CUDA_VERSION; }\\n')\n"
        "cmd = ['gcc', '-c', src, '-o', src + '.o'] + ['-I' + d for d in driver.include_dirs]\n"
        "sys.exit(subprocess.run(cmd).returncode)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(env / "bin" / "python"), "-c", probe], env=environment, check=False).returncode
