"""vLLM's own Triton kernels, through their own launchers, as Pascal code on the lent GPU.

Usage on the GPU machine (the patched triton first on PYTHONPATH, see run_gpu_numerics.sh):
    python run_vllm_numerics.py --vllm TREE --stack NAME --report OUT.json [--suite ...]
Suites: `vllm` (every case of vllm_cases against its float32 reference), `inductor` (a small
transformer block through torch.compile vs eager), `gdn` (vLLM 0.33.0's gated-delta-net kernels,
with torch and triton answering as a P40). Each row has its max abs/rel error, the
bound, the shared memory of every kernel the launch compiled and whether all fit 49,152 B.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vllm_cases as vc
import vllm_import
from pascal_form import LaunchLog, p40_device_queries, pascal_form

from pascal_forge.pascal import SHARED_MEMORY_PER_BLOCK

DEVICE = "cuda"
# The tiles patch 0005 picks on 6.x, by padded head size (fp16); the prefix cases sit around them.
PREFIX_BLOCK_M = {128: 64, 256: 16}
PREFIX_BLOCK_N = 32
PREFIX_ALIBI_BLOCK = {128: 32, 256: 16}


@dataclass
class Row:
    case: str
    shape: str
    dtype: str
    max_abs: float
    max_rel: float
    bound: float
    kernels: str  # "name:shared" for each compiled launch
    shared: int  # the largest shared memory any of its kernels asked for
    passed: bool
    error: str = ""


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


# --------------------------------------------------------------------------- launches


def run_unified(ops: dict, case: vc.AttentionCase) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _generator(case.name)
    kv = vc.paged_kv(case.seq_lens, case.num_kv_heads, case.head_size, case.block_size, gen)
    k_cache, v_cache = vc.flash_layout(kv, case.block_size, case.dtype)
    queries = [torch.randn(n, case.num_heads, case.head_size, generator=gen) for n in case.query_lens]
    q = torch.cat(queries).to(case.dtype)
    slopes = vc.alibi_slopes(case.num_heads) if case.alibi else None
    sinks = torch.randn(case.num_heads, generator=gen) * 2 if case.sinks else None
    scale = case.head_size**-0.5
    reference = torch.cat(
        [
            vc.attention_reference(
                q[sum(case.query_lens[:i]) : sum(case.query_lens[: i + 1])],
                kv.keys[i].to(case.dtype),
                kv.values[i].to(case.dtype),
                case.context_lens[i],
                scale,
                window=case.window,
                slopes=slopes,
                softcap=case.softcap,
                sinks=sinks,
            )
            for i in range(len(case.query_lens))
        ]
    )
    cu = torch.tensor([0, *torch.tensor(case.query_lens).cumsum(0).tolist()], dtype=torch.int32)
    extra = {}
    if case.use_3d:
        segments, threshold = 16, 128
        padded = 1 << (case.head_size - 1).bit_length()
        buffer = (threshold, case.num_heads, segments)
        extra = {
            "seq_threshold_3D": threshold,
            "num_par_softmax_segments": segments,
            "softmax_segm_output": torch.empty(*buffer, padded, dtype=torch.float32, device=DEVICE),
            "softmax_segm_max": torch.empty(*buffer, dtype=torch.float32, device=DEVICE),
            "softmax_segm_expsum": torch.empty(*buffer, dtype=torch.float32, device=DEVICE),
        }
    q_gpu = q.to(DEVICE)
    out = torch.full_like(q_gpu, float("nan"))
    ops["unified_attention"](
        q=q_gpu,
        k=k_cache.to(DEVICE),
        v=v_cache.to(DEVICE),
        out=out,
        cu_seqlens_q=cu.to(DEVICE),
        max_seqlen_q=max(case.query_lens),
        seqused_k=torch.tensor(case.seq_lens, dtype=torch.int32, device=DEVICE),
        max_seqlen_k=max(case.seq_lens),
        softmax_scale=scale,
        causal=True,
        window_size=(case.window - 1, 0) if case.window else (-1, -1),
        block_table=kv.block_table.to(DEVICE),
        softcap=case.softcap,
        q_descale=None,
        k_descale=torch.ones(1, device=DEVICE),
        v_descale=torch.ones(1, device=DEVICE),
        alibi_slopes=slopes.to(DEVICE) if slopes is not None else None,
        sinks=sinks.to(DEVICE) if sinks is not None else None,
        **extra,
    )
    return out, reference


def run_prefix(ops: dict, case: vc.PrefixCase) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _generator(case.name)
    seq_lens = tuple(c + q for c, q in zip(case.context_lens, case.query_lens, strict=True))
    kv = vc.paged_kv(seq_lens, case.num_kv_heads, case.head_size, case.block_size, gen)
    x = 16 // torch.tensor([], dtype=case.dtype).element_size()
    bs, heads, d = case.block_size, case.num_kv_heads, case.head_size
    # The paged-attention layout: K [blocks, kv_heads, head/x, block, x], V [blocks, kv_heads, head, block].
    k_cache = torch.full((kv.num_blocks, heads, d // x, bs, x), float("nan"), dtype=case.dtype)
    v_cache = torch.full((kv.num_blocks, heads, d, bs), float("nan"), dtype=case.dtype)
    new_k, new_v, queries, references = [], [], [], []
    slopes = vc.alibi_slopes(case.num_heads) if case.alibi else None
    scale = d**-0.5
    for i, (ctx, qlen) in enumerate(zip(case.context_lens, case.query_lens, strict=True)):
        keys, values = kv.keys[i].to(case.dtype), kv.values[i].to(case.dtype)
        for pos in range(ctx):
            block = int(kv.block_table[i, pos // bs])
            k_cache[block, :, :, pos % bs, :] = keys[pos].reshape(heads, d // x, x)
            v_cache[block, :, :, pos % bs] = values[pos]
        new_k.append(keys[ctx:])
        new_v.append(values[ctx:])
        q = torch.randn(qlen, case.num_heads, d, generator=gen).to(case.dtype)
        queries.append(q)
        references.append(vc.attention_reference(q, keys, values, ctx, scale, slopes=slopes))
    q = torch.cat(queries).to(DEVICE)
    out = torch.full_like(q, float("nan"))
    starts = torch.tensor([0, *torch.tensor(case.query_lens).cumsum(0).tolist()], dtype=torch.int32)
    ops["context_attention_fwd"](
        q,
        torch.cat(new_k).to(DEVICE),
        torch.cat(new_v).to(DEVICE),
        out,
        "auto",
        k_cache.to(DEVICE),
        v_cache.to(DEVICE),
        kv.block_table.to(DEVICE),
        starts.to(DEVICE),
        torch.tensor(seq_lens, dtype=torch.int32, device=DEVICE),
        max(seq_lens),
        max(case.query_lens),
        torch.ones(1, device=DEVICE),
        torch.ones(1, device=DEVICE),
        alibi_slopes=slopes.to(DEVICE) if slopes is not None else None,
    )
    return out, torch.cat(references)


def run_reshape_and_cache(ops: dict, case: vc.SmallCase) -> tuple[torch.Tensor, torch.Tensor]:
    p = case.params
    gen = _generator(case.name)
    blocks = p["tokens"] // p["block"] + 4
    key = torch.randn(p["tokens"], p["kv_heads"], p["head"], generator=gen).to(case.dtype)
    value = torch.randn(p["tokens"], p["kv_heads"], p["head"], generator=gen).to(case.dtype)
    slots = torch.randperm(blocks * p["block"], generator=gen)[: p["tokens"]]
    k_cache = torch.zeros(blocks, p["block"], p["kv_heads"], p["head"], dtype=case.dtype)
    v_cache = torch.zeros_like(k_cache)
    k_gpu, v_gpu = k_cache.to(DEVICE), v_cache.to(DEVICE)
    ops["triton_reshape_and_cache_flash"](
        key.to(DEVICE), value.to(DEVICE), k_gpu, v_gpu, slots.to(DEVICE), "auto",
        torch.ones(1, device=DEVICE), torch.ones(1, device=DEVICE),
    )  # fmt: skip
    flat_k, flat_v = k_cache.flatten(0, 1), v_cache.flatten(0, 1)
    flat_k[slots], flat_v[slots] = key, value
    return torch.stack([k_gpu, v_gpu]), torch.stack([k_cache, v_cache])


def run_merge(ops: dict, case: vc.SmallCase) -> tuple[torch.Tensor, torch.Tensor]:
    p = case.params
    gen = _generator(case.name)
    prefix = torch.randn(p["tokens"], p["heads"], p["head"], generator=gen).to(case.dtype)
    suffix = torch.randn(p["tokens"], p["heads"], p["head"], generator=gen).to(case.dtype)
    prefix_lse = torch.randn(p["heads"], p["tokens"], generator=gen) * 3
    suffix_lse = torch.randn(p["heads"], p["tokens"], generator=gen) * 3
    out = torch.full_like(prefix, float("nan")).to(DEVICE)
    out_lse = torch.full_like(prefix_lse, float("nan")).to(DEVICE)
    ops["merge_attn_states"](
        out, prefix.to(DEVICE), prefix_lse.to(DEVICE), suffix.to(DEVICE), suffix_lse.to(DEVICE), out_lse
    )
    ref, ref_lse = vc.merge_reference(prefix, prefix_lse, suffix, suffix_lse)
    return torch.cat([out.float().flatten(), out_lse.flatten()]), torch.cat(
        [ref.flatten(), ref_lse.flatten()]
    )


def _moe_routing(p: dict, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(p["M"], p["E"], generator=gen)
    weights, ids = torch.topk(torch.softmax(logits, -1), p["topk"], dim=-1)
    return ids, weights


def run_fused_moe(ops: dict, case: vc.SmallCase) -> tuple[torch.Tensor, torch.Tensor]:
    import triton.language as tl

    p = case.params
    gen = _generator(case.name)
    x = (torch.randn(p["M"], p["K"], generator=gen) / 4).to(case.dtype)
    quantized = case.kind == "moe_wna16"
    w = torch.randn(p["E"], p["N"], p["K"], generator=gen) / 8
    ids, routing = _moe_routing(p, gen)
    if quantized:
        packed, scales = vc.quantize_wna16(w, p["bits"], p["group"])
        w_used = vc.dequantize_wna16(packed, scales, p["bits"], p["group"])
        dtype_name = "int8_w8a16" if p["bits"] == 8 else "int4_w4a16"
        block_shape = [0, p["group"]]
    else:
        w_used = w.to(case.dtype)
        dtype_name, block_shape = None, None
    w1_shape = (p["E"], p["N"], p["K"])
    w2_shape = (p["E"], p["K"], p["N"] // 2)
    config = ops["try_get_optimal_moe_config"](w1_shape, w2_shape, p["topk"], dtype_name, p["M"], block_shape)
    sorted_ids, expert_ids, padded = vc.moe_align(ids, p["E"], config["BLOCK_SIZE_M"])
    out = torch.full((p["M"], p["topk"], p["N"]), float("nan"), dtype=case.dtype, device=DEVICE)
    ops["dispatch_fused_moe_kernel"](
        x.to(DEVICE),
        (packed if quantized else w_used).to(DEVICE),
        out,
        None,
        scales.to(case.dtype).to(DEVICE) if quantized else None,
        None,
        routing.to(DEVICE),
        sorted_ids.to(DEVICE),
        expert_ids.to(DEVICE),
        padded.to(DEVICE),
        True,
        p["topk"],
        config,
        compute_type=tl.float16,
        use_fp8_w8a8=False,
        use_int8_w8a8=False,
        use_int8_w8a16=quantized and p["bits"] == 8,
        use_int4_w4a16=quantized and p["bits"] == 4,
        per_channel_quant=False,
        block_shape=block_shape,
    )
    if quantized:
        # The kernel reads the scales in the compute dtype; so does the reference.
        w_used = vc.dequantize_wna16(packed, scales.to(case.dtype), p["bits"], p["group"])
    return out, vc.moe_reference(x, w_used, ids, routing)


SMALL_RUNNERS: dict[str, Callable] = {
    "reshape_and_cache": run_reshape_and_cache,
    "merge_attn_states": run_merge,
    "fused_moe": run_fused_moe,
    "moe_wna16": run_fused_moe,
}
SMALL_BOUNDS = {
    "reshape_and_cache": {torch.float16: 0.0, torch.float32: 0.0},  # a copy: exact
    "merge_attn_states": {torch.float16: 1e-2, torch.float32: 1e-5},
    # K=256 dot products of fp16 inputs, fp32 accumulation, fp16 output of magnitude ~1.
    "fused_moe": {torch.float16: 1e-2},
    "moe_wna16": {torch.float16: 1e-2},
}


def _gdn_inputs(case: vc.GdnCase, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """q, k [T, H, K], v [T, HV, V] in the case's dtype; g (log decay), beta [T, HV] in float32."""
    total = sum(case.seq_lens)
    q = torch.randn(total, case.k_heads, case.head_dim, generator=gen).to(case.dtype)
    k = torch.randn(total, case.k_heads, case.head_dim, generator=gen).to(case.dtype)
    v = torch.randn(total, case.v_heads, case.head_dim, generator=gen).to(case.dtype)
    # exp(g) around 0.95: the state keeps a long memory, so a chunk boundary error would show.
    g = torch.nn.functional.logsigmoid(torch.randn(total, case.v_heads, generator=gen) + 3)
    beta = torch.sigmoid(torch.randn(total, case.v_heads, generator=gen))
    return q, k, v, g, beta


def _gdn_gate_inputs(case: vc.GdnCase, tokens: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Qwen3.5's gate inputs a, b [tokens, HV] in the case's dtype; A_log, dt_bias [HV] in float32."""
    a = torch.randn(tokens, case.v_heads, generator=gen).to(case.dtype)
    b = torch.randn(tokens, case.v_heads, generator=gen).to(case.dtype)
    a_log, dt_bias = (
        torch.randn(case.v_heads, generator=gen) / 2,
        torch.randn(case.v_heads, generator=gen) / 2,
    )
    return a, b, a_log, dt_bias


def run_gdn_chunk(ops: dict, case: vc.GdnCase, gate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """FLA's chunked gated delta rule over a varlen batch, from random initial states."""
    gen = _generator(case.name)
    q, k, v, g, beta = _gdn_inputs(case, gen)
    states = torch.randn(len(case.seq_lens), case.v_heads, case.head_dim, case.head_dim, generator=gen) / 10
    bounds = [0, *torch.tensor(case.seq_lens).cumsum(0).tolist()]
    scale = case.head_dim**-0.5
    out, final = ops["chunk_gated_delta_rule"](
        q=q[None].to(DEVICE),
        k=k[None].to(DEVICE),
        v=v[None].to(DEVICE),
        g=g[None].to(DEVICE),
        beta=beta[None].to(DEVICE),
        scale=scale,
        initial_state=states.to(DEVICE),
        output_final_state=True,
        cu_seqlens=torch.tensor(bounds, dtype=torch.int32, device=DEVICE),
        use_qk_l2norm_in_kernel=True,
    )
    outputs, finals = [], []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        o, s = vc.gated_delta_rule_reference(
            vc.l2_normalized(q[lo:hi].float()),
            vc.l2_normalized(k[lo:hi].float()),
            v[lo:hi],
            g[lo:hi],
            beta[lo:hi],
            scale,
            states[i],
            gate=gate,
        )
        outputs.append(o)
        finals.append(s)
    result = torch.cat([out[0].float().flatten(), final.float().flatten()])
    return result, torch.cat([torch.cat(outputs).flatten(), torch.stack(finals).flatten()])


def run_gdn_packed_decode(ops: dict, case: vc.GdnCase, gate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step of each sequence from the conv output, its state updated in place in a pool."""
    gen = _generator(case.name)
    batch, h, hv, d = len(case.seq_lens), case.k_heads, case.v_heads, case.head_dim
    mixed = torch.randn(batch, 2 * h * d + hv * d, generator=gen).to(case.dtype)
    a, b, a_log, dt_bias = _gdn_gate_inputs(case, batch, gen)
    # Slot 0 is vLLM's null block and slot 1 belongs to no sequence: neither may change.
    pool = torch.randn(batch + 2, hv, d, d, generator=gen) / 10
    slots = torch.arange(2, batch + 2, dtype=torch.int32)
    pool_gpu = pool.clone().to(DEVICE)  # the kernel updates it in place; `pool` stays the input
    out = torch.full((batch, 1, hv, d), float("nan"), dtype=case.dtype, device=DEVICE)
    ops["fused_recurrent_gated_delta_rule_packed_decode"](
        mixed_qkv=mixed.to(DEVICE),
        a=a.to(DEVICE),
        b=b.to(DEVICE),
        A_log=a_log.to(DEVICE),
        dt_bias=dt_bias.to(DEVICE),
        scale=d**-0.5,
        initial_state=pool_gpu,
        out=out,
        ssm_state_indices=slots.to(DEVICE),
        use_qk_l2norm_in_kernel=True,
    )
    q, k, v = vc.split_mixed_qkv(mixed.float(), h, hv, d)
    g, beta = vc.gdn_gating_reference(a, b, a_log, dt_bias)
    expected, outputs = pool.clone(), []
    for n, slot in enumerate(slots.tolist()):
        o, s = vc.gated_delta_rule_reference(
            vc.l2_normalized(q[n : n + 1]),
            vc.l2_normalized(k[n : n + 1]),
            v[n : n + 1],
            g[n : n + 1],
            beta[n : n + 1],
            d**-0.5,
            pool[slot],
            gate=gate,
        )
        outputs.append(o)
        expected[slot] = s
    result = torch.cat([out.float().flatten(), pool_gpu.flatten()])
    return result, torch.cat([torch.stack(outputs).flatten(), expected.flatten()])


def run_gdn_post_conv(ops: dict, case: vc.GdnCase, gate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The prefill's split of the conv output into l2-normalized q, k, v, and its gates."""
    gen = _generator(case.name)
    length, h, hv, d = case.seq_lens[0], case.k_heads, case.v_heads, case.head_dim
    conv = torch.randn(length, 2 * h * d + hv * d, generator=gen).to(case.dtype)
    a, b, a_log, dt_bias = _gdn_gate_inputs(case, length, gen)
    outputs = ops["fused_post_conv_prep"](
        conv_output=conv.to(DEVICE),
        a=a.to(DEVICE),
        b=b.to(DEVICE),
        A_log=a_log.to(DEVICE),
        dt_bias=dt_bias.to(DEVICE),
        num_k_heads=h,
        head_k_dim=d,
        head_v_dim=d,
    )
    q, k, v = vc.split_mixed_qkv(conv.float(), h, hv, d)
    references = (vc.l2_normalized(q), vc.l2_normalized(k), v, *vc.gdn_gating_reference(a, b, a_log, dt_bias))
    result = torch.cat([x.float().flatten() for x in outputs])
    return result, torch.cat([x.flatten() for x in references])


def run_gdn_gated_rmsnorm(ops: dict, case: vc.GdnCase, gate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The GDN output norm: one row per token and value head, gated by z."""
    gen = _generator(case.name)
    rows = case.seq_lens[0] * case.v_heads
    x = torch.randn(rows, case.head_dim, generator=gen).to(case.dtype)
    z = torch.randn(rows, case.head_dim, generator=gen).to(case.dtype)
    weight = (1 + torch.randn(case.head_dim, generator=gen) / 10).to(case.dtype)
    out = ops["rmsnorm_fn"](x.to(DEVICE), weight.to(DEVICE), None, z=z.to(DEVICE), eps=1e-6)
    return out, vc.gated_rmsnorm_reference(x, weight, z, 1e-6)


GDN_RUNNERS: dict[str, Callable] = {
    "chunk": run_gdn_chunk,
    "packed_decode": run_gdn_packed_decode,
    "post_conv": run_gdn_post_conv,
    "gated_rmsnorm": run_gdn_gated_rmsnorm,
}


# --------------------------------------------------------------------------- suites


def _measure(
    log: LaunchLog, name: str, shape: str, dtype: torch.dtype, bound: float, run: Callable[[], tuple]
) -> Row:
    start = len(log.launches)
    try:
        result, reference = run()
        torch.cuda.synchronize()
        error = vc.Error.of(result, reference)
        problem = ""
    except Exception as exc:  # a launch that fails is a row that fails, with its message
        error = vc.Error(float("inf"), float("inf"))
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
    launches = log.since(start)
    shared = max((launch.shared for launch in launches), default=0)
    pascal = all(launch.target.startswith("sm_6") for launch in launches) and bool(launches)
    if not pascal and not problem:
        problem = f"no sm_6x launch recorded: {[launch.target for launch in launches]}"
    passed = not problem and error.max_abs <= bound and shared <= SHARED_MEMORY_PER_BLOCK
    kernels = " ".join(f"{launch.kernel}:{launch.shared}" for launch in launches)
    row = Row(
        name,
        shape,
        vc.DTYPE_NAMES[dtype],
        error.max_abs,
        error.max_rel,
        bound,
        kernels,
        shared,
        passed,
        problem,
    )
    print(
        f"{'PASS' if passed else 'FAIL'} {name:45s} {row.dtype} abs {error.max_abs:.3g} "
        f"rel {error.max_rel:.3g} (bound {bound:g}) shared {shared} {problem}",
        flush=True,
    )
    return row


def load_ops(tree: Path, fused_moe_stubs: tuple[str, ...]) -> dict:
    vllm_import.ensure_dist_info(tree)
    vllm_import.pascal_platform(tree)
    modules = vllm_import.import_kernels(
        tree,
        [
            "vllm.v1.attention.ops.triton_unified_attention",
            "vllm.v1.attention.ops.prefix_prefill",
            "vllm.v1.attention.ops.triton_merge_attn_states",
        ],
    )
    ops = {
        "unified_attention": modules["vllm.v1.attention.ops.triton_unified_attention"].unified_attention,
        "context_attention_fwd": modules["vllm.v1.attention.ops.prefix_prefill"].context_attention_fwd,
        "merge_attn_states": modules["vllm.v1.attention.ops.triton_merge_attn_states"].merge_attn_states,
    }
    root = tree / "vllm"
    for package in (
        "model_executor",
        "model_executor/layers",
        "model_executor/layers/quantization",
        "model_executor/layers/quantization/utils",
    ):
        name = "vllm." + package.replace("/", ".")
        if name not in sys.modules:
            vllm_import.bare_package(name, root / package)
    try:
        cache = vllm_import.import_kernels(
            tree, ["vllm.v1.attention.ops.triton_reshape_and_cache_flash"], ("vllm.distributed",)
        )["vllm.v1.attention.ops.triton_reshape_and_cache_flash"]
        ops["triton_reshape_and_cache_flash"] = cache.triton_reshape_and_cache_flash
    except Exception as exc:
        traceback.print_exc()
        print(f"reshape_and_cache does not import: {type(exc).__name__}: {exc}", flush=True)
    vllm_import.bare_package(
        "vllm.model_executor.layers.fused_moe",
        root / "model_executor/layers/fused_moe",
        get_config=lambda: None,
    )
    try:
        moe = vllm_import.import_kernels(
            tree, ["vllm.model_executor.layers.fused_moe.fused_moe"], fused_moe_stubs
        )["vllm.model_executor.layers.fused_moe.fused_moe"]
        ops["dispatch_fused_moe_kernel"] = moe.dispatch_fused_moe_kernel
        ops["try_get_optimal_moe_config"] = moe.try_get_optimal_moe_config
    except Exception as exc:
        traceback.print_exc()
        print(f"fused_moe does not import: {type(exc).__name__}: {exc}", flush=True)
    return ops


def _selected(name: str, only: str, skip: str = "") -> bool:
    if skip and any(part in name for part in skip.split(",")):
        return False
    return any(part in name for part in only.split(","))


def vllm_suite(log: LaunchLog, ops: dict, only: str, skip: str, rows: list[Row]) -> list[Row]:
    for case in vc.attention_cases():
        if _selected(case.name, only, skip):
            bound = vc.ATTENTION_BOUND[case.dtype]
            rows.append(
                _measure(log, case.name, case.shape, case.dtype, bound, lambda c=case: run_unified(ops, c))
            )
    for case in vc.prefix_cases(PREFIX_BLOCK_M, PREFIX_BLOCK_N, PREFIX_ALIBI_BLOCK):
        if _selected(case.name, only, skip):
            bound = vc.ATTENTION_BOUND[case.dtype]
            rows.append(
                _measure(log, case.name, case.shape, case.dtype, bound, lambda c=case: run_prefix(ops, c))
            )
    for case in vc.small_cases():
        if _selected(case.name, only, skip):
            bound = SMALL_BOUNDS[case.kind][case.dtype]
            runner = SMALL_RUNNERS[case.kind]
            rows.append(
                _measure(log, case.name, case.shape, case.dtype, bound, lambda c=case, r=runner: r(ops, c))
            )
    return rows


def load_gdn_ops(tree: Path) -> dict:
    """vLLM's FLA ops (vllm/third_party/flash_linear_attention), imported as the runner sees them."""
    vllm_import.ensure_dist_info(tree)
    vllm_import.pascal_platform(tree)
    name = "vllm.third_party.flash_linear_attention.ops"
    fla = vllm_import.import_kernels(tree, [name], vllm_import.FUSED_MOE_STUBS_0_33)[name]
    ops = {op: getattr(fla, op) for op in ("chunk_gated_delta_rule", "fused_post_conv_prep")}
    ops["fused_recurrent_gated_delta_rule_packed_decode"] = fla.fused_recurrent_gated_delta_rule_packed_decode
    ops["rmsnorm_fn"] = fla.layernorm_guard.rmsnorm_fn
    return ops


def gdn_suite(log: LaunchLog, ops: dict, only: str, skip: str, rows: list[Row], gate: bool) -> list[Row]:
    for case in vc.gdn_cases():
        if _selected(case.name, only, skip):
            runner = GDN_RUNNERS[case.kind]
            bound = vc.GDN_BOUND[case.kind]
            rows.append(
                _measure(
                    log, case.name, case.shape, case.dtype, bound, lambda c=case, r=runner: r(ops, c, gate)
                )
            )
    return rows


def inductor_suite(log: LaunchLog, rows: list[Row]) -> list[Row]:
    """A transformer block through torch.compile, its Triton kernels in Pascal form, vs eager."""
    import inductor_block

    for dtype in (torch.float32, torch.float16):
        name = f"inductor block {vc.DTYPE_NAMES[dtype]}"

        def run(dtype: torch.dtype = dtype) -> tuple[torch.Tensor, torch.Tensor]:
            return inductor_block.compiled_vs_eager(dtype, DEVICE)

        bound = inductor_block.BOUND[dtype]
        rows.append(_measure(log, name, inductor_block.SHAPE, dtype, bound, run))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vllm", type=Path, help="a vLLM source tree (its vllm/ package)")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--suite", choices=("vllm", "inductor", "gdn"), default="vllm")
    parser.add_argument(
        "--only", default="", help="run the cases whose name contains one of these (comma-separated)"
    )
    parser.add_argument("--skip", default="", help="leave out the cases whose name contains one of these")
    parser.add_argument("--moe-stubs", default="0.14", choices=("0.14", "0.33"))
    # Twins of the gdn suite: the GPU's own answers (an H200's) instead of a P40's, and a
    # reference that leaves out the decay gate.
    parser.add_argument("--h200-answers", action="store_true", help="gdn: do not answer as a P40")
    parser.add_argument("--reference-without-gate", action="store_true", help="gdn: a wrong reference")
    args = parser.parse_args()
    import triton

    torch.backends.cuda.matmul.allow_tf32 = False
    started = time.monotonic()
    header = {
        "stack": args.stack,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "triton_file": triton.__file__,
    }
    print(json.dumps(header), flush=True)
    stubs = vllm_import.FUSED_MOE_STUBS_0_14 if args.moe_stubs == "0.14" else vllm_import.FUSED_MOE_STUBS_0_33

    class Rows(list):
        """Rows written to the report as they come, so a run cut short still leaves its table."""

        def append(self, row: Row) -> None:
            super().append(row)
            header.update(seconds=round(time.monotonic() - started, 1), stubbed=vllm_import.stubbed_modules())
            args.report.write_text(json.dumps({**header, "rows": [asdict(r) for r in self]}, indent=1))

    rows: list[Row] = Rows()
    with pascal_form() as log:
        if args.suite == "inductor":
            inductor_suite(log, rows)
        elif args.suite == "gdn":
            with contextlib.nullcontext() if args.h200_answers else p40_device_queries():
                ops = load_gdn_ops(args.vllm.resolve())
                gdn_suite(log, ops, args.only, args.skip, rows, gate=not args.reference_without_gate)
        else:
            ops = load_ops(args.vllm.resolve(), stubs)
            vllm_suite(log, ops, args.only, args.skip, rows)
    failed = [r.case for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)}/{len(rows)} pass ({header['seconds']} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
