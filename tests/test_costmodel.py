"""The P40/P100 cost model (scripts/pascal_forge/checks/costmodel, benchmarks/bench_costmodel.py).

Quick: the PTX counter on nvcc 12.4's PTX of tests/fixtures/costmodel/loops.cu (one dot-product
loop in half2, its fp32 twin, a dp4a one), and the pricing of those loops on both cards.
Slow: the same fixture recompiled by nvcc; vLLM 0.34.0's released Exllama loop (nvcc) and Triton W4A16
kernel (patched triton 3.8.0) flagged for fp16 arithmetic on sm_61, the proposed fp32 GEMV not;
the Triton AWQ GEMM as released (fp16) and with patch 0044 (fp32 below 7.0).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from pascal_forge.checks.costmodel import kernels as k
from pascal_forge.checks.costmodel.cards import P40, P100
from pascal_forge.checks.costmodel.compile import CostModelError
from pascal_forge.checks.costmodel.kernels import Kernel, Launch
from pascal_forge.checks.costmodel.model import (
    QWEN3_8B,
    QWEN3_30B_A3B,
    QWEN3_32B,
    Setup,
    fp16_in_hot_loop,
    predict,
    price,
    step_launches,
)
from pascal_forge.checks.costmodel.ptx import count_ptx
from pascal_forge.checks.costmodel.table import load_table
from pascal_forge.checks.vllm.compile import VllmCheckError, current_release, releases

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "costmodel"
HALF2 = "_Z9dot_half2PK7__half2S1_Pfi"
FP32 = "_Z8dot_fp32PK6float2S1_Pfi"
DP4A = "_Z8dot_dp4aPKiS0_Pii"


def _fixture(capability: int) -> dict:
    return count_ptx((FIXTURES / f"loops-sm{capability}.ptx").read_text())


def test_counter_finds_fp16_in_the_half2_loop_and_not_in_its_fp32_twin() -> None:
    counts = _fixture(61)
    half2, fp32 = counts[HALF2], counts[FP32]
    assert [loop.depth for loop in half2.loops] == [1]
    assert half2.hot.fp16 == 1 and half2.hot.fp16_lanes == 2 and half2.hot.fp32_fma == 0
    assert fp16_in_hot_loop(half2)
    assert fp32.hot.fp16 == 0 and fp32.hot.fp32_fma == 2
    assert not fp16_in_hot_loop(fp32)
    # Loads: two __half2 (4 bytes each) against two float2 (8 bytes each) per iteration.
    assert (half2.hot.global_load_bytes, fp32.hot.global_load_bytes) == (8, 16)


def test_counter_finds_dp4a_where_nvcc_can_emit_it() -> None:
    assert _fixture(61)[DP4A].hot.dp4a == 1
    assert _fixture(61)[HALF2].hot.dp4a == 0
    # compute_60 has no dp4a: the fixture's guard leaves the kernel out there.
    assert DP4A not in _fixture(60)


def test_launch_counts_multiply_the_hot_loop_by_its_iterations() -> None:
    half2 = _fixture(61)[HALF2]
    once = half2.launch(threads=1, iterations={1: 1})
    many = half2.launch(threads=1, iterations={1: 1000})
    assert many.fp16 - once.fp16 == 999
    assert many.other_alu - once.other_alu == 999 * half2.hot.other_alu


def _gemv_launch(kernel: Kernel, pairs: int) -> Launch:
    """The loop as a 4-bit GEMV's would run: one iteration per pair of weights, one byte each."""
    return Launch("dot", kernel, float(pairs), pairs // 256, {1: pairs})


def test_the_p40_prices_the_half2_loop_at_its_fp16_rate_and_the_p100_does_not() -> None:
    half2_kernel = Kernel("dot_half2", "CUDA", k.CudaSource("loops.cu"), HALF2)
    fp32_kernel = Kernel("dot_fp32", "CUDA", k.CudaSource("loops.cu"), FP32)
    table = {
        (kernel.name, cap): _fixture(cap)[kernel.entry]
        for kernel in (half2_kernel, fp32_kernel)
        for cap in (60, 61)
    }
    half2, fp32 = _gemv_launch(half2_kernel, 1 << 26), _gemv_launch(fp32_kernel, 1 << 26)
    on_p40, on_p100 = price(half2, P40, table), price(half2, P100, table)
    assert on_p40.bound == "fp16" and on_p40.fp16_hot_loop
    assert on_p100.bound != "fp16"
    # The fp32 twin does the same work bandwidth-bound on a P40, several times faster.
    twin = price(fp32, P40, table)
    assert twin.bound == "DRAM" and not twin.fp16_hot_loop
    assert twin.seconds < on_p40.seconds / 4


def test_a_kernel_missing_from_the_table_is_an_error_not_a_guess() -> None:
    setup = Setup(QWEN3_8B, "exllama", 1)
    with pytest.raises(CostModelError, match="no PTX counts for .* on sm_61"):
        predict(setup, P40, {})


def test_fp16_weights_decode_at_the_bandwidth_bound_and_int4_bound_is_higher() -> None:
    fp16 = Setup(QWEN3_8B, "fp16", 1)
    steps = step_launches(fp16, 1, 1024, capability=P40.capability)
    gemms = [launch for launch in steps if launch.kernel.origin == "cuBLAS"]
    # Every weight of an fp16 model goes through cuBLAS, bandwidth-bound at one token.
    assert sum(launch.dram_bytes * launch.repeat for launch in gemms) >= 0.99 * fp16.weight_bytes_per_gpu()
    assert all(price(launch, P40, {}).bound == "DRAM" for launch in gemms)
    # 16.4 GB read per token on 346 GB/s: about 23 tok/s; GPTQ-int4 about 3x that.
    bound = P40.bandwidth / fp16.weight_bytes_per_gpu()
    assert 20 < bound < 25
    int4 = Setup(QWEN3_8B, "exllama", 1)
    assert 2.8 < fp16.weight_bytes_per_gpu() / int4.weight_bytes_per_gpu() < 3.5


def test_the_patched_exllama_prefill_gemm_is_fp32_on_a_p40_and_hgemm_on_a_p100() -> None:
    # Patch 0041 picks cuBLAS's fp32 compute at run time on capability 6.1 only.
    def gemms(linear: str, capability: int) -> list[Kernel]:
        steps = step_launches(Setup(QWEN3_8B, linear, 1), 512, 256, capability=capability)
        return [launch.kernel for launch in steps if "proj" in launch.op and launch.kernel.origin == "cuBLAS"]

    assert set(gemms("exllama-patched", P40.capability)) == {k.GEMM}
    assert set(gemms("exllama-patched", P100.capability)) == {k.HGEMM}
    assert set(gemms("exllama", P40.capability)) == {k.HGEMM}  # the twin: released Exllama, any card
    table = load_table()
    for card, same in ((P100, True), (P40, False)):
        rates = [
            predict(Setup(QWEN3_8B, linear, 1), card, table, 512, 256).tokens_per_second
            for linear in ("exllama", "exllama-patched")
        ]
        assert (rates[0] == rates[1]) is same, card.name


def test_the_fp32_gemm_capabilities_are_those_patch_0041_tests_for() -> None:
    import re

    version = current_release(REPO / "conda_build_config.yaml").version
    (patch,) = (REPO / "recipes" / "vllm" / "patches" / version).glob("0041-*.patch")
    (condition,) = re.findall(r"^\+\s*return major == (\d) && minor == (\d);", patch.read_text(), re.M)
    assert {int("".join(condition))} == k.FP32_GEMM_CAPABILITIES
    assert P40.capability in k.FP32_GEMM_CAPABILITIES and P100.capability not in k.FP32_GEMM_CAPABILITIES


def test_the_patched_moe_decode_runs_0042s_moe_wna16_and_the_before_rows_leave_it_out() -> None:
    def experts(linear: str) -> set[Kernel]:
        steps = step_launches(Setup(QWEN3_30B_A3B, linear, 2), 1, 1024, capability=P40.capability)
        return {launch.kernel for launch in steps if launch.op.startswith("experts")}

    assert experts("exllama-patched") == {k.MOE_WNA16_PATCHED} and k.MOE_WNA16_PATCHED.patched
    assert experts("exllama") == {k.MOE_WNA16}  # the twin: vLLM's kernel, counted as before
    # Every patch the "before" tree leaves out exists in the current series, 0042 among them.
    version = current_release(REPO / "conda_build_config.yaml").version
    series = {
        p.name.split("-", 1)[0] for p in (REPO / "recipes" / "vllm" / "patches" / version).glob("*.patch")
    }
    assert "0042" in k.FP32_MATH_PATCHES and set(k.FP32_MATH_PATCHES) <= series


def test_the_cost_model_prices_the_current_stacks_release(tmp_path: Path) -> None:
    release = current_release(REPO / "conda_build_config.yaml")
    config = yaml.safe_load((REPO / "conda_build_config.yaml").read_text())
    assert release.version == max(config["vllm_version"], key=Version)
    assert release == list(releases(REPO / "conda_build_config.yaml").values())[-1]
    # The twin: a stack whose release the checks do not know is named, not a KeyError.
    unknown = tmp_path / "conda_build_config.yaml"
    unknown.write_text(yaml.safe_dump({**config, "vllm_version": [*config["vllm_version"][:-1], "0.99.0"]}))
    with pytest.raises(VllmCheckError, match=r"vllm_version 0\.99\.0 has no entry in .*CHECK_INPUTS"):
        current_release(unknown)
    # And a stack moved to another torch is not checked against the old torch's headers.
    torch = [v if v != release.torch_version else "2.99.0" for v in config["pytorch_version"]]
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump({**config, "pytorch_version": torch}))
    with pytest.raises(VllmCheckError, match=r"has torch 2\.99\.0, but its CHECK_INPUTS wheel is torch-"):
        current_release(moved)


# --------------------------------------------------------------------------- slow: real compilers


@pytest.mark.slow
def test_nvcc_writes_the_committed_fixture(tmp_path: Path) -> None:
    from support.vllm import setup_cuda12

    nvcc = setup_cuda12() / "bin" / "nvcc"
    output = tmp_path / "loops.ptx"
    subprocess.run(
        [str(nvcc), "-ptx", "-arch=compute_61", "-O3", str(FIXTURES / "loops.cu"), "-o", str(output)],
        check=True,
    )
    fresh, committed = count_ptx(output.read_text()), _fixture(61)
    assert {name: counts.hot for name, counts in fresh.items()} == {n: c.hot for n, c in committed.items()}


@pytest.mark.slow
def test_vllm_gptq_loops_run_fp16_on_sm61_and_the_proposed_gemv_does_not(vllm_toolchain) -> None:
    from pascal_forge.checks.costmodel.table import kernel_counts

    exllama = kernel_counts(k.EXLLAMA_GEMM, 61, vllm_toolchain)
    assert fp16_in_hot_loop(exllama)
    # About one half2 instruction per weight: 128 weights per thread per iteration.
    assert 100 < exllama.hot.fp16 < 200
    triton = kernel_counts(k.triton_w4a16_kernel(32, 64, 32, 1), 61, vllm_toolchain)
    assert fp16_in_hot_loop(triton)
    # tl.dot on Pascal's FMA path: a 32x64x32 tile over 128 threads is 512 fp32 FMAs each.
    assert triton.hot.fp32_fma == 512
    proposed = kernel_counts(k.PROPOSED_GEMV, 61, vllm_toolchain)
    assert not fp16_in_hot_loop(proposed)
    assert proposed.hot.fp32_fma + proposed.hot.fp32_other >= 128  # one per weight or more
    # The counts shipped for `pascal-forge bench` are these (else: --write-counts).
    shipped = load_table()
    for kernel, fresh in [
        (k.EXLLAMA_GEMM, exllama),
        (k.triton_w4a16_kernel(32, 64, 32, 1), triton),
        (k.PROPOSED_GEMV, proposed),
    ]:
        assert shipped[(kernel.name, 61)] == fresh, kernel.name


@pytest.mark.slow
def test_nvcc_refuses_dp4a_for_sm60_and_emits_it_for_sm61(tmp_path: Path) -> None:
    from support.vllm import setup_cuda12

    nvcc = setup_cuda12() / "bin" / "nvcc"
    source = tmp_path / "dp4a.cu"
    source.write_text("__global__ void k(const int* a, int* out) { out[0] = __dp4a(a[0], a[1], out[0]); }\n")
    results = {
        capability: subprocess.run(
            [
                str(nvcc),
                "-ptx",
                f"-arch=compute_{capability}",
                str(source),
                "-o",
                str(tmp_path / f"{capability}.ptx"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        for capability in (60, 61)
    }
    assert results[61].returncode == 0
    (kernel,) = count_ptx((tmp_path / "61.ptx").read_text()).values()
    assert kernel.outside.dp4a == 1
    assert results[60].returncode != 0 and "__dp4a" in results[60].stderr


@pytest.mark.slow
def test_the_proposed_gemv_computes_gptq_int4_times_fp16_in_triton_interpreter(vllm_toolchain) -> None:
    import json
    import os
    import sys

    repository = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(vllm_toolchain.triton_tree), "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(repository / "scripts" / "gpu" / "check_w4a16_gemv.py"),
            str(repository / k.PROPOSED_GEMV.source.path),
            "cpu",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.splitlines()[-1])
    assert errors["gptq_order"] < 1e-5
    assert errors["reversed_order"] > 0.1  # the twin: a wrong nibble order is caught


@pytest.mark.parametrize(
    ("linear", "tp", "model"),
    [("proposed-gemv", 1, QWEN3_8B), ("exllama-fp32", 1, QWEN3_8B), ("proposed-gemv", 2, QWEN3_32B)],
)
def test_on_paper_the_fp32_paths_reach_80_percent_of_the_p40_bound_and_todays_do_not(
    linear, tp, model
) -> None:
    # From the counts shipped with the package (the slow test holds them equal to a fresh compile).
    table = load_table()
    after = predict(Setup(model, linear, tp), P40, table)
    assert after.tokens_per_second >= 0.8 * after.bandwidth_bound_tokens_per_second
    assert not any(p.fp16_hot_loop for p in after.launches if "proj" in p.launch.op)
    for today in ("exllama", "triton-w4a16"):
        before = predict(Setup(model, today, tp), P40, table)
        assert before.tokens_per_second < 0.15 * before.bandwidth_bound_tokens_per_second
        # ... and on a P100 (fp16 at 2x) today's Exllama beats the fp32 rewrite: 6.0 stays on fp16.
    assert (
        predict(Setup(model, "exllama", tp), P100, table).tokens_per_second
        > predict(Setup(model, linear, tp), P100, table).tokens_per_second
    )


@pytest.mark.slow
def test_moe_wna16s_unrolled_remainder_counts_once_per_token(vllm_toolchain) -> None:
    from pascal_forge.checks.costmodel.table import kernel_counts

    moe = kernel_counts(k.MOE_WNA16, 61, vllm_toolchain)
    outer, inner = moe.hot_chain()
    # Per packed word (8 weights), one token: dequant (4 half2) + one remainder copy (12 half2).
    assert inner.body.fp16 == 48  # the m loop unrolled by 4: 4 x 12, not run for one token
    one_token = moe.launch(0, {1: 1, 2: 0}, {1: 1 / 3})
    static = moe.launch(0, {1: 1, 2: 0})
    assert round(one_token.fp16) == 16
    assert static.fp16 == 40  # the twin: a static count takes all three remainder copies
    assert outer.tail.fp16 == 36


@pytest.mark.slow
def test_0044s_awq_gemm_has_no_fp16_in_its_pascal_loop_and_the_released_one_has(
    vllm_toolchain, upstream_cache: Path, tmp_path: Path
) -> None:
    from pascal_forge.checks.costmodel.report import patched_toolchain
    from pascal_forge.checks.costmodel.table import kernel_counts

    tools = patched_toolchain(REPO, upstream_cache, tmp_path, vllm_toolchain.nvcc)
    for capability in (61, 60):
        released = kernel_counts(k.awq_gemm_kernel(1), capability, tools)
        # A 32x32x32 tile over 128 threads: 256 multiply-adds each, all fp16 as released.
        assert fp16_in_hot_loop(released) and released.hot.fp32_fma == 0
        assert released.hot.fp16 > 100
        fp32 = kernel_counts(k.awq_gemm_kernel(1, patched_for=capability), capability, tools)
        assert not fp16_in_hot_loop(fp32) and fp32.hot.fp32_fma == 256
