"""The kernels one decode step or prefill chunk launches, where their code lives, and their launch shapes.

Each launch builder turns a GEMM/elementwise shape into a `Launch`: which kernel, how many
threads, how often the body of its hot loop runs over the whole launch (from the launcher's
grid and the kernel's loop bounds, read from vLLM 0.34.0's source, file:line given), and the
bytes it must move through DRAM at least once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .compile import CudaSource, TritonSource

# Patch 0041 (recipes/vllm/patches/<version>/0041-*.patch, gptq_fp16_math_is_slow) has the
# reconstruct + GEMM prefill path ask cuBLAS for fp32 compute on these capabilities only
# (6.1, where fp16 runs at 1/64 of fp32); elsewhere (a P100, 6.0) it keeps cublasHgemm.
FP32_GEMM_CAPABILITIES = frozenset({61})
# The patches whose kernels the `patched` rows count (0040/0041: Exllama; 0042: moe_wna16), by
# number: the "before" rows compile the series without them.
FP32_MATH_PATCHES = ("0040", "0041", "0042", "0044")


@dataclass(frozen=True)
class Kernel:
    """One kernel as the cost model knows it."""

    name: str
    origin: str  # "CUDA" | "Triton" | "cuBLAS" | "shape"
    source: CudaSource | TritonSource | None = None
    entry: str = ""  # CUDA: a substring of the mangled entry name
    traced: bool = True  # False: time from bytes only; the PTX is read for the fp16 flag
    in_repository: bool = False  # the source path is this repository's, not vLLM's
    # On paper: the same kernel with every fp16 instruction rewritten as one fp32 instruction
    # per lane (the Exllama/moe_wna16 loops in fp32, the magic-number dequant kept).
    fp32_rewrite: bool = False
    # Compiled from the vLLM tree with this repository's whole series (Toolchain.patched_vllm_tree),
    # e.g. Exllama with patch 0040, rather than the tree the "before" figures come from.
    patched: bool = False


@dataclass(frozen=True)
class Launch:
    """One launch: `threads` threads; the hot loop chain's body runs `iterations[depth]` times."""

    op: str
    kernel: Kernel
    dram_bytes: float
    threads: int = 0
    iterations: dict[int, float] = field(default_factory=dict)
    fp32_flops: float = 0.0  # cuBLAS / shape-only kernels: the arithmetic at the FP32 rate
    fp16_flops: float = 0.0  # ... and at the FP16 rate (cublasHgemm)
    repeat: int = 1  # launches of this shape per step (one per layer)
    tail_share: dict[int, float] = field(default_factory=dict)  # see KernelCounts.launch


# --------------------------------------------------------------------------- kernels


def exllama_kernel(m_count: int, fp32_rewrite: bool = False, patched: bool = False) -> Kernel:
    """q_gemm.cu's gemm_half_q_half_gptq_4bit_kernel<true, m_count>: as released, rewritten in fp32
    on paper, or as compiled with patch 0040 (fp32 arithmetic when built for compute_61)."""
    name = f"exllama gemm_half_q_half_gptq_4bit (m_count={m_count})"
    if fp32_rewrite:
        name += ", fp32 rewrite (on paper)"
    if patched:
        name += ", patched (0040, from its PTX)"
    return Kernel(
        name,
        "CUDA",
        CudaSource("csrc/quantization/gptq/q_gemm.cu"),
        entry=f"gemm_half_q_half_gptq_4bit_kernelILb1ELi{m_count}E",
        fp32_rewrite=fp32_rewrite,
        patched=patched,
    )


EXLLAMA_GEMM = exllama_kernel(1)
EXLLAMA_RECONSTRUCT = Kernel(
    "exllama reconstruct_exllama_4bit",
    "CUDA",
    CudaSource("csrc/quantization/gptq/q_gemm.cu"),
    entry="reconstruct_exllama_4bit_kernel",
    traced=False,
)
HGEMM = Kernel("cublasHgemm (fp16 compute)", "cuBLAS")
GEMM = Kernel("cuBLAS GEMM (fp16 data, fp32 compute)", "cuBLAS")


def _bytes_only(name: str, path: str, entry: str) -> Kernel:
    """An elementwise CUDA kernel: timed from its bytes; its PTX is read for the fp16 flag."""
    return Kernel(name, "CUDA", CudaSource(path), entry, traced=False)


RMS_NORM = _bytes_only("rms_norm", "csrc/layernorm_kernels.cu", "rms_norm_kernel")
FUSED_ADD_RMS_NORM = _bytes_only(
    "fused_add_rms_norm", "csrc/layernorm_kernels.cu", "fused_add_rms_norm_kernel"
)
ROTARY = _bytes_only("rotary_embedding", "csrc/pos_encoding_kernels.cu", "rotary_embedding_kernel")
SILU_AND_MUL = _bytes_only("silu_and_mul", "csrc/activation_kernels.cu", "act_and_mul_kernel")
RESHAPE_AND_CACHE = _bytes_only(
    "reshape_and_cache_flash", "csrc/cache_kernels.cu", "reshape_and_cache_flash_kernel"
)
TOPK_SOFTMAX = _bytes_only("topk_softmax", "csrc/moe/topk_softmax_kernels.cu", "topkGating")
MOE_WNA16 = Kernel(
    "moe_wna16_gemm (4-bit, half)",
    "CUDA",
    CudaSource("csrc/moe/moe_wna16.cu"),
    entry="moe_wna16_gemm_kernelI6__halfLi4ELi1E",
)
MOE_WNA16_FP32 = Kernel(
    "moe_wna16_gemm, fp32 rewrite (on paper)",
    "CUDA",
    MOE_WNA16.source,
    entry=MOE_WNA16.entry,
    fp32_rewrite=True,
)
# As compiled with vLLM patch 0042 (fp32 dequant and dot loop when built for compute_61).
MOE_WNA16_PATCHED = Kernel(
    "moe_wna16_gemm, patched (0042, from its PTX)",
    "CUDA",
    MOE_WNA16.source,
    entry=MOE_WNA16.entry,
    patched=True,
)
# TRITON_ATTN's unified attention (patch 0015 keeps its tiles in fp32 on Pascal): counted
# from its shape here (K/V bytes, two fp32 FMAs per cached element per query head group).
ATTENTION = Kernel("unified_attention (Triton, from shape)", "shape")


W4A16_SIGNATURE = {
    "a_ptr": "*fp16",
    "b_ptr": "*i32",
    "scales_ptr": "*fp16",
    "zeros_ptr": "*i32",
    "c_ptr": "*fp16",
    **{
        name: "i32"
        for name in (
            "M",
            "N",
            "K",
            "stride_am",
            "stride_ak",
            "stride_bk",
            "stride_bn",
            "stride_cm",
            "stride_cn",
            "group_size",
        )
    },
    **{name: "constexpr" for name in ("HAS_ZP", "ZP_BIAS", "BLOCK_M", "BLOCK_N", "BLOCK_K")},
}


def triton_w4a16_kernel(block_m: int, block_n: int, block_k: int, m: int) -> Kernel:
    """vLLM's Triton W4A16 GEMM (kernels/linear/mixed_precision/triton_w4a16.py), symmetric uint4b8.

    Specialized as Triton's JIT does for contiguous tensors with N, K multiples of 128: unit
    strides and M == 1 are constexprs, the rest of the sizes and strides multiples of 16.
    """
    unit = {"stride_ak": 1, "stride_bn": 1, "stride_cn": 1, **({"M": 1} if m == 1 else {})}
    signature = {name: ("constexpr" if name in unit else kind) for name, kind in W4A16_SIGNATURE.items()}
    aligned = ("a_ptr", "b_ptr", "scales_ptr", "zeros_ptr", "c_ptr", "N", "K", "stride_am", "stride_bk")
    aligned += ("stride_cm", "group_size", *(() if m == 1 else ("M",)))
    return Kernel(
        f"triton_w4a16_gemm {block_m}x{block_n}x{block_k}" + (" M=1" if m == 1 else ""),
        "Triton",
        TritonSource(
            path="vllm/model_executor/kernels/linear/mixed_precision/triton_w4a16.py",
            function="triton_w4a16_gemm_kernel",
            signature=signature,
            constants={
                "HAS_ZP": False,
                "ZP_BIAS": 8,
                "BLOCK_M": block_m,
                "BLOCK_N": block_n,
                "BLOCK_K": block_k,
                **unit,
            },
            aligned=aligned,
        ),
    )


def triton_w4a16_blocks(m: int, group_size: int) -> tuple[int, int, int]:
    """The CUDA branch of `_triton_w4a16_gemm_impl` (triton_w4a16.py:230-244 in 0.34.0)."""
    if m <= 32:
        blocks = (32, 64, 32)
    elif m <= 64:
        blocks = (64, 64, 32)
    else:
        blocks = (128, 128, 32)
    return blocks[0], blocks[1], min(blocks[2], group_size)


AWQ_SPLIT_K = 8  # AutoAWQLinearMethod passes its pack factor as split_k_iters
AWQ_BLOCKS = (32, 32, 32)  # awq_gemm_triton's defaults (BLOCK_SIZE_M, _N, _K), 4 warps


def awq_gemm_kernel(m: int, patched_for: int | None = None) -> Kernel:
    """vLLM's Triton AWQ GEMM (awq_triton.py's awq_gemm_kernel), which patch 0036 runs AWQ
    with below 7.5 under 256 rows: as released (fp16 dequant and accumulator), or as patch 0044
    runs it on a card of capability `patched_for` (FP32_MATH, fp32 throughout, below 7.0).
    Specialized as Triton's JIT does for N, K and the group size multiples of 16 (and M == 1 a
    constexpr)."""
    # 0044's switch, as its launcher sets it; the released kernel has no such argument.
    switch = {} if patched_for is None else {"FP32_MATH": patched_for < 70}
    unit = {"M": 1} if m == 1 else {}
    signature = {
        "a_ptr": "*fp16",
        "b_ptr": "*i32",
        "c_ptr": "*fp16",
        "zeros_ptr": "*i32",
        "scales_ptr": "*fp16",
        "M": "constexpr" if unit else "i32",
        "N": "i32",
        "K": "i32",
        "group_size": "i32",
        **{name: "constexpr" for name in ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "SPLIT_K")},
        **dict.fromkeys(switch, "constexpr"),
    }
    block_m, block_n, block_k = AWQ_BLOCKS
    name = f"awq_gemm {block_m}x{block_n}x{block_k} split-K {AWQ_SPLIT_K}" + (" M=1" if m == 1 else "")
    if patched_for is not None:
        name += f", patched (0044, {'fp32' if switch['FP32_MATH'] else 'as released'} on sm_{patched_for})"
    return Kernel(
        name,
        "Triton",
        TritonSource(
            path="vllm/model_executor/layers/quantization/awq_triton.py",
            function="awq_gemm_kernel",
            signature=signature,
            constants={
                "BLOCK_SIZE_M": block_m,
                "BLOCK_SIZE_N": block_n,
                "BLOCK_SIZE_K": block_k,
                "SPLIT_K": AWQ_SPLIT_K,
                **switch,
                **unit,
            },
            aligned=("a_ptr", "b_ptr", "c_ptr", "zeros_ptr", "scales_ptr", "N", "K", "group_size"),
        ),
        patched=patched_for is not None,
    )


# The kernel the cost model proposes for Pascal decode (benchmarks/kernels/, not vLLM's):
# a split-K W4A16 GEMV in fp32. Its path is relative to this repository.
PROPOSED_GEMV_BLOCKS = (512, 32, 512)  # BLOCK_N, BLOCK_K, K_PER_PROGRAM; 4 warps
PROPOSED_GEMV = Kernel(
    "proposed w4a16_gemv_fp32 (Triton)",
    "Triton",
    TritonSource(
        path="benchmarks/kernels/w4a16_gemv_fp32.py",
        function="w4a16_gemv_fp32_kernel",
        signature={
            "a_ptr": "*fp16",
            "b_ptr": "*i32",
            "scales_ptr": "*fp16",
            "c_ptr": "*fp32",
            "N": "i32",
            "K": "i32",
            "group_size": "i32",
            "BLOCK_N": "constexpr",
            "BLOCK_K": "constexpr",
            "K_PER_PROGRAM": "constexpr",
        },
        constants=dict(zip(("BLOCK_N", "BLOCK_K", "K_PER_PROGRAM"), PROPOSED_GEMV_BLOCKS, strict=True)),
        aligned=("a_ptr", "b_ptr", "scales_ptr", "c_ptr", "N", "K", "group_size"),
    ),
    in_repository=True,
)


# --------------------------------------------------------------------------- launches

FP16 = 2
INT4 = 0.5


def int4_weight_bytes(n: int, k: int, group_size: int) -> float:
    """Packed weights plus fp16 scales (and GPTQ's packed zeros) of a K x N layer."""
    groups = math.ceil(k / group_size)
    return n * k * INT4 + groups * n * (FP16 + INT4)


def gemm(op: str, m: int, n: int, k: int, repeat: int) -> Launch:
    """torch's fp16 linear: cuBLAS GEMM, fp32 accumulation (torch's default for half)."""
    return Launch(op, GEMM, (n * k + m * k + m * n) * FP16, fp32_flops=2.0 * m * n * k, repeat=repeat)


def exllama(
    op: str,
    m: int,
    n: int,
    k: int,
    group_size: int,
    repeat: int,
    fp32_rewrite: bool = False,
    patched: bool = False,
    fp32_gemm: bool = False,
) -> list[Launch]:
    """q_gemm.cu: m <= 50 rows run gemm_half_q_half_gptq_4bit_kernel; more rows reconstruct + cublasHgemm.

    Rows go in chunks of 8 (m_count=8) and one launch for the rest (q_gemm.cu:1359-1373).
    Grid (q_gemm.cu:642-648): x = ceil(N / (128*4)), y = ceil(M / m_count), z = ceil(K / 128);
    128 threads; each thread's while-loop (q_gemm.cu:198) steps k by 32 over its 128-row slice,
    so the hot loop runs 4 times per thread.
    """
    weights = int4_weight_bytes(n, k, group_size)
    if m <= 50:
        launches = []
        for rows, m_count in ((m - m % 8, 8), (m % 8, m % 8)):
            if not rows:
                continue
            threads = math.ceil(n / 512) * (rows // m_count) * math.ceil(k / 128) * 128
            dram = weights + (rows * k + rows * n) * FP16
            kernel = exllama_kernel(m_count, fp32_rewrite, patched)
            launches.append(Launch(op, kernel, dram, threads, {1: threads * 4}, repeat=repeat))
        return launches
    reconstruct = Launch(op + " (reconstruct)", EXLLAMA_RECONSTRUCT, weights + n * k * FP16, repeat=repeat)
    data = (n * k + m * k + m * n) * FP16
    # `fp32_gemm` (the rewrite, or patch 0041 on a card of FP32_GEMM_CAPABILITIES): cuBLAS with
    # fp32 compute (cublasGemmEx) instead of cublasHgemm.
    if fp32_gemm:
        return [reconstruct, Launch(op + " (GEMM)", GEMM, data, fp32_flops=2.0 * m * n * k, repeat=repeat)]
    return [reconstruct, Launch(op + " (Hgemm)", HGEMM, data, fp16_flops=2.0 * m * n * k, repeat=repeat)]


def exllama_fp32(op: str, m: int, n: int, k: int, group_size: int, repeat: int) -> list[Launch]:
    return exllama(op, m, n, k, group_size, repeat, fp32_rewrite=True, fp32_gemm=True)


def exllama_patched(
    op: str, m: int, n: int, k: int, group_size: int, repeat: int, capability: int
) -> list[Launch]:
    """Exllama as vLLM patches 0040 and 0041 build it, counted from the patched q_gemm.cu's PTX,
    on a card of `capability` (0041's fp32 GEMM is chosen at run time from the card's capability)."""
    fp32_gemm = capability in FP32_GEMM_CAPABILITIES
    return exllama(op, m, n, k, group_size, repeat, patched=True, fp32_gemm=fp32_gemm)


def triton_w4a16(op: str, m: int, n: int, k: int, group_size: int, repeat: int) -> list[Launch]:
    """Grid (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)), 4 warps; the K loop runs cdiv(K, BLOCK_K) times."""
    block_m, block_n, block_k = triton_w4a16_blocks(m, group_size)
    programs = math.ceil(m / block_m) * math.ceil(n / block_n)
    threads = programs * 128
    trips = math.ceil(k / block_k)
    dram = int4_weight_bytes(n, k, group_size) + (m * k + m * n) * FP16
    return [
        Launch(
            op,
            triton_w4a16_kernel(block_m, block_n, block_k, m),
            dram,
            threads,
            {1: threads * trips},
            repeat=repeat,
        )
    ]


# Prefill's dequantize (awq_dequantize_kernel): elementwise, timed from its bytes.
AWQ_DEQUANTIZE = Kernel("awq_dequantize (Triton, from its bytes)", "shape")
# AutoAWQLinearMethod (patch 0036) runs awq_gemm_triton below this many rows, above it the
# Triton dequantize and torch's matmul (auto_awq.py's FP16_MATMUL_HEURISTIC_CONDITION).
AWQ_GEMM_ROWS = 256


def awq_triton(
    op: str, m: int, n: int, k: int, group_size: int, repeat: int, patched_for: int | None = None
) -> list[Launch]:
    """awq_gemm_triton (awq_triton.py): grid (cdiv(M, 32) * cdiv(N, 32), SPLIT_K), 4 warps; each
    program's K loop runs cdiv(K, 32 * SPLIT_K) times. It writes SPLIT_K fp16 partials of the
    output, which torch then sums (priced as bytes in the same launch)."""
    weights = int4_weight_bytes(n, k, group_size)
    if m >= AWQ_GEMM_ROWS:
        dequantize = Launch(op + " (dequantize)", AWQ_DEQUANTIZE, weights + n * k * FP16, repeat=repeat)
        return [dequantize, gemm(op + " (GEMM)", m, n, k, repeat)]
    block_m, block_n, block_k = AWQ_BLOCKS
    programs = math.ceil(m / block_m) * math.ceil(n / block_n) * AWQ_SPLIT_K
    threads = programs * 128
    trips = math.ceil(k / (block_k * AWQ_SPLIT_K))
    partials = AWQ_SPLIT_K * m * n * FP16
    dram = weights + m * k * FP16 + 2 * partials + m * n * FP16
    kernel = awq_gemm_kernel(1 if m == 1 else 2, patched_for)
    return [Launch(op, kernel, dram, threads, {1: threads * trips}, repeat=repeat)]


def awq_triton_patched(
    op: str, m: int, n: int, k: int, group_size: int, repeat: int, capability: int
) -> list[Launch]:
    """awq_gemm_triton as vLLM patch 0044 runs it on a card of `capability`."""
    return awq_triton(op, m, n, k, group_size, repeat, patched_for=capability)


def proposed_gemv(op: str, m: int, n: int, k: int, group_size: int, repeat: int) -> list[Launch]:
    """The proposed fp32 GEMV for m <= 4 rows (one launch per row); above that, the Exllama
    fp32 rewrite (up to 50 rows), then its reconstruct and a cuBLAS GEMM with fp32 compute.

    Grid (ceil(N / BLOCK_N), ceil(K / K_PER_PROGRAM)), 4 warps; the K loop runs
    K_PER_PROGRAM / BLOCK_K times per program.
    """
    if m > 4:
        return exllama_fp32(op, m, n, k, group_size, repeat)
    block_n, block_k, per_program = PROPOSED_GEMV_BLOCKS
    threads = math.ceil(n / block_n) * math.ceil(k / per_program) * 128
    dram = int4_weight_bytes(n, k, group_size) + k * FP16 + n * 4
    return [
        Launch(op, PROPOSED_GEMV, dram, threads, {1: threads * per_program // block_k}, repeat=repeat * m)
    ]


def moe_wna16(
    op: str, tokens: int, top_k: int, n: int, k: int, group_size: int, repeat: int, kernel: Kernel = MOE_WNA16
) -> list[Launch]:
    """moe_wna16.cu: one thread per output column per expert slot, 4-bit, one token per expert at decode.

    Block (moe_wna16.cu:272-278): BLOCK_SIZE_N threads; grid z = K / BLOCK_SIZE_K. Each thread's
    tmp_k loop (moe_wna16.cu:200) runs BLOCK_SIZE_K/8 times per z-slice, i.e. K/8 times per
    column, and its m loop (moe_wna16.cu:228) once per routed token in the block. nvcc
    unrolls the m loop by 4 (the inner PTX loop, which does not run for one token) and
    writes its remainder as 3 guarded copies after it, in the tmp_k body's tail; with one
    token per expert block one copy runs, so a third of that tail is counted.
    """
    slots = tokens * top_k
    columns = slots * n
    words = columns * k / 8
    dram = slots * int4_weight_bytes(n, k, group_size) + slots * (k + n) * FP16
    threads = columns * max(1, k // 128)  # BLOCK_SIZE_K 128 (get_moe_wna16_block_config)
    # One token per expert block: the unrolled m loop never runs, one of its 3 remainder copies does.
    return [Launch(op, kernel, dram, int(threads), {1: words, 2: 0}, repeat=repeat, tail_share={1: 1 / 3})]


def elementwise(op: str, kernel: Kernel, elements: float, bytes_per_element: float, repeat: int) -> Launch:
    return Launch(op, kernel, elements * bytes_per_element, repeat=repeat)


def attention(
    op: str,
    queries: int,
    context: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    repeat: int,
    sequences: int = 1,
) -> Launch:
    """`sequences` sequences of `context` cached tokens each, `queries` new tokens in all."""
    kv_bytes = sequences * 2 * context * kv_heads * head_dim * FP16
    # QK^T and PV, per query head: 2 * context * head_dim FMAs.
    flops = 2.0 * 2 * queries * heads * context * head_dim  # each query sees its own sequence
    return Launch(
        op, ATTENTION, kv_bytes + 2 * queries * heads * head_dim * FP16, fp32_flops=flops, repeat=repeat
    )
