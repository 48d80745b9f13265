"""vLLM patch 0042: moe_wna16's dequant and dot loop runs in fp32 on sm_61, half2 on sm_60.

Quick: scripts/gpu/check_moe_wna16_fp32.py's CPU emulation of the fp32 loop (the kernel's
shared-memory input order, nibble shifts and zero-point nibbles) matches a float64 reference; the
twins pack the weights in another order, or the zero points of odd and even columns swapped, and
are caught.
Slow (4 compiles of moe_wna16.cu to PTX by nvcc 12.4, about 20 s each on an idle 2-core machine,
cached in .cache/costmodel-ptx): the PTX counter finds no fp16 arithmetic and no conversion in the
sm_61 hot loop of vLLM 0.34.0's moe_wna16.cu with the recipe's series, and finds fp16 in the same
file built with the series less 0042; sm_60 keeps the half2 loop.
(tests/test_vllm_pascal.py::test_fixed_source_compiles_for_pascal_and_the_released_one_does_not[moe_wna16-*]
compiles the patched file to sm_60/sm_61 SASS with vLLM's own nvcc command, for both versions.)
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
import check_moe_wna16_fp32 as moe  # noqa: E402
from make_moe_wna16_ptx import ENTRY  # noqa: E402

pytestmark = pytest.mark.vllm_checks

VERSION = current_release(REPO / "conda_build_config.yaml").version
PATCH = "0042"


def _emulation_error(pack_weights, pack_zeros, bit: int = 4) -> float:
    """Relative RMS error of the emulated fp32 loop on data packed by the given functions."""
    case = moe.Case(2, 4, 2, 256, 256, bit=bit, has_zp=True, routed=True)
    data = moe.make_data(np.random.default_rng(7), case)
    out = moe.emulate_fp32_loop(data, pack_weights(data.q, bit), pack_zeros(data.z, bit))
    return moe.relative_error(out, data.reference())


def _exllama_order(q: np.ndarray, bit: int) -> np.ndarray:
    """Exllama's shuffled nibble order (element 2i at bit 4i, 2i+1 at 16 + 4i): not moe_wna16's."""
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    e, n, kk = q.shape
    return moe.pack_weights(q.reshape(e, n, kk // 8, 8)[..., order].reshape(e, n, kk), bit)


def _odd_column_low(z: np.ndarray, bit: int) -> np.ndarray:
    """Zero points with the odd column in the low nibble."""
    return (z[:, 1::2, :] | (z[:, 0::2, :] << 4)).astype(np.uint8)


def test_fp32_loop_emulation_matches_float64() -> None:
    assert moe.cpu_check() == 0
    for bit in (4, 8):
        assert _emulation_error(moe.pack_weights, moe.pack_zeros, bit) < moe.FP32_LIMIT


def test_fp32_loop_emulation_catches_a_wrong_nibble_order() -> None:
    assert _emulation_error(_exllama_order, moe.pack_zeros) > 0.5


def test_fp32_loop_emulation_catches_swapped_zero_nibbles() -> None:
    assert _emulation_error(moe.pack_weights, _odd_column_low) > 0.1


@pytest.fixture(scope="module")
def moe_wna16_ptx(tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path):
    """PTX of moe_wna16.cu with the whole series and with the series less 0042, compute_61/60."""
    import torch
    from support.vllm import setup_cuda12

    from pascal_forge.checks.vllm.compile import patched_upstream
    from pascal_forge.recipes.recipe import Recipe

    recipe = Recipe(name="vllm", directory=REPO / "recipes" / "vllm")
    config = REPO / "conda_build_config.yaml"
    work = tmp_path_factory.mktemp("moe-wna16")
    trees = {
        "before": patched_upstream(
            recipe, config, work / "before", upstream_cache, VERSION, leave_out_patches=(PATCH,)
        ),
        "patched": patched_upstream(recipe, config, work / "patched", upstream_cache, VERSION),
    }
    nvcc = setup_cuda12() / "bin" / "nvcc"
    include = Path(torch.__file__).parent / "include"
    source = k.MOE_WNA16.source

    def counts(kind: str, capability: int, entry: str = k.MOE_WNA16.entry) -> KernelCounts:
        ptx = cuda_ptx(source, capability, trees[kind], include, nvcc, REPO / ".cache" / "costmodel-ptx")
        return select_entry(count_ptx(ptx), entry, source.path)

    return counts


@pytest.mark.slow
@pytest.mark.vllm_checks
@pytest.mark.parametrize("entry", [ENTRY.format(bit=4, groups=g) for g in (1, 4)])
def test_patched_sm61_hot_loop_has_no_fp16_and_the_series_without_0042_has(moe_wna16_ptx, entry: str) -> None:
    patched = moe_wna16_ptx("patched", 61, entry)
    assert not fp16_in_hot_loop(patched)
    chain = patched.hot_chain()
    # The word loop and the token loop unrolled by 4 in it: fp32 FMAs, no fp16; no conversion of
    # the activations (staged as float in shared memory), at most the group scale's per word.
    word, tokens = chain[-2].body, chain[-1].body
    assert word.fp16 == tokens.fp16 == 0
    assert tokens.cvt == 0 and word.cvt <= 2
    assert tokens.fp32_fma >= 32  # 4 tokens x 8 weights of one word
    # The twin: vLLM's half2 loop (the series less 0042) runs fp16 and converts per token on sm_61.
    before = moe_wna16_ptx("before", 61, entry)
    assert fp16_in_hot_loop(before) and before.hot_chain()[-1].body.fp16 >= 4 * 12
    assert before.hot_chain()[-1].body.cvt >= 8


@pytest.mark.slow
@pytest.mark.vllm_checks
def test_patched_sm60_keeps_the_half2_loop(moe_wna16_ptx) -> None:
    patched, before = moe_wna16_ptx("patched", 60), moe_wna16_ptx("before", 60)
    assert fp16_in_hot_loop(patched)
    assert patched.hot_chain()[-1].body == before.hot_chain()[-1].body
