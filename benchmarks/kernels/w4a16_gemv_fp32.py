"""A W4A16 GEMV for Pascal decode that does its arithmetic in fp32 (the cost model's proposal).

Not vLLM code and not run anywhere yet: the cost model compiles it for sm_61/sm_60 and counts
its PTX, to show what vLLM's Triton W4A16 path would cost with these changes:
- no tl.dot: one row of activations needs one FMA per weight, not BLOCK_M (>= 16) of them;
- dequantisation in fp32 without a conversion instruction: a nibble q OR-ed into the
  mantissa of 2^23 reads as the float 2^23 + q, so w = bits(q | 0x4B000000) - (2^23 + 8);
- the group scale is applied once per column per tile, after the partial dot product;
- split-K over the grid's second axis, partial sums added into an fp32 output with
  atomic_add (a native fp32 atomic on sm_60/sm_61), so a 4096-column layer still fills
  30 or 56 SMs.
Weights in GPTQ's checkpoint layout: qweight [K // 8, N] int32 (8 K-values per word, low
nibble first), scales [K // group_size, N] fp16; symmetric (uint4b8). BLOCK_K divides the
group size.
"""

import triton
import triton.language as tl


@triton.jit
def w4a16_gemv_fp32_kernel(
    a_ptr,  # [K] fp16: one row of activations
    b_ptr,  # [K // 8, N] int32
    scales_ptr,  # [K // group_size, N] fp16
    c_ptr,  # [N] fp32, zeroed: partial sums are added in
    N,
    K,
    group_size,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    K_PER_PROGRAM: tl.constexpr,
):
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    words = tl.arange(0, BLOCK_K // 8)
    shifts = tl.arange(0, 8) * 4
    k_begin = tl.program_id(1) * K_PER_PROGRAM
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(k_begin, k_begin + K_PER_PROGRAM, BLOCK_K):
        packed = tl.load(
            b_ptr + (k0 // 8 + words)[:, None] * N + offs_n[None, :], mask=mask_n[None, :], other=0
        )
        q = (packed[:, None, :] >> shifts[None, :, None]) & 0xF
        w = (q | 0x4B000000).to(tl.float32, bitcast=True) - 8388616.0
        a = tl.reshape(tl.load(a_ptr + k0 + tl.arange(0, BLOCK_K)).to(tl.float32), (BLOCK_K // 8, 8))
        partial = tl.sum(tl.sum(w * a[:, :, None], axis=1), axis=0)
        scale = tl.load(scales_ptr + (k0 // group_size) * N + offs_n, mask=mask_n, other=0.0)
        acc += partial * scale.to(tl.float32)
    tl.atomic_add(c_ptr + offs_n, acc, mask=mask_n)
