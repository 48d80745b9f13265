"""vLLM patch 0040: Exllama's 4-bit GPTQ loop does its arithmetic in fp32 on sm_61, half2 on sm_60.

Quick: scripts/gpu/check_gptq_fp32.py's CPU emulation of the fp32 loop (the 2^23 mantissa trick
over Exllama's shuffled nibble order) matches a float64 reference; the twin packs the nibbles in
GPTQ's unshuffled order and is caught.
Slow (4 compiles of q_gemm.cu by nvcc 12.4, about 1 minute on an idle 2-core machine, cached in
.cache/costmodel-ptx): the PTX counter finds no fp16 arithmetic in the sm_61 hot loop of vLLM
0.34.0's q_gemm.cu with the recipe's series, and finds it in the released file; sm_60 keeps half2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pascal_forge.checks.costmodel import kernels as k
from pascal_forge.checks.costmodel.compile import cuda_ptx, select_entry
from pascal_forge.checks.costmodel.model import fp16_in_hot_loop
from pascal_forge.checks.costmodel.ptx import KernelCounts, count_ptx
from pascal_forge.checks.vllm.compile import current_release

# The README's quick set-up has no numpy; the vllm-checks extra brings it (CI's second pytest
# run takes the tests marked vllm_checks).
np = pytest.importorskip(
    "numpy", reason="the fp32 loop's emulation needs numpy: pip install -e '.[vllm-checks]'"
)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "gpu"))
import check_gptq_fp32 as gptq  # noqa: E402

pytestmark = pytest.mark.vllm_checks

VERSION = current_release(REPO / "conda_build_config.yaml").version


def _emulation_error(pack) -> float:
    """Relative RMS error of the emulated fp32 loop on weights packed by `pack`, vs float64."""
    rng = np.random.default_rng(7)
    k, n, m = 512, 256, 4
    q = rng.integers(0, 16, size=(k, n))
    z = rng.integers(0, 15, size=(k // gptq.GROUP, n))
    scales = rng.uniform(0.002, 0.02, size=z.shape).astype(np.float16)
    a = rng.standard_normal((m, k)).astype(np.float16)
    reference = gptq.float64_product(a, q, z, scales)
    out = gptq.emulate_fp32_loop(a, pack(q), gptq.pack_zeros(z), scales)
    return float(np.sqrt(np.mean((out - reference) ** 2) / np.mean(reference**2)))


def _unshuffled(q: np.ndarray) -> np.ndarray:
    """GPTQ's checkpoint order (nibble j at bit 4j), before vLLM's gptq_shuffle."""
    blocks = q.reshape(q.shape[0] // 8, 8, q.shape[1]).astype(np.uint32)
    packed = np.zeros(blocks[:, 0, :].shape, dtype=np.uint32)
    for j in range(8):
        packed |= blocks[:, j, :] << np.uint32(4 * j)
    return packed


def test_fp32_loop_emulation_matches_float64() -> None:
    assert gptq.cpu_check() == 0
    assert _emulation_error(gptq.pack_weights) < gptq.FP32_LIMIT


def test_fp32_loop_emulation_catches_a_wrong_nibble_order() -> None:
    assert _emulation_error(_unshuffled) > 0.5


@pytest.fixture(scope="module")
def q_gemm_ptx(tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path):
    """PTX of q_gemm.cu, released and with the series, for compute_61 and compute_60."""
    import torch
    from support.vllm import setup_cuda12

    from pascal_forge.checks.vllm.compile import patched_upstream
    from pascal_forge.recipes.patches import patch_check_target, unpack_artifact
    from pascal_forge.recipes.recipe import Recipe

    recipe = Recipe(name="vllm", directory=REPO / "recipes" / "vllm")
    work = tmp_path_factory.mktemp("gptq")
    trees = {
        "released": unpack_artifact(patch_check_target(recipe, VERSION), work / "released", upstream_cache),
        "patched": patched_upstream(
            recipe, REPO / "conda_build_config.yaml", work / "patched", upstream_cache, VERSION
        ),
    }
    nvcc = setup_cuda12() / "bin" / "nvcc"
    include = Path(torch.__file__).parent / "include"
    source = k.EXLLAMA_GEMM.source

    def counts(kind: str, capability: int, m_count: int) -> KernelCounts:
        ptx = cuda_ptx(source, capability, trees[kind], include, nvcc, REPO / ".cache" / "costmodel-ptx")
        return select_entry(count_ptx(ptx), k.exllama_kernel(m_count).entry, source.path)

    return counts


@pytest.mark.slow
@pytest.mark.vllm_checks
@pytest.mark.parametrize("m_count", [1, 8])
def test_patched_sm61_hot_loop_has_no_fp16_and_released_one_has(q_gemm_ptx, m_count: int) -> None:
    patched = q_gemm_ptx("patched", 61, m_count)
    assert not fp16_in_hot_loop(patched)
    hot = patched.hot
    assert hot.fp16 == 0 and hot.fp32_fma >= 128 * m_count  # 128 weights per thread per trip, per row
    # Within the ~8.5 lane instructions a P40 can spend per 4-bit weight and stay bandwidth-bound.
    assert (hot.fp32_fma + hot.fp32_other + hot.other_alu + hot.cvt) / 128 < 8.5 * m_count
    # The twin: vLLM as released runs half2 in that loop on sm_61.
    released = q_gemm_ptx("released", 61, m_count)
    assert fp16_in_hot_loop(released) and released.hot.fp16 >= 64 * m_count


@pytest.mark.slow
@pytest.mark.vllm_checks
def test_patched_sm60_keeps_the_half2_loop(q_gemm_ptx) -> None:
    patched, released = q_gemm_ptx("patched", 60, 1), q_gemm_ptx("released", 60, 1)
    assert fp16_in_hot_loop(patched)
    assert patched.hot == released.hot
