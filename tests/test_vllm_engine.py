"""vLLM's engine built as a P40 (sm_61) and as a P100 (sm_60), on the CPU, for both stacks.

Each cell of the matrix (model family x quantization x KV-cache dtype) runs vLLM's own
start-up code up to the weights (pascal_forge.checks.vllm.engine): the engine config, the model class
with every layer's quantization method and create_weights on the meta device, the attention
backend, the KV-cache spec, the sampler and the structured-output backend. A cell works, or is
refused while the config is built with a message that names what to do instead; it never fails
at a later stage. docs/vllm-engine-matrix.md is this test's table (`PASCAL_FORGE_ENGINE_TABLE`
set to a folder writes it there).

The twins build the same cells on the series without this issue's fixes (ENGINE_FIXES) and
show each failure the fixes remove.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from support.vllm import VARIANT_CONFIG, VLLM_RECIPE

from pascal_forge.checks.vllm.compile import VllmRelease
from pascal_forge.checks.vllm.engine import (
    WAY_OUT,
    Cell,
    CellResult,
    format_matrix,
    matrix,
    run_engine_matrix,
)
from pascal_forge.recipes.patches import (
    apply_series,
    patch_check_target,
    recipe_patch_series,
    unpack_artifact,
)

pytestmark = [pytest.mark.vllm_checks, pytest.mark.slow]

# The patches of each series that this matrix asked for; the twins leave them out.
ENGINE_FIXES = {
    "0.14.0": (
        "0016-platform-cuda-refuse-bf16-kv-cache-on-pascal.patch",
        "0017-config-quantization-dtype-refusal-names-dtype-flag.patch",
        "0018-awq-triton-kernels-below-7-5.patch",
        "0019-compressed-tensors-wna16-below-7-0.patch",
    ),
    "0.34.0": (
        "0030-sampler-native-without-flashinfer.patch",
        "0031-auto-gptq-exllama-below-marlin.patch",
        "0032-inc-gptq-format-below-marlin.patch",
        "0033-moe-wna16-name-why-no-backend.patch",
        "0034-platform-cuda-refuse-octave-kv-cache.patch",
        "0035-config-quantization-dtype-refusal-names-dtype-flag.patch",
        "0036-auto-awq-triton-kernels-below-7-5.patch",
        "0037-platform-cuda-fp8-kv-cache-as-int8-per-token-head-on-pascal.patch",
        "0038-compressed-tensors-wna16-below-7-0.patch",
        "0039-fp8-dequantize-linear-weights-at-load-below-7-5.patch",
    ),
}
# Formats peers run that the current series opens on 6.x (issue 26, item 3): the cell, and what
# it must build with (a detail of the cell and the value it must hold, or contain).
OPENED = {
    "0.14.0": {
        Cell("dense", "awq"): ("quant_methods", "AWQLinearMethod"),
        Cell("moe", "awq"): ("quant_methods", "MoeWNA16Method"),
        Cell("dense", "ct-w4a16"): ("linear_kernels", "ExllamaLinearKernel"),
        Cell("dense", "ct-w8a16"): ("linear_kernels", "ExllamaLinearKernel"),
    },
    "0.34.0": {
        Cell("dense", "awq"): ("quant_methods", "AutoAWQLinearMethod"),
        Cell("dense", "fp16", "fp8"): ("cache_dtype", "int8_per_token_head"),
        Cell("dense", "ct-w4a16"): ("linear_kernels", "ExllamaLinearKernel"),
        Cell("dense", "ct-w8a16"): ("linear_kernels", "ExllamaLinearKernel"),
        Cell("dense", "ct-w4a16-asym"): ("linear_kernels", "TritonW4A16LinearKernel"),
        Cell("dense", "fp8"): ("quant_methods", "Fp8DequantizedLinearMethod"),
        Cell("dense", "fp8-block"): ("quant_methods", "Fp8DequantizedLinearMethod"),
    },
}
# What a P100 (6.0) adds: the start-up paths that read the capability, one cell each.
SM60_CELLS = (
    Cell("dense", "fp16"),
    Cell("dense", "gptq-4bit"),
    Cell("moe", "gptq-4bit"),
    Cell("hybrid", "fp16"),
    Cell("dense", "awq"),
    Cell("dense", "fp16", "fp8"),
    Cell("dense", "ct-w4a16"),
    Cell("dense", "fp8-block"),
)


def _cells(capability: int) -> list[Cell] | None:
    if capability == 60:
        return list(SM60_CELLS)
    return None  # the whole matrix, every KV-cache dtype the release offers


def _check(results: list[CellResult]) -> None:
    print(format_matrix(results))
    failed = [r for r in results if r.verdict == "fails"]
    assert not failed, "\n".join(f"{r.cell.name} sm_{r.capability}: {r.summary}" for r in failed)
    works = {(r.cell, r.capability) for r in results if r.verdict == "works"}
    for r in results:
        if r.verdict == "refused":
            assert WAY_OUT.search(r.message), f"{r.cell.name}: the refusal names no way out: {r.message}"
            # The hint never sends the user to a method that is refused in turn.
            for method in re.findall(r"--quantization[ =](\S+?)[),.\s]", r.message):
                assert method == "gptq", f"{r.cell.name}: the hint names {method}"
                assert (Cell(r.cell.family, "gptq-4bit"), r.capability) in works or r.cell.family != "dense"
        else:
            assert r.details["attention_backends"] == ["TRITON_ATTN"], r.cell.name
            assert r.details["sampler"] == "forward_native", r.cell.name
            assert r.details.get("v2_sampler_flashinfer") in (None, False), r.cell.name
            assert r.details["structured_output"] == "XgrammarGrammar", r.cell.name
    for cell in (Cell("dense", "fp16"), Cell("dense", "gptq-4bit"), Cell("moe", "gptq-4bit")):
        capabilities = {r.capability for r in results if r.cell == cell}
        assert all((cell, c) in works for c in capabilities), f"{cell.name} must work"


def _write_table(version: str, capability: int, results: list[CellResult]) -> None:
    folder = os.environ.get("PASCAL_FORGE_ENGINE_TABLE")
    if folder:
        Path(folder, f"vllm-{version}-sm_{capability}.md").write_text(format_matrix(results) + "\n")


@pytest.mark.parametrize("capability", [61, 60])
def test_engine_builds_as_pascal(
    vllm_release: VllmRelease,
    patched_vllm: Path,
    patched_triton: tuple[Path, Path],
    engine_deps: Path,
    capability: int,
) -> None:
    version = vllm_release.version
    cells = _cells(capability)
    extra = DTYPE_CELLS if capability == 61 else ()
    everything = run_engine_matrix(
        patched_vllm, engine_deps, capability, version, cells, patched_triton[0], extra=extra
    )
    results = [r for r in everything if r.cell not in extra]
    _write_table(version, capability, results)
    _check(results)
    if extra:
        _check_named_dtypes(everything)
    if cells is None:  # the whole matrix: every family, method and KV-cache dtype
        families = {"dense", "gemma3", "hybrid", "moe"} | ({"vision"} if version == "0.14.0" else set())
        assert {r.cell.family for r in results} == families
    opened = OPENED.get(version, {})
    if cells is None:
        assert set(opened) <= {r.cell for r in results}
    for r in (r for r in results if r.cell in opened):
        detail, value = opened[r.cell]
        assert r.verdict == "works", r.summary
        assert value == r.details[detail] or value in r.details[detail], (r.cell.name, r.details)
    gptq = next(r for r in results if r.cell == Cell("dense", "gptq-4bit"))
    assert {"GPTQLinearMethod", "AutoGPTQLinearMethod"} & set(gptq.details["quant_methods"])
    if version != "0.14.0":
        assert gptq.details["linear_kernels"] == ["ExllamaLinearKernel"]


# A refusal's named --dtype, followed (built beside the sm_61 matrix, in its child). Gemma 3
# resolves --dtype auto to float32 on 6.x (no bfloat16), which GPTQ refuses; vLLM refuses
# float16 for Gemma 3 itself. 0017/0035 named --dtype float16 there until the GPU run of
# 2026-12-07 met the second refusal: the pair sent the user back and forth. The dense model in
# float32 shows a named flag that does work.
DTYPE_CELLS = (
    Cell("dense", "gptq-4bit", dtype="float32"),
    Cell("dense", "gptq-4bit", dtype="float16"),
    Cell("gemma3", "gptq-4bit"),
    Cell("gemma3", "fp16", dtype="float16"),
)


def _check_named_dtypes(results: list[CellResult]) -> None:
    by_cell = {r.cell: r for r in results}
    for r in results:
        # "Pass --dtype X." is for this checkpoint; other hints name --dtype for the unquantized one.
        for named in re.findall(r"Pass --dtype (\w+)\.", r.user_message):
            followed = Cell(r.cell.family, r.cell.quantization, r.cell.kv_cache_dtype, named)
            assert followed in by_cell, f"{r.cell.name} names --dtype {named}, which this test does not build"
            assert by_cell[followed].verdict == "works", f"{r.cell.name} -> {by_cell[followed].summary}"
    dense_float32 = by_cell[Cell("dense", "gptq-4bit", dtype="float32")]
    assert dense_float32.verdict == "refused" and "Pass --dtype float16." in dense_float32.user_message
    # The twin of the loop: the flag the old message named is refused for Gemma 3 ...
    gemma_float16 = by_cell[Cell("gemma3", "fp16", dtype="float16")]
    assert gemma_float16.verdict == "refused" and "does not support float16" in gemma_float16.user_message
    # ... so the GPTQ refusal names no --dtype, and says what to serve instead.
    gemma_gptq = by_cell[Cell("gemma3", "gptq-4bit")]
    assert gemma_gptq.verdict == "refused" and "--dtype" not in gemma_gptq.user_message
    assert "Serve its unquantized checkpoint instead (--model" in gemma_gptq.user_message


@pytest.fixture(scope="session")
def series_without_fixes(
    vllm_release: VllmRelease, tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path
) -> Path:
    """The release's sdist with today's series less this matrix's fixes (the twins' tree)."""
    version = vllm_release.version
    target = patch_check_target(VLLM_RECIPE, version)
    assert target is not None
    tree = unpack_artifact(target, tmp_path_factory.mktemp(f"vllm-{version}-unfixed"), upstream_cache)
    fixes = ENGINE_FIXES.get(version, ())
    series = [p for p in recipe_patch_series(VLLM_RECIPE, VARIANT_CONFIG, version) if p.name not in fixes]
    apply_series(series, tree, target.path_map)
    return tree


# Each fix's twin: the cell and what it does on the series without the fixes.
TWINS = {
    "0.14.0": {
        Cell("dense", "fp16", "bfloat16"): ("fails", "No valid attention backend"),
        Cell("gemma3", "gptq-4bit"): ("refused", "Supported dtypes: [torch.float16]"),
        Cell("dense", "awq"): ("refused", "Minimum capability: 75. Current capability: 61."),
        Cell("dense", "ct-w8a16"): ("refused", "Minimum capability: 70. Current capability: 61."),
    },
    "0.34.0": {
        Cell("dense", "fp16"): ("fails", "No module named 'flashinfer'"),
        Cell("dense", "gptq-4bit"): ("fails", "Marlin does not support weight_bits = uint4b8"),
        Cell("dense", "autoround"): ("fails", "Only 4-bit and 8-bit symmetric quantization"),
        Cell("moe", "gptq-8bit"): ("fails", "Marlin does not support weight_bits = uint8b128"),
        Cell("dense", "fp16", "octave_k3v4"): ("fails", "No valid attention backend"),
        Cell("gemma3", "gptq-4bit"): ("refused", "Supported dtypes: [torch.float16, torch.bfloat16]"),
        Cell("dense", "awq"): ("refused", "Minimum capability: 75. Current capability: 61."),
        Cell("dense", "fp16", "fp8"): ("refused", "--kv-cache-dtype fp8 needs a GPU of compute capability"),
        Cell("dense", "ct-w4a16"): ("refused", "Minimum capability: 70. Current capability: 61."),
        Cell("dense", "fp8-block"): ("refused", "Minimum capability: 75. Current capability: 61."),
    },
}
# The twin refusals above name no flag: what 0017/0035 add.
NO_WAY_OUT = {Cell("gemma3", "gptq-4bit")}


def test_twin_series_without_fixes_fails_as_pascal(
    vllm_release: VllmRelease,
    series_without_fixes: Path,
    patched_triton: tuple[Path, Path],
    engine_deps: Path,
) -> None:
    twins = TWINS[vllm_release.version]
    results = run_engine_matrix(
        series_without_fixes, engine_deps, 61, vllm_release.version, list(twins), patched_triton[0]
    )
    print(format_matrix(results))
    for r in results:
        verdict, message = twins[r.cell]
        assert (r.verdict, message in r.message) == (verdict, True), r.summary
        if r.cell in NO_WAY_OUT:
            assert "--dtype" not in r.message, r.summary


def test_format_matrix_is_one_row_per_cell() -> None:
    cells = matrix("0.14.0", ("auto", "fp8"), ["dense"], ["fp16"])
    rows = [CellResult(c, cap, "works") for c in cells for cap in (60, 61)]
    with tempfile.TemporaryDirectory():
        table = format_matrix(rows).splitlines()
    assert table[0] == "| family | quantization | KV cache | sm_60 | sm_61 |"
    assert len(table) == 2 + len(cells)
