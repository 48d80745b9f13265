"""vLLM's Triton kernels as they are launched on the TRITON_ATTN path, one case per launcher call.

Each case calls vLLM's own launcher with CPU tensors of a realistic model shape, so the
block sizes, warps and stages are the ones vLLM picks for the GPU the probe reports.
Run only inside the probe of vllm_checks (kernel launches there compile and do not run).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import SimpleNamespace

import torch
from packaging.version import Version

FP16 = torch.float16
BLOCK_SIZE = 16  # vLLM's default KV cache block size on CUDA
LONG_CONTEXT = 32768


def _newer_arguments(launcher: Callable, **arguments: object) -> dict[str, object]:
    """The keyword arguments that this release's `launcher` takes (0.33.0 added some)."""
    parameters = inspect.signature(launcher).parameters
    return {name: value for name, value in arguments.items() if name in parameters}


def _paged_kv(
    num_blocks: int, num_kv_heads: int, head_size: int, dtype: torch.dtype = FP16
) -> tuple[torch.Tensor, torch.Tensor]:
    # TRITON_ATTN's layout: (num_blocks, 2, block_size, num_kv_heads, head_size), unbound on dim 1.
    cache = torch.zeros(num_blocks, 2, BLOCK_SIZE, num_kv_heads, head_size, dtype=dtype)
    return cache.unbind(1)


def _unified_attention(
    *,
    head_size: int,
    num_heads: int,
    num_kv_heads: int,
    query_lens: list[int],
    context: int,
    window: int = -1,
    dtype: torch.dtype = FP16,
) -> None:
    from vllm.v1.attention.backends.triton_attn import MIN_LAUNCH_GRID_SIZE_2D, NUM_PAR_SOFTMAX_SEGMENTS
    from vllm.v1.attention.ops.triton_unified_attention import unified_attention

    num_seqs = len(query_lens)
    blocks_per_seq = context // BLOCK_SIZE
    key_cache, value_cache = _paged_kv(num_seqs * blocks_per_seq, num_kv_heads, head_size, dtype)
    q = torch.zeros(sum(query_lens), num_heads, head_size, dtype=dtype)
    cu_seqlens_q = torch.tensor([0, *torch.tensor(query_lens).cumsum(0).tolist()], dtype=torch.int32)
    seqused_k = torch.full((num_seqs,), context, dtype=torch.int32)
    block_table = torch.arange(num_seqs * blocks_per_seq, dtype=torch.int32).reshape(num_seqs, -1)
    # The 3D (split-softmax) decode buffers, sized as TritonAttentionMetadataBuilder does.
    threshold = MIN_LAUNCH_GRID_SIZE_2D // num_kv_heads
    segments = NUM_PAR_SOFTMAX_SEGMENTS
    head_padded = 1 << (head_size - 1).bit_length()
    unified_attention(
        q=q,
        k=key_cache,
        v=value_cache,
        out=torch.empty_like(q),
        cu_seqlens_q=cu_seqlens_q,
        max_seqlen_q=max(query_lens),
        seqused_k=seqused_k,
        max_seqlen_k=context,
        softmax_scale=head_size**-0.5,
        causal=True,
        window_size=(window - 1, 0) if window > 0 else (-1, -1),
        block_table=block_table,
        softcap=0,
        q_descale=None,
        k_descale=torch.ones(1),
        v_descale=torch.ones(1),
        seq_threshold_3D=threshold,
        num_par_softmax_segments=segments,
        softmax_segm_output=torch.empty(threshold, num_heads, segments, head_padded, dtype=torch.float32),
        softmax_segm_max=torch.empty(threshold, num_heads, segments, dtype=torch.float32),
        softmax_segm_expsum=torch.empty(threshold, num_heads, segments, dtype=torch.float32),
    )


def _gemma3_fp32(head_size: int, num_heads: int, num_kv_heads: int, query_lens: list[int]) -> None:
    """Gemma3's signature (sliding window 1024, head 128 or 256) in float32."""
    _unified_attention(
        head_size=head_size,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        query_lens=query_lens,
        context=8192,
        window=1024,
        dtype=torch.float32,
    )


def _reshape_and_cache(*, head_size: int, num_kv_heads: int, num_tokens: int) -> None:
    from vllm.v1.attention.ops.triton_reshape_and_cache_flash import triton_reshape_and_cache_flash

    key_cache, value_cache = _paged_kv(num_tokens // BLOCK_SIZE + 1, num_kv_heads, head_size)
    key = torch.zeros(num_tokens, num_kv_heads, head_size, dtype=FP16)
    triton_reshape_and_cache_flash(
        key,
        torch.zeros_like(key),
        key_cache,
        value_cache,
        torch.arange(num_tokens, dtype=torch.int64),
        "auto",
        torch.ones(1),
        torch.ones(1),
    )


def _encoder_attention(*, head_size: int, num_heads: int, seq_len: int) -> None:
    from vllm.v1.attention.ops.triton_prefill_attention import context_attention_fwd

    q = torch.zeros(2 * seq_len, num_heads, head_size, dtype=FP16)
    context_attention_fwd(
        q=q,
        k=torch.zeros_like(q),
        v=torch.zeros_like(q),
        o=torch.empty_like(q),
        b_start_loc=torch.tensor([0, seq_len], dtype=torch.int32),
        b_seq_len=torch.tensor([seq_len, seq_len], dtype=torch.int32),
        max_input_len=seq_len,
        is_causal=False,
    )


def _prefix_prefill(*, head_size: int, num_heads: int, num_kv_heads: int, alibi: bool) -> None:
    from vllm.v1.attention.ops.prefix_prefill import context_attention_fwd

    query_len, context = 512, LONG_CONTEXT
    x = 8  # the paged-attention key layout: [blocks, kv_heads, head_size / x, block_size, x]
    blocks = context // BLOCK_SIZE
    k_cache = torch.zeros(blocks, num_kv_heads, head_size // x, BLOCK_SIZE, x, dtype=FP16)
    v_cache = torch.zeros(blocks, num_kv_heads, head_size, BLOCK_SIZE, dtype=FP16)
    q = torch.zeros(query_len, num_heads, head_size, dtype=FP16)
    k = torch.zeros(query_len, num_kv_heads, head_size, dtype=FP16)
    context_attention_fwd(
        q,
        k,
        torch.zeros_like(k),
        torch.empty_like(q),
        "auto",
        k_cache,
        v_cache,
        torch.arange(blocks, dtype=torch.int32).reshape(1, -1),
        torch.tensor([0, query_len], dtype=torch.int32),
        torch.tensor([context + query_len], dtype=torch.int32),
        context + query_len,
        query_len,
        torch.ones(1),
        torch.ones(1),
        alibi_slopes=torch.ones(num_heads) if alibi else None,
    )


def _fused_moe(*, num_tokens: int, experts: int, hidden: int, intermediate: int, top_k: int) -> None:
    import triton.language as tl
    from vllm.model_executor.layers.fused_moe.fused_moe import (
        dispatch_fused_moe_kernel,
        try_get_optimal_moe_config,
    )

    w1 = torch.zeros(experts, 2 * intermediate, hidden, dtype=FP16)
    w2 = torch.zeros(experts, hidden, intermediate, dtype=FP16)
    config = try_get_optimal_moe_config(tuple(w1.shape), tuple(w2.shape), top_k, None, num_tokens)
    block_m = config["BLOCK_SIZE_M"]
    padded = num_tokens * top_k + experts * (block_m - 1)
    sorted_ids = torch.zeros(padded, dtype=torch.int32)
    expert_ids = torch.zeros((padded + block_m - 1) // block_m, dtype=torch.int32)
    post_padded = torch.tensor([padded], dtype=torch.int32)
    topk_weights = torch.ones(num_tokens, top_k, dtype=torch.float32)
    hidden_states = torch.zeros(num_tokens, hidden, dtype=FP16)
    up = torch.empty(num_tokens, top_k, 2 * intermediate, dtype=FP16)
    down_in = torch.zeros(num_tokens * top_k, intermediate, dtype=FP16)
    down = torch.empty(num_tokens, top_k, hidden, dtype=FP16)
    for a, w, c, mul_routed, k in ((hidden_states, w1, up, False, top_k), (down_in, w2, down, True, 1)):
        dispatch_fused_moe_kernel(
            a, w, c, None, None, None, topk_weights, sorted_ids, expert_ids, post_padded,
            mul_routed, k, config, compute_type=tl.float16, use_fp8_w8a8=False, use_int8_w8a8=False,
            use_int8_w8a16=False, use_int4_w4a16=False, per_channel_quant=False,
        )  # fmt: skip


def _rejection_sample(*, vocab_size: int, batch: int = 4, spec_len: int = 3) -> None:
    from vllm.v1.sample.rejection_sampler import rejection_sample

    num_tokens = batch * spec_len
    rejection_sample(
        torch.zeros(num_tokens, dtype=torch.int32),
        [spec_len] * batch,
        spec_len,
        torch.arange(spec_len, num_tokens + 1, spec_len, dtype=torch.int32),
        None,
        torch.full((num_tokens, vocab_size), 1.0 / vocab_size, dtype=torch.float32),
        torch.zeros(batch, 1, dtype=torch.int32),
        SimpleNamespace(all_greedy=False, all_random=False, temperature=torch.ones(batch), generators={}),
    )


def _mrope(*, num_tokens: int = 1024) -> None:
    from vllm.model_executor.layers.rotary_embedding.mrope import triton_mrope

    head_size, num_heads, num_kv_heads = 128, 28, 4  # Qwen2-VL-7B
    triton_mrope(
        torch.zeros(num_tokens, num_heads * head_size, dtype=FP16),
        torch.zeros(num_tokens, num_kv_heads * head_size, dtype=FP16),
        torch.zeros(3, num_tokens, head_size // 2, dtype=FP16),
        torch.zeros(3, num_tokens, head_size // 2, dtype=FP16),
        [16, 24, 24],
        head_size,
        head_size,
        False,
        **_newer_arguments(triton_mrope, is_neox_style=True),
    )


def _mla_decode(*, batch: int = 4, num_heads: int = 16, context: int = 4096) -> None:
    from vllm.v1.attention.ops.triton_decode_attention import decode_attention_fwd

    kv_lora_rank, rope_dim, page_size, splits = 512, 64, BLOCK_SIZE, 4  # DeepSeek-V2-Lite, TRITON_MLA
    blocks = batch * context // page_size
    cache = torch.zeros(blocks, page_size, 1, kv_lora_rank + rope_dim, dtype=FP16)
    q = torch.zeros(batch, num_heads, kv_lora_rank + rope_dim, dtype=FP16)
    decode_attention_fwd(
        q,
        cache,
        cache[..., :kv_lora_rank],
        torch.zeros(batch, num_heads, kv_lora_rank, dtype=FP16),
        torch.zeros(batch, num_heads, dtype=FP16),
        torch.arange(blocks, dtype=torch.int32).reshape(batch, -1),
        torch.full((batch,), context, dtype=torch.int32),
        torch.empty(batch, num_heads, splits, kv_lora_rank + 1, dtype=torch.float32),
        splits,
        (kv_lora_rank + rope_dim) ** -0.5,
        page_size,
        # TRITON_MLA's call in 0.33.0: the latent cache read once, as K and V.
        **_newer_arguments(decode_attention_fwd, k_scale=torch.ones(1), v_scale=torch.ones(1), is_mla=True),
    )


def _merge_attn_states(*, num_tokens: int = 512, num_heads: int = 32, head_size: int = 128) -> None:
    from vllm.v1.attention.ops.triton_merge_attn_states import merge_attn_states

    part = torch.zeros(num_tokens, num_heads, head_size, dtype=FP16)
    lse = torch.zeros(num_heads, num_tokens, dtype=torch.float32)
    merge_attn_states(torch.empty_like(part), part, lse, part.clone(), lse.clone())


CASES: dict[str, Callable[[], None]] = {
    # Llama-3-8B shapes (32 query heads, 8 KV heads, head 128) unless named otherwise.
    "unified_attn prefill h128 32k": lambda: _unified_attention(
        head_size=128, num_heads=32, num_kv_heads=8, query_lens=[2048, 1024], context=LONG_CONTEXT
    ),
    "unified_attn decode-3d h128 32k": lambda: _unified_attention(
        head_size=128, num_heads=32, num_kv_heads=8, query_lens=[1] * 4, context=LONG_CONTEXT
    ),
    "unified_attn decode-2d h128 (64 seqs)": lambda: _unified_attention(
        head_size=128, num_heads=32, num_kv_heads=8, query_lens=[1] * 64, context=4096
    ),
    "unified_attn prefill h64": lambda: _unified_attention(
        head_size=64, num_heads=32, num_kv_heads=32, query_lens=[2048], context=8192
    ),
    "unified_attn prefill h80 (padded)": lambda: _unified_attention(
        head_size=80, num_heads=32, num_kv_heads=32, query_lens=[2048], context=8192
    ),
    "unified_attn prefill h256 gemma3 sw1024": lambda: _unified_attention(
        head_size=256, num_heads=8, num_kv_heads=4, query_lens=[2048], context=LONG_CONTEXT, window=1024
    ),
    "unified_attn decode-3d h256 gemma3 sw1024": lambda: _unified_attention(
        head_size=256, num_heads=8, num_kv_heads=4, query_lens=[1] * 4, context=LONG_CONTEXT, window=1024
    ),
    # --dtype float32, which a P40 (1/64-rate fp16) may prefer: the tile rules see 4-byte elements,
    # and Gemma3's own rule asks 32-key tiles.
    "unified_attn prefill h256 gemma3 sw1024 fp32": lambda: _gemma3_fp32(256, 8, 4, [2048]),
    "unified_attn decode-3d h256 gemma3 sw1024 fp32": lambda: _gemma3_fp32(256, 8, 4, [1] * 4),
    "unified_attn prefill h128 gemma3-27b sw1024 fp32": lambda: _gemma3_fp32(128, 32, 16, [2048]),
    "unified_attn prefill gqa32 h128": lambda: _unified_attention(
        head_size=128, num_heads=64, num_kv_heads=2, query_lens=[1024], context=LONG_CONTEXT
    ),
    "reshape_and_cache_flash h128": lambda: _reshape_and_cache(
        head_size=128, num_kv_heads=8, num_tokens=4096
    ),
    "encoder attention h64": lambda: _encoder_attention(head_size=64, num_heads=16, seq_len=1024),
    "encoder attention h128": lambda: _encoder_attention(head_size=128, num_heads=16, seq_len=1024),
    "encoder attention h256": lambda: _encoder_attention(head_size=256, num_heads=8, seq_len=1024),
    "prefix_prefill h128 32k": lambda: _prefix_prefill(
        head_size=128, num_heads=32, num_kv_heads=8, alibi=False
    ),
    "prefix_prefill alibi h128 32k": lambda: _prefix_prefill(
        head_size=128, num_heads=32, num_kv_heads=8, alibi=True
    ),
    "prefix_prefill h256 32k": lambda: _prefix_prefill(
        head_size=256, num_heads=8, num_kv_heads=4, alibi=False
    ),
    # Mixtral-8x7B experts; M <= E and M > E pick different default configs.
    "fused_moe M=4": lambda: _fused_moe(num_tokens=4, experts=8, hidden=4096, intermediate=14336, top_k=2),
    "fused_moe M=4096": lambda: _fused_moe(
        num_tokens=4096, experts=8, hidden=4096, intermediate=14336, top_k=2
    ),
    "rejection_sample vocab 32000": lambda: _rejection_sample(vocab_size=32000),
    "rejection_sample vocab 151936": lambda: _rejection_sample(vocab_size=151936),
    "mrope qwen2-vl": _mrope,
    "triton_mla decode": _mla_decode,
    "merge_attn_states": _merge_attn_states,
}


# --------------------------------------------------------------------------- since 0.33.0

# Qwen3.5/Qwen3-Next gated-delta-net layers: 16 key heads and 32 value heads of 128, conv width 4.
GDN_K_HEADS, GDN_V_HEADS, GDN_HEAD, GDN_CONV = 16, 32, 128, 4
GDN_CONV_DIM = 2 * GDN_K_HEADS * GDN_HEAD + GDN_V_HEADS * GDN_HEAD


def _int8_kv_attention(*, query_lens: list[int], context: int) -> None:
    """TRITON_ATTN with --kv-cache-dtype int8_per_token_head (Llama-3-8B shapes)."""
    from vllm.v1.attention.ops.triton_reshape_and_cache_flash import (
        triton_reshape_and_cache_flash_per_token_head_quant,
    )
    from vllm.v1.attention.ops.triton_unified_attention import unified_attention
    from vllm.v1.kv_cache_interface import KVQuantMode

    head_size, num_heads, num_kv_heads = 128, 32, 8
    num_seqs = len(query_lens)
    blocks = num_seqs * (context // BLOCK_SIZE)
    # The backend's layout: int8 (blocks, kv_heads, block_size, 2 * (head + 4 scale bytes)),
    # seen as (blocks, block_size, kv_heads, head) K and V views; float32 scales beside.
    packed = torch.zeros(blocks, num_kv_heads, BLOCK_SIZE, 2 * (head_size + 4), dtype=torch.int8)
    packed = packed.transpose(1, 2)
    key_cache, value_cache = packed[..., :head_size], packed[..., head_size + 4 : 2 * head_size + 4]
    k_scales = torch.ones(blocks, BLOCK_SIZE, num_kv_heads, dtype=torch.float32)
    v_scales = torch.ones_like(k_scales)
    tokens = sum(query_lens)
    key = torch.zeros(tokens, num_kv_heads, head_size, dtype=FP16)
    triton_reshape_and_cache_flash_per_token_head_quant(
        key, torch.zeros_like(key), key_cache, value_cache, k_scales, v_scales,
        torch.arange(tokens, dtype=torch.int64), kv_quant_mode=KVQuantMode.INT8_PER_TOKEN_HEAD,
    )  # fmt: skip
    q = torch.zeros(tokens, num_heads, head_size, dtype=FP16)
    from vllm.v1.attention.backends.triton_attn import MIN_LAUNCH_GRID_SIZE_2D, NUM_PAR_SOFTMAX_SEGMENTS

    threshold, segments = MIN_LAUNCH_GRID_SIZE_2D // num_kv_heads, NUM_PAR_SOFTMAX_SEGMENTS
    unified_attention(
        q=q, k=key_cache, v=value_cache, out=torch.empty_like(q),
        cu_seqlens_q=torch.tensor([0, *torch.tensor(query_lens).cumsum(0).tolist()], dtype=torch.int32),
        max_seqlen_q=max(query_lens), seqused_k=torch.full((num_seqs,), context, dtype=torch.int32),
        max_seqlen_k=context, softmax_scale=head_size**-0.5, causal=True, window_size=(-1, -1),
        block_table=torch.arange(blocks, dtype=torch.int32).reshape(num_seqs, -1), softcap=0,
        q_descale=None, k_descale=None, v_descale=None, seq_threshold_3D=threshold,
        num_par_softmax_segments=segments,
        softmax_segm_output=torch.empty(threshold, num_heads, segments, head_size, dtype=torch.float32),
        softmax_segm_max=torch.empty(threshold, num_heads, segments, dtype=torch.float32),
        softmax_segm_expsum=torch.empty(threshold, num_heads, segments, dtype=torch.float32),
        kv_quant_mode=KVQuantMode.INT8_PER_TOKEN_HEAD, k_scale_cache=k_scales, v_scale_cache=v_scales,
    )  # fmt: skip


def _gdn_conv_prefill(*, tokens: int = 2048) -> None:
    from vllm.model_executor.layers.mamba.ops.causal_conv1d import causal_conv1d_fn

    mixed_qkv = torch.zeros(tokens, GDN_CONV_DIM, dtype=FP16)
    # vLLM's conv state: (cache lines, width - 1, dim), seen transposed.
    conv_state = torch.zeros(4, GDN_CONV - 1, GDN_CONV_DIM, dtype=FP16).transpose(1, 2)
    causal_conv1d_fn(
        mixed_qkv.transpose(0, 1), torch.zeros(GDN_CONV_DIM, GDN_CONV, dtype=FP16), None,
        conv_states=conv_state, query_start_loc=torch.tensor([0, tokens], dtype=torch.int32),
        cache_indices=torch.zeros(1, dtype=torch.int32),
        has_initial_state=torch.zeros(1, dtype=torch.bool), activation="silu",
    )  # fmt: skip


def _gdn_conv_decode(*, batch: int = 32) -> None:
    from vllm.model_executor.layers.mamba.ops.causal_conv1d import causal_conv1d_update

    conv_state = torch.zeros(batch, GDN_CONV - 1, GDN_CONV_DIM, dtype=FP16).transpose(1, 2)
    causal_conv1d_update(
        torch.zeros(batch, GDN_CONV_DIM, dtype=FP16), conv_state,
        torch.zeros(GDN_CONV_DIM, GDN_CONV, dtype=FP16), None, "silu",
        conv_state_indices=torch.arange(batch, dtype=torch.int32),
    )  # fmt: skip


def _gdn_prefill(*, tokens: int = 2048) -> None:
    """Post-conv prep, then the chunked gated delta rule (FLA), as a prefill runs them."""
    from vllm.third_party.flash_linear_attention.ops import (
        chunk_gated_delta_rule,
        fused_post_conv_prep,
    )

    q, k, v, g, beta = fused_post_conv_prep(
        conv_output=torch.zeros(tokens, GDN_CONV_DIM, dtype=FP16),
        a=torch.zeros(tokens, GDN_V_HEADS, dtype=FP16),
        b=torch.zeros(tokens, GDN_V_HEADS, dtype=FP16),
        A_log=torch.zeros(GDN_V_HEADS, dtype=torch.float32),
        dt_bias=torch.zeros(GDN_V_HEADS, dtype=torch.float32),
        num_k_heads=GDN_K_HEADS, head_k_dim=GDN_HEAD, head_v_dim=GDN_HEAD,
    )  # fmt: skip
    chunk_gated_delta_rule(
        q=q.unsqueeze(0), k=k.unsqueeze(0), v=v.unsqueeze(0), g=g.unsqueeze(0), beta=beta.unsqueeze(0),
        initial_state=torch.zeros(1, GDN_V_HEADS, GDN_HEAD, GDN_HEAD, dtype=torch.float32),
        output_final_state=True, cu_seqlens=torch.tensor([0, tokens], dtype=torch.int32),
        use_qk_l2norm_in_kernel=False,
    )  # fmt: skip


def _gdn_decode(*, batch: int = 32) -> None:
    from vllm.third_party.flash_linear_attention.ops import fused_recurrent_gated_delta_rule_packed_decode

    fused_recurrent_gated_delta_rule_packed_decode(
        mixed_qkv=torch.zeros(batch, GDN_CONV_DIM, dtype=FP16),
        a=torch.zeros(batch, GDN_V_HEADS, dtype=FP16), b=torch.zeros(batch, GDN_V_HEADS, dtype=FP16),
        A_log=torch.zeros(GDN_V_HEADS, dtype=torch.float32),
        dt_bias=torch.zeros(GDN_V_HEADS, dtype=torch.float32), scale=GDN_HEAD**-0.5,
        initial_state=torch.zeros(batch, GDN_V_HEADS, GDN_HEAD, GDN_HEAD, dtype=torch.float32),
        out=torch.empty(batch, 1, GDN_V_HEADS, GDN_HEAD, dtype=FP16),
        ssm_state_indices=torch.arange(batch, dtype=torch.int32), use_qk_l2norm_in_kernel=True,
    )  # fmt: skip


def _gdn_mtp_verify(*, batch: int = 8, draft: int = 3) -> None:
    """MTP: the draft tokens' gated delta rule update with sigmoid gating (spec decode)."""
    from vllm.third_party.flash_linear_attention.ops import fused_sigmoid_gating_delta_rule_update

    tokens = batch * (draft + 1)
    fused_sigmoid_gating_delta_rule_update(
        A_log=torch.zeros(GDN_V_HEADS, dtype=torch.float32),
        a=torch.zeros(tokens, GDN_V_HEADS, dtype=FP16), b=torch.zeros(tokens, GDN_V_HEADS, dtype=FP16),
        dt_bias=torch.zeros(GDN_V_HEADS, dtype=torch.float32),
        q=torch.zeros(1, tokens, GDN_K_HEADS, GDN_HEAD, dtype=FP16),
        k=torch.zeros(1, tokens, GDN_K_HEADS, GDN_HEAD, dtype=FP16),
        v=torch.zeros(1, tokens, GDN_V_HEADS, GDN_HEAD, dtype=FP16),
        initial_state=torch.zeros(batch * (draft + 1), GDN_V_HEADS, GDN_HEAD, GDN_HEAD, dtype=torch.float32),
        inplace_final_state=True,
        cu_seqlens=torch.arange(0, tokens + 1, draft + 1, dtype=torch.int32),
        ssm_state_indices=torch.arange(tokens, dtype=torch.int32).reshape(batch, draft + 1),
        num_accepted_tokens=torch.ones(batch, dtype=torch.int32), use_qk_l2norm_in_kernel=True,
    )  # fmt: skip


def _gated_rms_norm(*, tokens: int = 2048) -> None:
    """The GDN output norm (RMSNormGated, FLA's layernorm_guard kernel)."""
    from vllm.third_party.flash_linear_attention.ops.layernorm_guard import rmsnorm_fn

    x = torch.zeros(tokens * GDN_V_HEADS, GDN_HEAD, dtype=FP16)
    rmsnorm_fn(x, torch.ones(GDN_HEAD, dtype=FP16), None, z=torch.zeros_like(x), eps=1e-6)


# --------------------------------------------------------------------------- V2 model runner

# vLLM's V2 model runner (vllm/v1/worker/gpu) samples with its own Triton kernels: 64 requests
# decoding one token each over Qwen's 151936-token vocabulary (Llama-3's 128256 for one case).
# Their logits are float32 once any processing runs (the sampler copies them), half otherwise.
V2_REQUESTS, V2_VOCAB = 64, 151936


def _v2_batch(vocab: int = V2_VOCAB, dtype: torch.dtype = torch.float32) -> SimpleNamespace:
    requests = torch.arange(V2_REQUESTS, dtype=torch.int32)
    return SimpleNamespace(
        logits=torch.zeros(V2_REQUESTS, vocab, dtype=dtype),
        mapping=requests,
        per_request=torch.ones(V2_REQUESTS, dtype=torch.float32),
        positions=requests.long(),
    )


def _v2_temperature() -> None:
    from vllm.v1.worker.gpu.sample.gumbel import apply_temperature

    batch = _v2_batch()
    apply_temperature(batch.logits, batch.mapping, batch.per_request)


def _v2_min_p() -> None:
    from vllm.v1.worker.gpu.sample.min_p import apply_min_p

    batch = _v2_batch()
    apply_min_p(batch.logits, batch.mapping, batch.per_request)


def _v2_gumbel_sample(dtype: torch.dtype = torch.float32, vocab: int = V2_VOCAB) -> None:
    """The sampler's random draw (both of its kernels: per-block argmax, then the combine)."""
    from vllm.v1.worker.gpu.sample.gumbel import gumbel_sample

    batch = _v2_batch(vocab, dtype)
    seeds = torch.zeros(V2_REQUESTS, dtype=torch.int64)
    gumbel_sample(
        batch.logits, batch.mapping, batch.per_request, seeds, batch.positions,
        apply_temperature=True, is_drafting=False,
    )  # fmt: skip


def _v2_penalties() -> None:
    """Repetition, frequency and presence penalties, and the bincount that feeds them."""
    from vllm.v1.worker.gpu.sample.penalties import apply_penalties, bincount

    batch = _v2_batch()
    prompt_bin_mask = torch.zeros(V2_REQUESTS, (V2_VOCAB + 31) // 32, dtype=torch.int32)
    output_bin_counts = torch.zeros(V2_REQUESTS, V2_VOCAB, dtype=torch.int32)
    context = 4096
    all_token_ids = torch.zeros(V2_REQUESTS, context, dtype=torch.int32)
    lengths = torch.full((V2_REQUESTS,), context, dtype=torch.int32)
    bincount(batch.mapping, all_token_ids, lengths // 2, lengths, prompt_bin_mask, output_bin_counts, context)
    apply_penalties(
        batch.logits, batch.mapping, torch.zeros(V2_REQUESTS, dtype=torch.int32),
        torch.zeros(V2_REQUESTS, dtype=torch.int32), batch.per_request, batch.per_request,
        batch.per_request, prompt_bin_mask, output_bin_counts,
    )  # fmt: skip


def _v2_logprobs(num_logprobs: int = 20) -> None:
    """--logprobs 20: the top-k log-softmax and the sampled tokens' ranks."""
    from vllm.v1.worker.gpu.sample.logprob import compute_topk_scores

    batch = _v2_batch()
    compute_topk_scores(batch.logits, num_logprobs, torch.zeros(V2_REQUESTS, dtype=torch.int64))


def _v2_grammar_bitmask() -> None:
    """Structured output: the token bitmask applied to the logits.

    StructuredOutputsWorker.apply_grammar_bitmask stages the mask through CUDA streams, which
    a host without a GPU lacks; its kernel gets the arguments that method passes it.
    """
    from vllm.triton_utils import triton
    from vllm.v1.worker.gpu.structured_outputs import (
        GRAMMAR_BITMASK_BLOCK_SIZE,
        _apply_grammar_bitmask_kernel,
    )

    batch = _v2_batch()
    bitmask = torch.zeros(V2_REQUESTS, (V2_VOCAB + 31) // 32, dtype=torch.int32)
    cu_num_logits = torch.arange(V2_REQUESTS + 1, dtype=torch.int32)
    grid = (V2_REQUESTS, triton.cdiv(V2_VOCAB, GRAMMAR_BITMASK_BLOCK_SIZE))
    _apply_grammar_bitmask_kernel[grid](
        batch.logits, batch.logits.stride(0), batch.mapping, cu_num_logits, bitmask, bitmask.stride(0),
        V2_VOCAB, MASK_STRIDE=1, BLOCK_SIZE=GRAMMAR_BITMASK_BLOCK_SIZE,
    )  # fmt: skip


CASES_0_33: dict[str, Callable[[], None]] = {
    "int8 kv prefill h128 8k": lambda: _int8_kv_attention(query_lens=[2048], context=8192),
    "int8 kv decode-3d h128 32k": lambda: _int8_kv_attention(query_lens=[1] * 4, context=LONG_CONTEXT),
    "gdn conv1d prefill (qwen3.5)": _gdn_conv_prefill,
    "gdn conv1d decode (qwen3.5)": _gdn_conv_decode,
    "gdn chunk prefill (qwen3.5)": _gdn_prefill,
    "gdn recurrent decode (qwen3.5)": _gdn_decode,
    "gdn mtp verify (qwen3.5)": _gdn_mtp_verify,
    "gdn gated rmsnorm (qwen3.5)": _gated_rms_norm,
    "v2 runner temperature": _v2_temperature,
    "v2 runner min_p": _v2_min_p,
    "v2 runner gumbel sample fp32": _v2_gumbel_sample,
    "v2 runner gumbel sample fp16 llama3": lambda: _v2_gumbel_sample(FP16, 128256),
    "v2 runner penalties": _v2_penalties,
    "v2 runner logprobs top-20": _v2_logprobs,
    "v2 runner grammar bitmask": _v2_grammar_bitmask,
}


# vllm/v1/sample/rejection_sampler.py, which 0.34.0 removed with the rest of the V1 sampler; the
# V2 runner's rejection sampler (vllm/v1/worker/gpu/spec_decode) is not in the table yet.
V1_SAMPLER_CASES = ("rejection_sample vocab 32000", "rejection_sample vocab 151936")


def cases(version: str) -> dict[str, Callable[[], None]]:
    """The cases that vLLM `version`'s launchers support."""
    if Version(version) < Version("0.33.0"):  # CASES_0_33's launchers came with 0.33.0
        return CASES
    found = {**CASES, **CASES_0_33}
    if Version(version) >= Version("0.34.0"):
        found = {name: case for name, case in found.items() if name not in V1_SAMPLER_CASES}
    return found
