"""Numerics of the INT8 per-token-head KV cache in Pascal form: what patch 0037 serves an FP8 request with.

On compute capability 6.x, patch 0037 (recipes/vllm/patches/0.34.0/) turns --kv-cache-dtype fp8
(fp8_e4m3, fp8_e5m2, fp8_per_token_head) into int8_per_token_head. That cache is written by
vLLM's triton_reshape_and_cache_flash_per_token_head_quant (one float32 scale = absmax / 127 per
token and KV head) and read by the INT8 branch of its unified attention kernel. This check runs
both, through vLLM's own launchers (scripts/gpu/vllm_import.py: vLLM's CudaPlatform answering as
a Tesla P40, so the Pascal tiles of patch 0015 are chosen), every launch compiled for sm_61 by
scripts/gpu/pascal_form.py, on paged batches of decode and mixed prefill/decode sequences.

References, in float32 (scripts/gpu/vllm_cases.attention_reference): `quantized`, attention
over the K/V rounded as the cache documents (round(x / scale) to int8, times scale), and
`unquantized`, attention over the fp16 K/V themselves (what the int8 cache costs).
Bounds (max abs error; V ~ N(0, 1)): QUANTIZED_BOUND = 2e-2 (twice the fp16 attention bound
of run_vllm_numerics.py: the kernel also rounds the dequantized K/V to fp16; Triton's interpreter
gives up to 1.3e-2 on the mixed prefill case) and UNQUANTIZED_BOUND = 5e-2. Twin: the same cache
read with every scale set to 1 (the scales not applied), which must be off by more than
TWIN_FLOOR = 1.0. Each launch must be sm_61 PTX within 48 KB of shared memory.

On the lent GPU, from the repository root, with the carry of scripts/gpu/prepare_gpu_carry.py
(its vLLM 0.34.0 tree with our series, and its triton overlay: our triton series on the machine's
own triton 3.6.0, as run_gpu_numerics.sh uses for vLLM's kernels):

    PYTHONPATH=scripts/gpu:scripts python scripts/gpu/check_int8_kv_cache.py \
        --vllm .gpu-carry/vllm-0.34.0-pascal.tgz --triton-overlay .gpu-carry/triton-overlay --out $OUT

Without a GPU, Triton's interpreter runs the same cases (about 90 s on 2 cores):

    TRITON_INTERPRET=1 PYTHONPATH=scripts/gpu:scripts:PATCHED_TRITON \
        python scripts/gpu/check_int8_kv_cache.py \
        --vllm VLLM_TREE_OR_TGZ --cpu

Prints one JSON line per case and a summary; writes int8_kv_cache.json under --out; exits 1
when a bound or the twin fails. Times are the lent GPU's, not a P40's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vllm_cases as vc
from carry_inputs import check_arguments, finish, triton_check

QUANTIZED_BOUND = 2e-2
UNQUANTIZED_BOUND = 5e-2
TWIN_FLOOR = 1.0
# (name, head size, kv heads, query heads per kv head, block size, query lens, context lens)
CASES = [
    ("decode h128 gqa4", 128, 2, 4, 16, (1, 1, 1), (100, 37, 300)),
    ("mixed prefill/decode h128 gqa4", 128, 2, 4, 16, (40, 1, 7), (0, 70, 25)),
    ("decode h64 gqa8 bs32", 64, 1, 8, 32, (1, 1), (500, 9)),
]


def quantize_reference(x: torch.Tensor) -> torch.Tensor:
    """[tokens, heads, head] rounded as the cache stores it: one scale per token and head."""
    scale = (x.abs().amax(dim=-1, keepdim=True) / 127.0).clamp_min(1e-6)
    return torch.round(x / scale).clamp(-128, 127) * scale


def run_case(ops: dict, case: tuple, device: str) -> dict:
    name, head, kv_heads, gqa, block_size, query_lens, context_lens = case
    generator = torch.Generator().manual_seed(len(name) * 7919 + head)
    seq_lens = tuple(c + q for c, q in zip(context_lens, query_lens, strict=True))
    kv = vc.paged_kv(seq_lens, kv_heads, head, block_size, generator)
    heads = kv_heads * gqa
    q = torch.cat([torch.randn(n, heads, head, generator=generator) for n in query_lens]).half()
    keys = [k.half() for k in kv.keys]
    values = [v.half() for v in kv.values]
    positions = [torch.arange(n) for n in seq_lens]
    blocks = [kv.block_table[i, p // block_size].long() for i, p in enumerate(positions)]
    slots = torch.cat([b * block_size + p % block_size for b, p in zip(blocks, positions, strict=True)])
    cache_shape = (kv.num_blocks, block_size, kv_heads, head)
    k_cache = torch.zeros(cache_shape, dtype=torch.int8, device=device)
    v_cache = torch.zeros(cache_shape, dtype=torch.int8, device=device)
    k_scales = torch.ones(cache_shape[:3], dtype=torch.float32, device=device)
    v_scales = torch.ones(cache_shape[:3], dtype=torch.float32, device=device)
    mode = ops["KVQuantMode"].INT8_PER_TOKEN_HEAD
    ops["per_token_head_quant"](
        torch.cat(keys).to(device),
        torch.cat(values).to(device),
        k_cache,
        v_cache,
        k_scales,
        v_scales,
        slots.to(device),
        kv_quant_mode=mode,
    )
    scale = head**-0.5
    cu = torch.tensor([0, *torch.tensor(query_lens).cumsum(0).tolist()], dtype=torch.int32)

    def attend(k_scale_cache: torch.Tensor, v_scale_cache: torch.Tensor) -> torch.Tensor:
        out = torch.full((q.shape[0], heads, head), float("nan"), dtype=torch.float16, device=device)
        ops["unified_attention"](
            q=q.to(device), k=k_cache, v=v_cache, out=out, cu_seqlens_q=cu.to(device),
            max_seqlen_q=max(query_lens), seqused_k=torch.tensor(seq_lens, dtype=torch.int32, device=device),
            max_seqlen_k=max(seq_lens), softmax_scale=scale, causal=True, window_size=(-1, -1),
            block_table=kv.block_table.to(device), softcap=0.0, q_descale=None, k_descale=None,
            v_descale=None, alibi_slopes=None, sinks=None, kv_quant_mode=mode,
            k_scale_cache=k_scale_cache, v_scale_cache=v_scale_cache,
        )  # fmt: skip
        return out.float().cpu()

    def reference(rounded: bool) -> torch.Tensor:
        rows = []
        for i, context in enumerate(context_lens):
            start = sum(query_lens[:i])
            k, v = keys[i].float(), values[i].float()
            if rounded:
                k, v = quantize_reference(k), quantize_reference(v)
            rows.append(vc.attention_reference(q[start : start + query_lens[i]], k, v, context, scale))
        return torch.cat(rows)

    start = time.perf_counter()
    out = attend(k_scales, v_scales)
    seconds = time.perf_counter() - start
    twin = attend(torch.ones_like(k_scales), torch.ones_like(v_scales))
    quantized = float((out - reference(True)).abs().max())
    unquantized = float((out - reference(False)).abs().max())
    twin_error = float((twin - reference(True)).nan_to_num(1e9).abs().max())
    passed = quantized <= QUANTIZED_BOUND and unquantized <= UNQUANTIZED_BOUND and twin_error > TWIN_FLOOR
    return {
        "case": name,
        "shape": f"h{head} kv{kv_heads}x{gqa} bs{block_size} q{list(query_lens)} ctx{list(context_lens)}",
        "max_abs_vs_quantized_reference": quantized,
        "max_abs_vs_unquantized_reference": unquantized,
        "twin_scales_not_applied": twin_error,
        "first_call_seconds_with_compile": seconds,
        "passed": passed,
    }


def load_ops(tree: Path) -> dict:
    import vllm_import
    from run_vllm_numerics import load_ops as load_vllm_ops

    ops = load_vllm_ops(tree, vllm_import.FUSED_MOE_STUBS_0_33)
    cache = sys.modules["vllm.v1.attention.ops.triton_reshape_and_cache_flash"]
    ops["per_token_head_quant"] = cache.triton_reshape_and_cache_flash_per_token_head_quant
    ops["KVQuantMode"] = sys.modules["vllm.v1.kv_cache_interface"].KVQuantMode
    return ops


def main() -> int:
    args, report = check_arguments(__doc__, "int8_kv_cache.json")
    device = report["device"]
    report |= {"quantized_bound": QUANTIZED_BOUND, "unquantized_bound": UNQUANTIZED_BOUND}
    with triton_check(args, report) as (_, tree):
        ops = load_ops(tree)
        cases = []
        for case in CASES:
            try:
                cases.append(run_case(ops, case, device))
            except Exception as exc:  # a case that does not compile or run is a failed case
                cases.append(
                    {"case": case[0], "passed": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                )
            print(json.dumps(cases[-1]), flush=True)
    return finish(report, cases, args.out, "int8_kv_cache.json")


if __name__ == "__main__":
    sys.exit(main())
