"""vLLM on Pascal, proved on the released sdists with recipes/vllm's patches applied.

Every test runs for both stacks' releases (the `vllm_release` fixture): 0.14.0 with
triton 3.6.0 and the torch 2.9.1 headers, 0.34.0 with triton 3.8.0 and torch 2.14.0.

- each series applies without fuzz, and a stale patch names its file and hunk;
- vLLM's own platform code on a GPU of capability 6.0/6.1 picks TRITON_ATTN and float16
  and refuses bf16, FP8 KV cache, the 7.0+ backends and AWQ checkpoints with the GPU limit
  named (and for AWQ, what runs instead), while GPTQ passes;
- (slow) vLLM's Triton kernels, launched by vLLM's own launchers, compile for sm_60/sm_61
  with the patched triton of the stack and its bundled ptxas and fit 48 KB of shared memory;
- (slow) vLLM's CMake selects a Pascal source set offline in both CUDA 12 branches of its
  arch list (12.6 and 12.9), and every file compiles with a CUDA 12 nvcc for sm_60 and
  sm_61 against the stack's torch headers;
- (0.34.0) `vllm serve`'s app builds without the packages the series drops.
Each check has a twin on the unpatched sdist that shows it fails there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import support.expected as expect
from support.vllm import ARCH_LIST, CAPABILITIES, RELEASES, VARIANT_CONFIG, VLLM_RECIPE

from pascal_forge.checks.vllm.compile import (
    VllmCheckError,
    VllmRelease,
    compile_sources,
    configure_pascal_build,
    format_kernel_table,
    gencode_archs,
    run_triton_probe,
)
from pascal_forge.pascal import SHARED_MEMORY_PER_BLOCK
from pascal_forge.recipes.patches import PatchError, apply_series, check_recipe_patches

# Every check here imports vLLM or its build tools from the vllm-checks extra.
pytestmark = pytest.mark.vllm_checks

TRITON_ATTN = "vllm.v1.attention.backends.triton_attn.TritonAttentionBackend"
# Compiled kernels kept between runs (CI keeps .cache/); the first run compiles everything.
TRITON_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "triton-probe"


# --------------------------------------------------------------------------- patches


def test_series_applies_without_fuzz(upstream_cache: Path) -> None:
    applied = check_recipe_patches(VLLM_RECIPE, VARIANT_CONFIG, upstream_cache)
    assert applied.keys() == RELEASES.keys()
    for version, count in applied.items():
        assert count == len(list(VLLM_RECIPE.patch_dir(version).glob("*.patch"))) > 0, version


def test_stale_patch_names_file_and_hunk(vllm_release: VllmRelease, stock_vllm: Path, tmp_path: Path) -> None:
    # The prefix_prefill patch against a file whose context moved on upstream.
    patch = VLLM_RECIPE.patch_dir(vllm_release.version) / "0005-prefix-prefill-pascal-tiles.patch"
    stale = tmp_path / patch.name
    stale.write_text(patch.read_text().replace(" IS_TURING = ", " IS_TURING_GPU = "))
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "ops"
        (tree / "vllm/v1/attention/ops").mkdir(parents=True)
        source = "vllm/v1/attention/ops/prefix_prefill.py"
        (tree / source).write_text((stock_vllm / source).read_text())
        with pytest.raises(PatchError, match=r"hunk #1 of vllm/v1/attention/ops/prefix_prefill\.py"):
            apply_series([stale], tree)


# --------------------------------------------------------------------------- platform


def _child_report(mode: str, vllm_tree: Path, deps: Path | None, *args: str) -> dict:
    """Run `python -m pascal_forge.checks.vllm.compile MODE ARGS... REPORT` on `vllm_tree`; its report."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / f"{mode}.json"
        scripts = Path(__file__).resolve().parent.parent / "scripts"
        path = [*([str(deps)] if deps else []), str(vllm_tree), str(scripts)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
        env |= {"PYTHONPATH": os.pathsep.join(path), "CUDA_VISIBLE_DEVICES": ""}
        env |= {"HF_HUB_OFFLINE": "1"}  # nothing here may wait on the network
        result = subprocess.run(
            [sys.executable, "-m", "pascal_forge.checks.vllm.compile", mode, *args, str(report)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert report.is_file(), (result.stdout + result.stderr)[-4000:]
        return json.loads(report.read_text())


def _platform_report(vllm_tree: Path, deps: Path | None, capability: int) -> dict:
    return _child_report("platform", vllm_tree, deps, str(capability))


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_platform_selects_triton_attn_and_float16(
    vllm_release: VllmRelease, patched_vllm: Path, vllm_deps: Path | None, capability: int
) -> None:
    report = _platform_report(patched_vllm, vllm_deps, capability)
    print(json.dumps(report, indent=1))
    version = f"{capability // 10}.{capability % 10}"
    assert report["capability"] == version
    assert report["backend"] == TRITON_ATTN
    assert report["supported_dtypes"] == ["torch.float16", "torch.float32"]
    assert report["auto_dtype_for_bf16_model"] == "torch.float16"
    assert report["fp16_refusal"] == "" and report["auto_kv_refusal"] == ""
    # Each refusal names the GPU's capability, the limit and the alternative.
    assert "at least 8.0" in report["bf16_refusal"] and f"capability {version}" in report["bf16_refusal"]
    assert "--dtype=half" in report["bf16_refusal"]
    for key in ("fp8_kv_refusal", "fp8_e5m2_kv_refusal"):
        if vllm_release.version == "0.14.0":  # no int8 cache to serve it with
            assert "7.0 or newer" in report[key] and f"capability {version}" in report[key]
            assert "--kv-cache-dtype auto" in report[key]
        else:  # 0037
            assert report[key] == ""
    if vllm_release.version != "0.14.0":
        assert report["fp8_kv_served_as"] == "int8_per_token_head"
    for key in ("flash_attn_refusal", "mla_refusal"):
        assert f"compute capability {version}" in report[key] and "FlashAttention needs 8.0" in report[key]
        assert "use TRITON_ATTN" in report[key]
    # AWQ runs on 6.x through the Triton AWQ kernels (0018, 0036; the twin below refuses it), and
    # GPTQ through Exllama. What stays refused, and 0010's hint, are the engine matrix's
    # (tests/test_vllm_engine.py).
    assert report["awq_refusal"] == "" and report["gptq_refusal"] == ""
    if vllm_release.version == "0.34.0":
        # int8 KV cache with per-(token, head) scales needs no dp4a, so 6.0 keeps it too.
        assert report["int8_kv_refusal"] == ""
        assert report["int8_kv_backend"] == TRITON_ATTN


def test_stock_platform_accepts_fp8_kv_cache_on_pascal(
    vllm_release: VllmRelease, stock_vllm: Path, vllm_deps: Path | None
) -> None:
    """Twin: without the patches FP8 KV cache passes the config check and fails later in Triton."""
    report = _platform_report(stock_vllm, vllm_deps, 61)
    assert report["fp8_kv_refusal"] == ""
    # ... as FP8, which no Pascal kernel reads (0037 serves it with the int8 cache instead).
    assert report["fp8_kv_served_as"] == "fp8"
    assert "use TRITON_ATTN" not in report["flash_attn_refusal"]
    if vllm_release.version == "0.14.0":
        # The AWQ refusal stops at the capabilities and leaves the user to guess what would run.
        assert report["awq_refusal"].endswith("Current capability: 61.")
    else:
        # 0.34.0 gets no further than fa_utils' import of the vllm-flash-attn a Pascal build
        # lacks (patch 0009).
        assert "vllm.vllm_flash_attn requires the CUDA flash attention extensions" in report["awq_refusal"]


# --------------------------------------------------------------------------- Triton kernels


@pytest.mark.slow
@pytest.mark.parametrize("capability", CAPABILITIES, ids=lambda capability: f"sm_{capability}")
def test_triton_kernels_compile_and_fit_pascal(
    vllm_release: VllmRelease,
    patched_vllm: Path,
    patched_triton: tuple[Path, Path],
    vllm_deps: Path | None,
    capability: int,
) -> None:
    """One capability per test, so CI can run the P40's (sm_61) where its hour allows both: the
    two compile the same tiles (every figure of docs/vllm-0.34.0.md's table is equal), sm_61's
    with dp4a available, which makes it the stricter check of the int8 KV cache below."""
    triton_dir, ptxas = patched_triton
    start = time.monotonic()
    results = run_triton_probe(
        triton_dir,
        ptxas,
        patched_vllm,
        capability,
        vllm_release.version,
        vllm_deps,
        triton_cache=TRITON_CACHE,
    )
    print(f"vLLM {vllm_release.version} sm_{capability}: Triton probe took {time.monotonic() - start:.0f} s")
    print(format_kernel_table(results))
    assert results
    # The int8 KV cache kernels use no dp4a (sm_61 has it, sm_60 not), so 6.0 runs them too.
    assert not [r for r in results if r.case.startswith("int8 kv") and r.dp4a]
    # A case that compiled nothing has a row that does not fit ("not compiled" or its error).
    failed = [r for r in results if not r.fits]
    assert not failed, "\n".join(
        f"{r.case} / {r.kernel} sm_{r.capability}: {r.error or r.shared}" for r in failed
    )


# Twins: cases whose released tiles ask more than Pascal's 48 KB per block on sm_61.
STOCK_OVERFLOWS = {
    # 128x64 tiles: 98,304 B.
    "prefix_prefill h128": "prefix_prefill h128",
    # Gemma3's 32-key tiles in float32 at head 256: 51,200 B (patch 0015 puts Pascal's rule first).
    "gemma3 fp32": "unified_attn prefill h256 gemma3 sw1024 fp32",
    # 64-row encoder tiles at head 128: 65,536 B; 0.34.0's own tile fit counts 40 KB (patch 0004).
    "encoder h128": "encoder attention h128",
}


@pytest.mark.slow
@pytest.mark.parametrize("only", STOCK_OVERFLOWS.values(), ids=STOCK_OVERFLOWS.keys())
def test_stock_triton_kernels_overflow_pascal_shared_memory(
    vllm_release: VllmRelease,
    stock_vllm: Path,
    patched_triton: tuple[Path, Path],
    vllm_deps: Path | None,
    only: str,
) -> None:
    if only == STOCK_OVERFLOWS["encoder h128"] and vllm_release.version == "0.14.0":
        pytest.skip("measured for 0.34.0, whose own tile fit might have hidden it; 0.14.0 has none")
    triton_dir, ptxas = patched_triton
    results = run_triton_probe(triton_dir, ptxas, stock_vllm, 61, vllm_release.version, vllm_deps, only=only)
    print(format_kernel_table(results))
    attention = [r for r in results if r.case.startswith(only) and r.kernel != "reduce_segments"]
    assert attention and all(r.ok and r.shared > SHARED_MEMORY_PER_BLOCK for r in attention)


# --------------------------------------------------------------------------- CUDA sources


# The CUDA versions vLLM's arch list branches on: the recipe's 12.6 variant takes the
# "older" branch (from 7.0), 12.9 the ">= 12.8" one (from 7.5). Debian's 12.4 nvcc takes the
# first by itself; no CUDA >= 12.8 nvcc that still targets sm_60 installs from PyPI (the
# nvidia-cuda-nvcc-cu12 12.9 wheel holds ptxas and libnvvm, no nvcc) or Debian (12.5 at
# most), so the second branch is selected by telling CMake the compiler is 12.9.
CUDA_BRANCHES = {"cuda12.6-branch": None, "cuda12.9-branch": "12.9"}
# Files only a Pascal source set has: the half-atomic MoE kernel and the GPTQ exllama GEMM.
PASCAL_SOURCES = {
    "0.14.0": {"csrc/moe/moe_wna16.cu", "csrc/attention/paged_attention_v1.cu"},
    "0.34.0": {"csrc/moe/moe_wna16.cu", "csrc/quantization/gptq/q_gemm.cu", "csrc/cache_kernels.cu"},
}


def _configure(
    release: VllmRelease,
    tree: Path,
    build: Path,
    cuda12: Path,
    torch_include: Path,
    cutlass_source: Path,
    cuda_version: str | None = None,
) -> tuple[list, str]:
    return configure_pascal_build(
        tree,
        build,
        cuda12,
        torch_include,
        cutlass_source,
        arch_list=ARCH_LIST,
        torch_version=release.torch_version,
        cuda_version=cuda_version,
    )


@pytest.mark.slow
@pytest.mark.parametrize("cuda_version", CUDA_BRANCHES.values(), ids=CUDA_BRANCHES.keys())
def test_cmake_selects_a_pascal_source_set_offline(
    vllm_release: VllmRelease,
    patched_vllm: Path,
    tmp_path: Path,
    cuda12: Path,
    torch_include: Path,
    cutlass_source: Path,
    cuda_version: str | None,
) -> None:
    start = time.monotonic()
    commands, log = _configure(
        vllm_release, patched_vllm, tmp_path, cuda12, torch_include, cutlass_source, cuda_version
    )
    branch = cuda_version or "nvcc 12.4"
    print(f"vLLM {vllm_release.version} configure ({branch}): {time.monotonic() - start:.0f} s")
    assert f"CUDA supported target architectures: {expect.ARCH_LIST}" in log
    sources = {c.source for c in commands}
    assert PASCAL_SOURCES[vllm_release.version] <= sources
    assert not any("marlin" in s or "machete" in s or "c3x" in s or "flash" in s for s in sources)
    for command in commands:
        if command.source.endswith(".cu"):
            assert gencode_archs(command.command) == [f"sm_{c}" for c in expect.CAPABILITIES], command.source


@pytest.mark.slow
@pytest.mark.parametrize("cuda_version", CUDA_BRANCHES.values(), ids=CUDA_BRANCHES.keys())
def test_stock_cmake_drops_pascal_and_fetches(
    vllm_release: VllmRelease,
    stock_vllm: Path,
    tmp_path: Path,
    cuda12: Path,
    torch_include: Path,
    cutlass_source: Path,
    cuda_version: str | None,
) -> None:
    """Twin: the released CMakeLists empties the arch list (0.33.0: fatally) and wants to clone."""
    configure = lambda: _configure(  # noqa: E731
        vllm_release, stock_vllm, tmp_path, cuda12, torch_include, cutlass_source, cuda_version
    )
    if vllm_release.version == "0.14.0":
        commands, log = configure()
        assert "-- CUDA supported target architectures: \n" in log
        # FetchContent wanted sources it was not allowed to clone.
        for project in ("triton_kernels", "flashmla", "qutlass", "vllm-flash-attn"):
            assert f"_deps/{project}-src" in log, project
        wna16 = next(c for c in commands if c.source == "csrc/moe/moe_wna16.cu")
        assert gencode_archs(wna16.command) == []
    else:
        with pytest.raises(VllmCheckError, match="No supported CUDA architectures"):
            configure()


@pytest.mark.slow
def test_patched_cmake_fetches_nothing_even_when_allowed(
    vllm_release: VllmRelease,
    patched_vllm: Path,
    tmp_path: Path,
    cuda12: Path,
    torch_include: Path,
    cutlass_source: Path,
) -> None:
    """The skip names every external project, so no FetchContent step is left to download."""
    if vllm_release.version == "0.14.0":
        pytest.skip("0.14.0's series predates this message")
    _, log = _configure(vllm_release, patched_vllm, tmp_path, cuda12, torch_include, cutlass_source)
    assert "Not fetching the external projects (triton_kernels, DeepGEMM" in log
    assert "_deps/" not in log.replace("_deps/cutlass", "")


# 0.34.0 moved DeepGEMM's include up into the CUDA sources (for an SM100 kernel's headers), out
# of the block the 0.33.0 form of patch 0002 skips; 0.34.0's 0002 guards it too.
DEEPGEMM_GUARD = (
    '  if (NOT VLLM_GPU_LANG STREQUAL "CUDA" OR VLLM_EXTERNAL_PROJECT_ARCHS)\n'
    "    include(cmake/external_projects/deepgemm.cmake)\n"
    "  endif()\n"
)


@pytest.mark.slow
def test_twin_0002_without_its_deepgemm_hunk_clones_deepgemm(
    vllm_release: VllmRelease,
    patched_vllm: Path,
    tmp_path: Path,
    cuda12: Path,
    torch_include: Path,
    cutlass_source: Path,
) -> None:
    """Twin: with 0.33.0's 0002 (the later skip alone) an offline configure of 0.34.0 stops at
    DeepGEMM's clone, although that patch applies to 0.34.0 without fuzz."""
    if vllm_release.version == "0.14.0":
        pytest.skip("0.14.0 includes DeepGEMM only in the skipped block")
    tree = tmp_path / "tree"
    shutil.copytree(patched_vllm, tree, symlinks=True)
    cmake_lists = tree / "CMakeLists.txt"
    text = cmake_lists.read_text()
    assert DEEPGEMM_GUARD in text
    unguarded = "  include(cmake/external_projects/deepgemm.cmake)\n"
    cmake_lists.write_text(text.replace(DEEPGEMM_GUARD, unguarded))
    with pytest.raises(VllmCheckError, match="deepgemm"):
        _configure(vllm_release, tree, tmp_path / "build", cuda12, torch_include, cutlass_source)


@pytest.mark.slow
@pytest.mark.full_cuda_compile
def test_every_selected_cuda_source_compiles_for_sm60_sm61(
    vllm_release: VllmRelease,
    patched_vllm: Path,
    tmp_path: Path,
    cuda12: Path,
    torch_include: Path,
    cutlass_source: Path,
) -> None:
    commands, _ = _configure(vllm_release, patched_vllm, tmp_path, cuda12, torch_include, cutlass_source)
    start = time.monotonic()
    results = compile_sources(commands, jobs=2)
    total = time.monotonic() - start
    for r in sorted(results, key=lambda r: -r.seconds):
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.seconds:7.1f} s  {r.source}")
    print(f"vLLM {vllm_release.version}: {len(results)} files, {total:.0f} s wall with 2 jobs")
    failed = [r for r in results if not r.ok]
    assert not failed, "\n".join(f"{r.source}:\n{r.errors[:1500]}" for r in failed)


# Sources the released tree cannot compile for sm_60/sm_61, each with the fixing patch and the
# error the released file gives with the same command.
PASCAL_COMPILE_FIXES = {
    # 0003's half add (and 0042's fp32 loop on sm_61)
    "csrc/moe/moe_wna16.cu": "atomicAdd",
    # 0043's fenced release/acquire (0.33.0 on); ptxas: "Feature '.acquire' requires .target sm_70 or higher"
    "csrc/attention/dcp_utils/dcp_direct_a2a_lse_reduce.cu": "requires .target sm_70",
}


@pytest.mark.slow
@pytest.mark.parametrize("source", PASCAL_COMPILE_FIXES, ids=lambda source: Path(source).stem)
def test_fixed_source_compiles_for_pascal_and_the_released_one_does_not(
    source: str,
    vllm_release: VllmRelease,
    patched_vllm: Path,
    stock_vllm: Path,
    tmp_path: Path,
    cuda12: Path,
    torch_include: Path,
    cutlass_source: Path,
) -> None:
    """The source with the series compiles to sm_60 and sm_61 SASS with the build's own command.
    Twin: the released tree, with the same command, fails with the error the patch fixes."""
    commands, _ = _configure(vllm_release, patched_vllm, tmp_path, cuda12, torch_include, cutlass_source)
    selected = [c for c in commands if c.source == source]
    if not selected:
        pytest.skip(f"vLLM {vllm_release.version} does not build {source}")
    (command,) = selected
    assert {f"sm_{c}" for c in expect.CAPABILITIES} <= set(gencode_archs(command.command))
    stock_command = command.command.replace(str(patched_vllm.resolve()), str(stock_vllm.resolve()))
    stock = type(command)(command.source, stock_command, command.directory)
    patched, released = compile_sources([command, stock], jobs=1)
    assert patched.ok, patched.errors[:3000]
    assert not released.ok and PASCAL_COMPILE_FIXES[source] in released.errors


# --------------------------------------------------------------------------- vllm serve


# Packages the 0.34.0 series drops from the requirements (import names), and
# model_hosting_container_standards, which conda-forge lacks; mcp 2.x (patch 0023) is not on
# conda-forge either. apache-tvm-ffi is not among them: xgrammar, which vLLM needs, requires it.
DROPPED_IMPORTS = (
    "flashinfer",
    "tilelang",
    "cudnn",
    "cutlass",
    "quack",
    "tokenspeed_mla",
    "humming",
    "PyNvVideoCodec",
    "fastsafetensors",
    "instanttensor",
    "model_hosting_container_standards",
    "mcp",
)


def _serve_report(release: VllmRelease, vllm_tree: Path, deps: Path | None) -> dict:
    if release.version == "0.14.0":
        pytest.skip("0.14.0 imports model_hosting_container_standards at module level (its patch 0011)")
    return _child_report("serve", vllm_tree, deps, ",".join(DROPPED_IMPORTS))


@pytest.mark.slow
def test_serve_app_builds_without_dropped_packages(
    vllm_release: VllmRelease, patched_vllm: Path, vllm_deps: Path | None
) -> None:
    """`vllm serve`'s server module imports and builds its FastAPI app without them."""
    report = _serve_report(vllm_release, patched_vllm, vllm_deps)
    assert report["present"] == [], report["present"]
    assert report["error"] == ""
    assert "/v1/chat/completions" in report["routes"] and "/invocations" not in report["routes"]


@pytest.mark.slow
def test_stock_serve_app_needs_model_hosting_container_standards(
    vllm_release: VllmRelease, stock_vllm: Path, vllm_deps: Path | None
) -> None:
    """Twin: the released build_app dies on the missing SageMaker package."""
    report = _serve_report(vllm_release, stock_vllm, vllm_deps)
    assert "No module named 'model_hosting_container_standards'" in report["error"]
