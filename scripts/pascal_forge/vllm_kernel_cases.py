"""vLLM's Triton kernels as they are launched on the TRITON_ATTN path, one case per launcher call.

Each case calls vLLM's own launcher with CPU tensors of a realistic model shape, so the
block sizes, warps and stages are the ones vLLM picks for the GPU the probe reports.
Run only inside the probe of vllm_checks (kernel launches there compile and do not run).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

FP16 = torch.float16
BLOCK_SIZE = 16  # vLLM's default KV cache block size on CUDA
LONG_CONTEXT = 32768


def _paged_kv(num_blocks: int, num_kv_heads: int, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    # TRITON_ATTN's layout: (num_blocks, 2, block_size, num_kv_heads, head_size), unbound on dim 1.
    cache = torch.zeros(num_blocks, 2, BLOCK_SIZE, num_kv_heads, head_size, dtype=FP16)
    return cache.unbind(1)


def _unified_attention(
    *,
    head_size: int,
    num_heads: int,
    num_kv_heads: int,
    query_lens: list[int],
    context: int,
    window: int = -1,
) -> None:
    from vllm.v1.attention.backends.triton_attn import MIN_LAUNCH_GRID_SIZE_2D, NUM_PAR_SOFTMAX_SEGMENTS
    from vllm.v1.attention.ops.triton_unified_attention import unified_attention

    num_seqs = len(query_lens)
    blocks_per_seq = context // BLOCK_SIZE
    key_cache, value_cache = _paged_kv(num_seqs * blocks_per_seq, num_kv_heads, head_size)
    q = torch.zeros(sum(query_lens), num_heads, head_size, dtype=FP16)
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
