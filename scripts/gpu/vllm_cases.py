"""The cases of the Pascal-form numerics run, their inputs and their float32 references.

Nothing here needs a GPU or triton: cases are plain dataclasses, inputs are built on any torch
device, and each reference is written out in float32 from the kernel's documented meaning
(paged KV cache, causal mask, sliding window, ALiBi, softcap, sinks), never from the kernel.
The GPU runner (run_vllm_numerics.py) calls vLLM's own launchers on the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

# Max abs error allowed against the float32 reference, by input dtype. fp16 inputs are rounded
# to fp16 (and P to fp16 before P.V, as the kernels do), fp32 inputs run on the FMA path.
ATTENTION_BOUND = {torch.float16: 1e-2, torch.float32: 2e-4}
# Outputs here are convex combinations of V ~ N(0, 1), so errors are also given relative to
# the reference's largest magnitude.
DTYPE_NAMES = {torch.float16: "fp16", torch.float32: "fp32"}


@dataclass(frozen=True)
class AttentionCase:
    """One unified-attention launch: a batch of sequences over a paged KV cache."""

    name: str
    head_size: int
    num_kv_heads: int
    gqa: int  # query heads per KV head
    block_size: int
    query_lens: tuple[int, ...]
    context_lens: tuple[int, ...]  # tokens already in the cache before the queries
    dtype: torch.dtype = torch.float16
    window: int = 0  # sliding window in tokens, 0 = off
    alibi: bool = False
    softcap: float = 0.0
    sinks: bool = False
    use_3d: bool = False  # give the launcher the split-softmax buffers (decode-only batches)

    @property
    def num_heads(self) -> int:
        return self.num_kv_heads * self.gqa

    @property
    def seq_lens(self) -> tuple[int, ...]:
        return tuple(c + q for c, q in zip(self.context_lens, self.query_lens, strict=True))

    @property
    def shape(self) -> str:
        return (
            f"h{self.head_size} kv{self.num_kv_heads}x{self.gqa} bs{self.block_size} "
            f"q{list(self.query_lens)} ctx{list(self.context_lens)}"
        )


@dataclass(frozen=True)
class PrefixCase:
    """One prefix-prefill launch: new tokens attend to a cached prefix and causally to themselves."""

    name: str
    head_size: int
    num_kv_heads: int
    gqa: int
    query_lens: tuple[int, ...]
    context_lens: tuple[int, ...]
    alibi: bool = False
    dtype: torch.dtype = torch.float16
    block_size: int = 16  # the KV cache's page size

    @property
    def num_heads(self) -> int:
        return self.num_kv_heads * self.gqa

    @property
    def shape(self) -> str:
        heads = f"h{self.head_size} kv{self.num_kv_heads}x{self.gqa}"
        return f"{heads} q{list(self.query_lens)} ctx{list(self.context_lens)}"


@dataclass(frozen=True)
class SmallCase:
    """reshape_and_cache, merge_attn_states, fused_moe: a name, a shape and its parameters."""

    name: str
    kind: str
    params: dict = field(default_factory=dict, hash=False, compare=False)
    dtype: torch.dtype = torch.float16

    @property
    def shape(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params.items())


# --------------------------------------------------------------------------- case lists

HEAD_SIZES = (64, 80, 96, 128, 256)
# (mode, query_lens, context_lens, use_3d): 2D prefill, 2D decode (no 3D buffers), the 3D
# split-softmax decode, and a mixed batch of a prefill and decodes (2D).
MODES = {
    "prefill": ((37, 64), (0, 91), False),
    "decode-2d": ((1, 1, 1), (200, 513, 17), False),
    "decode-3d": ((1, 1, 1), (200, 513, 17), True),
    "mixed": ((45, 1, 1), (70, 300, 1), False),
}


def _attention(name: str, mode: str, **kw: object) -> AttentionCase:
    query_lens, context_lens, use_3d = MODES[mode]
    defaults: dict = {"head_size": 128, "num_kv_heads": 2, "gqa": 4, "block_size": 16}
    defaults.update(kw)
    return AttentionCase(
        name=f"unified {mode} {name}".strip(),
        query_lens=query_lens,
        context_lens=context_lens,
        use_3d=use_3d,
        **defaults,  # type: ignore[arg-type]
    )


def attention_cases() -> list[AttentionCase]:
    """Head sizes x modes; then block size, GQA, dtype and each feature at head size 128."""
    cases = [_attention(f"h{h}", mode, head_size=h) for h in HEAD_SIZES for mode in MODES]
    for mode in ("prefill", "decode-3d", "mixed"):
        cases.append(_attention("bs32", mode, block_size=32))
    for gqa in (1, 8):
        for mode in ("prefill", "decode-3d"):
            cases.append(_attention(f"gqa{gqa}", mode, gqa=gqa))
    for mode in ("prefill", "decode-3d"):
        cases.append(_attention("window64", mode, window=64))
        cases.append(_attention("alibi", mode, alibi=True))
        cases.append(_attention("softcap30", mode, softcap=30.0))
        cases.append(_attention("sinks", mode, sinks=True))
        cases.append(_attention("h256 window64", mode, head_size=256, window=64))
    for h in (64, 128, 256):
        for mode in ("prefill", "decode-3d"):
            cases.append(_attention(f"h{h} fp32", mode, head_size=h, dtype=torch.float32))
    cases.append(_attention("bs32 fp32", "mixed", block_size=32, dtype=torch.float32))
    cases.extend(gemma3_cases())
    return cases


# Gemma3's signature, a sliding window of 1024 at head size 128 or 256, takes vLLM's own tile
# rule (32 keys); patch 0015 puts Pascal's fp32 rule ahead of it. The contexts run past the
# window, so the mask cuts keys.
GEMMA3_WINDOW = 1024
GEMMA3_MODES = {
    "prefill": ((37, 64), (0, 1200), False),
    "decode-3d": ((1, 1, 1), (1500, 200, 1100), True),
}


def gemma3_cases() -> list[AttentionCase]:
    shapes = [(256, "prefill", torch.float16), (256, "decode-3d", torch.float16)]
    shapes += [
        (256, "prefill", torch.float32),
        (256, "decode-3d", torch.float32),
        (128, "prefill", torch.float32),
    ]
    cases = []
    for head_size, mode, dtype in shapes:
        query_lens, context_lens, use_3d = GEMMA3_MODES[mode]
        suffix = " fp32" if dtype == torch.float32 else ""
        cases.append(
            AttentionCase(
                name=f"unified {mode} h{head_size} gemma3 sw{GEMMA3_WINDOW}{suffix}",
                head_size=head_size,
                num_kv_heads=2,
                gqa=4,
                block_size=16,
                query_lens=query_lens,
                context_lens=context_lens,
                dtype=dtype,
                window=GEMMA3_WINDOW,
                use_3d=use_3d,
            )
        )
    return cases


def prefix_cases(block_m: dict[int, int], block_n: int, alibi_block: dict[int, int]) -> list[PrefixCase]:
    """Around the Pascal tiles: query lengths one below, at and one above BLOCK_M (or the ALiBi
    kernel's BLOCK), context lengths likewise around BLOCK_N, for head sizes 128 and 256.

    `block_m` / `alibi_block` map the padded head size to the tile patch 0005 picks on 6.x.
    """
    cases = []
    for head in (128, 256):
        for alibi in (False, True):
            m = alibi_block[head] if alibi else block_m[head]
            n = alibi_block[head] if alibi else block_n
            for delta, label in ((-1, "below"), (0, "at"), (1, "above")):
                # Two sequences: tile multiples of 1 and 3 shifted by delta, so one tile and several.
                cases.append(
                    PrefixCase(
                        name=f"prefix_prefill{' alibi' if alibi else ''} h{head} {label} tile",
                        head_size=head,
                        num_kv_heads=2,
                        gqa=4,
                        query_lens=(m + delta, 3 * m + delta),
                        context_lens=(n + delta, 3 * n + delta),
                        alibi=alibi,
                    )
                )
    cases.append(PrefixCase("prefix_prefill h128 fp32", 128, 2, 4, (63, 65), (31, 97), dtype=torch.float32))
    cases.append(
        PrefixCase(
            "prefix_prefill alibi h128 fp32", 128, 2, 4, (31, 33), (15, 47), alibi=True, dtype=torch.float32
        )
    )
    return cases


def small_cases() -> list[SmallCase]:
    moe = {"E": 8, "N": 512, "K": 256, "topk": 2}
    wna16 = {"N": 256, "K": 256, "topk": 2}
    return [
        *(
            SmallCase(
                f"reshape_and_cache {DTYPE_NAMES[d]} bs{bs}",
                "reshape_and_cache",
                {"tokens": 100, "kv_heads": 4, "head": 128, "block": bs},
                d,
            )
            for d in (torch.float16, torch.float32)
            for bs in (16, 32)
        ),
        *(
            SmallCase(
                f"merge_attn_states {DTYPE_NAMES[d]} h{h}",
                "merge_attn_states",
                {"tokens": 77, "heads": 8, "head": h},
                d,
            )
            for d in (torch.float16, torch.float32)
            for h in (80, 128)
        ),
        SmallCase("fused_moe M=4 (M<=E config)", "fused_moe", {"M": 4, **moe}),
        SmallCase("fused_moe M=96 (M>E config)", "fused_moe", {"M": 96, **moe}),
        SmallCase(
            "moe_wna16 triton int8 g64 M=4", "moe_wna16", {"M": 4, "E": 8, **wna16, "bits": 8, "group": 64}
        ),
        SmallCase(
            "moe_wna16 triton int4 g128 M=64",
            "moe_wna16",
            {"M": 64, "E": 4, **wna16, "bits": 4, "group": 128},
        ),
    ]


# --------------------------------------------------------------------------- inputs


@dataclass
class PagedKV:
    """Per-sequence K/V (float32 masters) and their place in a shuffled paged cache."""

    keys: list[torch.Tensor]  # [seq_len, kv_heads, head]
    values: list[torch.Tensor]
    block_table: torch.Tensor  # [num_seqs, max_blocks] int32
    num_blocks: int


def paged_kv(
    seq_lens: tuple[int, ...], kv_heads: int, head: int, block_size: int, generator: torch.Generator
) -> PagedKV:
    blocks_per_seq = [math.ceil(s / block_size) for s in seq_lens]
    total = sum(blocks_per_seq) + 3  # a few unused blocks, so a wrong index reads garbage
    order = torch.randperm(total, generator=generator)
    width = max(blocks_per_seq)
    table = torch.zeros(len(seq_lens), width, dtype=torch.int32)
    used = 0
    for i, n in enumerate(blocks_per_seq):
        table[i, :n] = order[used : used + n].to(torch.int32)
        used += n
    keys = [torch.randn(s, kv_heads, head, generator=generator) for s in seq_lens]
    values = [torch.randn(s, kv_heads, head, generator=generator) for s in seq_lens]
    return PagedKV(keys, values, table, total)


def flash_layout(kv: PagedKV, block_size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """[num_blocks, block_size, kv_heads, head] caches (TRITON_ATTN's layout), filled with NaN
    where no token is, so that reading an unused slot shows up in the error."""
    kv_heads, head = kv.keys[0].shape[1:]
    k_cache = torch.full((kv.num_blocks, block_size, kv_heads, head), float("nan"), dtype=dtype)
    v_cache = k_cache.clone()
    for i, (k, v) in enumerate(zip(kv.keys, kv.values, strict=True)):
        for pos in range(k.shape[0]):
            block = int(kv.block_table[i, pos // block_size])
            k_cache[block, pos % block_size] = k[pos].to(dtype)
            v_cache[block, pos % block_size] = v[pos].to(dtype)
    return k_cache, v_cache


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The ALiBi paper's geometric slopes (for a power-of-two head count, else its extension)."""
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2 ** (-8 / closest)
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest < num_heads:
        extra = 2 ** (-4 / closest)
        slopes += [extra ** (2 * i + 1) for i in range(num_heads - closest)]
    return torch.tensor(slopes, dtype=torch.float32)


# --------------------------------------------------------------------------- references


def attention_reference(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    context_len: int,
    scale: float,
    *,
    window: int = 0,
    slopes: torch.Tensor | None = None,
    softcap: float = 0.0,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention of one sequence in float32.

    q: [query_len, heads, head] for positions context_len.., keys/values: [seq_len, kv_heads, head].
    Query i (position context_len + i) sees keys j <= its position, and with a window W only
    those with position - j < W. Softcap c maps a score s to c * tanh(s / c) before masking;
    ALiBi adds slope * (j - position); a sink is a logit with no value, in every row's softmax.
    """
    q, keys, values = q.float(), keys.float(), values.float()
    query_len, heads, _ = q.shape
    gqa = heads // keys.shape[1]
    k = keys.repeat_interleave(gqa, dim=1)  # [seq, heads, head]
    v = values.repeat_interleave(gqa, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    positions = context_len + torch.arange(query_len)
    key_pos = torch.arange(keys.shape[0])
    distance = positions[:, None] - key_pos[None, :]
    allowed = distance >= 0
    if window > 0:
        allowed &= distance < window
    if slopes is not None:
        scores = scores + slopes.float()[:, None, None] * (-distance).float()[None]
    scores = scores.masked_fill(~allowed[None], float("-inf"))
    if sinks is not None:
        sink = sinks.float()[:, None, None].expand(heads, query_len, 1)
        probabilities = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
    else:
        probabilities = torch.softmax(scores, dim=-1)
    return torch.einsum("hqk,khd->qhd", probabilities, v)


def merge_reference(
    prefix: torch.Tensor, prefix_lse: torch.Tensor, suffix: torch.Tensor, suffix_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two partial softmax results over disjoint key sets, combined; lse is [heads, tokens]."""
    lse = torch.logaddexp(prefix_lse.float(), suffix_lse.float())  # [heads, tokens]
    weight_p = torch.exp(prefix_lse.float() - lse).transpose(0, 1)[..., None]
    weight_s = torch.exp(suffix_lse.float() - lse).transpose(0, 1)[..., None]
    return weight_p * prefix.float() + weight_s * suffix.float(), lse


def moe_align(
    topk_ids: torch.Tensor, experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What vLLM's moe_align_block_size (a CUDA op, absent here) returns, in torch.

    The flattened (token, k) slots grouped by expert, each group padded to a multiple of
    block_m with the sentinel num_slots; one expert id per block; the padded total.
    """
    flat = topk_ids.flatten()
    sentinel = flat.numel()
    sorted_ids, expert_of_block = [], []
    for expert in range(experts):
        slots = torch.nonzero(flat == expert).flatten().tolist()
        if not slots:
            continue
        padded = math.ceil(len(slots) / block_m) * block_m
        sorted_ids += slots + [sentinel] * (padded - len(slots))
        expert_of_block += [expert] * (padded // block_m)
    return (
        torch.tensor(sorted_ids, dtype=torch.int32),
        torch.tensor(expert_of_block, dtype=torch.int32),
        torch.tensor([len(sorted_ids)], dtype=torch.int32),
    )


def moe_reference(
    x: torch.Tensor, weights: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor | None
) -> torch.Tensor:
    """[M, topk, N]: token m times expert topk_ids[m, k]'s [N, K] weight (times its routing weight)."""
    w = weights.float()[topk_ids]  # [M, topk, N, K]
    out = torch.einsum("mk,mtnk->mtn", x.float(), w)
    if topk_weights is not None:
        out = out * topk_weights.float()[..., None]
    return out


def dequantize_wna16(packed: torch.Tensor, scales: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """vLLM's moe_wna16 weight format without zero points: [E, N, K] (int8, offset 128) or
    [E, N, K/2] (int4, two per byte, low nibble first, offset 8); scales [E, N, K/group]."""
    if bits == 8:
        values = packed.to(torch.int32) - 128
    else:
        low = (packed & 0xF).to(torch.int32)
        high = (packed >> 4).to(torch.int32)
        values = torch.stack([low, high], dim=-1).flatten(-2) - 8
    return values.float() * scales.float().repeat_interleave(group, dim=-1)


def quantize_wna16(weights: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric group quantization of [E, N, K] float weights into dequantize_wna16's format."""
    levels = 127 if bits == 8 else 7
    grouped = weights.float().unflatten(-1, (-1, group))
    scales = grouped.abs().amax(-1).clamp(min=1e-6) / levels  # [E, N, K/group]
    q = torch.round(grouped / scales[..., None]).clamp(-levels - 1, levels).flatten(-2).to(torch.int32)
    if bits == 8:
        return (q + 128).to(torch.uint8), scales
    nibbles = (q + 8).to(torch.uint8)
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).to(torch.uint8), scales


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Error:
    max_abs: float
    max_rel: float  # max_abs over the reference's largest magnitude

    @staticmethod
    def of(result: torch.Tensor, reference: torch.Tensor) -> Error:
        result, reference = result.float().cpu(), reference.float().cpu()
        if result.shape != reference.shape:
            raise ValueError(f"result shape {tuple(result.shape)} != reference {tuple(reference.shape)}")
        difference = (result - reference).abs()
        # NaN anywhere (an unused cache slot read, an unwritten row) is an infinite error.
        worst = float("inf") if torch.isnan(difference).any() else float(difference.max())
        scale = float(reference.abs().max()) or 1.0
        return Error(worst, worst / scale)


# --------------------------------------------------------------------------- gated delta net

# Qwen3.5's gated-delta-net layers (vLLM 0.33.0's FLA kernels): 16 key heads, 32 value heads of
# 128. FLA's chunked form works in chunks of 64 tokens, so the varlen case sits around them.
GDN_CHUNK = 64
# The chunked form keeps its intermediates (the solved triangular A, w, u) in fp16, and the
# final state is compared too, so the bound is twice the attention's; the single-step kernels
# (decode, post-conv prep, the gated norm) keep the attention's fp16 bound.
GDN_BOUND = {"chunk": 2e-2, "packed_decode": 1e-2, "post_conv": 1e-2, "gated_rmsnorm": 1e-2}


@dataclass(frozen=True)
class GdnCase:
    """One launch of a gated-delta-net kernel: `seq_lens` tokens of each sequence."""

    name: str
    kind: str  # "chunk", "packed_decode", "post_conv" or "gated_rmsnorm"
    seq_lens: tuple[int, ...]
    k_heads: int = 16
    v_heads: int = 32
    head_dim: int = 128
    dtype: torch.dtype = torch.float16

    @property
    def shape(self) -> str:
        return f"k{self.k_heads} v{self.v_heads} d{self.head_dim} seqs{list(self.seq_lens)}"


def gdn_cases() -> list[GdnCase]:
    below, at, above = GDN_CHUNK - 1, GDN_CHUNK, GDN_CHUNK + 1
    return [
        GdnCase("gdn chunk prefill qwen3.5", "chunk", (300,)),
        GdnCase(
            "gdn chunk prefill varlen around the chunk", "chunk", (below, at, above, 3 * GDN_CHUNK - 2), 4, 8
        ),
        GdnCase("gdn packed decode qwen3.5", "packed_decode", (1, 1, 1, 1)),
        GdnCase("gdn post-conv prep qwen3.5", "post_conv", (100,)),
        GdnCase("gdn gated rmsnorm qwen3.5", "gated_rmsnorm", (200,)),
    ]


def l2_normalized(x: torch.Tensor) -> torch.Tensor:
    """FLA's l2norm: x / sqrt(sum(x^2) + 1e-6) over the last dimension."""
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def gated_delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    state: torch.Tensor,
    *,
    gate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gated delta rule, token by token, in float32, for one sequence.

    q, k: [T, H, K]; v: [T, HV, V]; g (log-space decay), beta: [T, HV]; state: [HV, V, K].
    Value head hv reads key head hv // (HV // H). Per token: S <- exp(g) S; then
    S <- S + beta (v - S k) k^T; output S (scale q). Returns ([T, HV, V], the last S).
    `gate=False` leaves the decay out: a wrong reference that the bound must catch.
    """
    heads = v.shape[1] // q.shape[1]
    q = q.float().repeat_interleave(heads, dim=1) * scale
    k = k.float().repeat_interleave(heads, dim=1)
    s = state.float().clone()
    outputs = []
    for t in range(q.shape[0]):
        if gate:
            s = s * torch.exp(g[t].float())[:, None, None]
        delta = (v[t].float() - torch.einsum("hvk,hk->hv", s, k[t])) * beta[t].float()[:, None]
        s = s + delta[:, :, None] * k[t][:, None, :]
        outputs.append(torch.einsum("hvk,hk->hv", s, q[t]))
    return torch.stack(outputs), s


def gdn_gating_reference(
    a: torch.Tensor, b: torch.Tensor, a_log: torch.Tensor, dt_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen3.5's gates: g = -exp(A_log) softplus(a + dt_bias) (log-space decay), beta = sigmoid(b)."""
    g = -torch.exp(a_log.float()) * torch.nn.functional.softplus(a.float() + dt_bias.float())
    return g, torch.sigmoid(b.float())


def split_mixed_qkv(mixed: torch.Tensor, k_heads: int, v_heads: int, dim: int) -> tuple[torch.Tensor, ...]:
    """[L, 2 H K + HV V] -> q, k [L, H, K] and v [L, HV, V], in that order along the last axis."""
    length, width = mixed.shape[0], k_heads * dim
    q = mixed[:, :width].reshape(length, k_heads, dim)
    k = mixed[:, width : 2 * width].reshape(length, k_heads, dim)
    v = mixed[:, 2 * width :].reshape(length, v_heads, dim)
    return q, k, v


def gated_rmsnorm_reference(
    x: torch.Tensor, weight: torch.Tensor, z: torch.Tensor, eps: float
) -> torch.Tensor:
    """RMSNormGated as Qwen3.5 uses it (norm before the gate): x / rms(x) * weight * silu(z)."""
    x = x.float()
    normed = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight.float()
    return normed * torch.nn.functional.silu(z.float())
