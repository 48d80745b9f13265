"""The kernels of the Pascal compile suite, written the way user code and Inductor write them.

Imported only where triton is importable (the runner subprocess). Every case names the patch
concern it exercises (`fixed_by`), so the suite can check both directions: the stock wheel
fails exactly those cases, the patched tree compiles all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import triton
import triton.language as tl
from triton.language.extra import libdevice

# Patch concerns, matching recipes/triton/patches/.
EVICTION = "eviction-hints"
ATOMIC_ORDER = "atomic-memory-order"
ATOMIC_16BIT = "atomic-16bit"

MEMORY_ORDERS = ("relaxed", "acquire", "release", "acq_rel")
SCOPES = ("gpu", "cta", "sys")
# Element types Triton 3.6.0 and 3.8.0 accept for each atomic (semantic.py refuses the others).
ATOMIC_DTYPES = {
    "add": ("fp16", "bf16", "fp32", "fp64", "i32", "u32", "i64", "u64"),
    "max": ("fp32", "fp64", "i32", "u32", "i64", "u64"),
    "min": ("fp32", "fp64", "i32", "u32", "i64", "u64"),
    "xchg": ("fp32", "fp64", "i32", "u32", "i64", "u64"),
    "and": ("i32", "u32", "i64", "u64"),
    "or": ("i32", "u32", "i64", "u64"),
    "xor": ("i32", "u32", "i64", "u64"),
    "cas": ("fp16", "bf16", "i16", "u16", "fp32", "fp64", "i32", "u32", "i64", "u64"),
}
REFUSED = "refused"
INT8_DOT = "no int8 dot before sm_80 (a Triton limit, not a Pascal one)"


@dataclass(frozen=True)
class KernelCase:
    """One kernel specialisation to compile: what triton.compile needs plus what we expect."""

    name: str
    group: str
    fn: Any
    signature: dict[str, str]
    constexprs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    # The patch concern this case needs on Pascal; None: stock triton compiles it already.
    fixed_by: str | None = None
    # A text the compile error must contain when the case must be refused (fp8e4nv).
    refusal: str | None = None
    # Why the case still fails on Pascal with the patches: a limit we document, not a fix we claim.
    known_failure: str | None = None
    # The first triton release whose language has what the case uses (None: every supported one).
    min_triton: tuple[int, int] | None = None

    def available_in(self, triton_version: str) -> bool:
        """Whether `triton_version` (e.g. "3.8.0") can express this case."""
        if self.min_triton is None:
            return True
        major, minor = (int(part) for part in triton_version.split(".")[:2])
        return (major, minor) >= self.min_triton


@triton.jit
def atomic_rmw(
    target,
    index,
    values,
    old_out,
    n,
    OP: tl.constexpr,
    SEM: tl.constexpr,
    SCOPE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    slot = tl.load(index + offs, mask=mask, other=0)
    val = tl.load(values + offs, mask=mask)
    if OP == "add":
        old = tl.atomic_add(target + slot, val, mask=mask, sem=SEM, scope=SCOPE)
    elif OP == "max":
        old = tl.atomic_max(target + slot, val, mask=mask, sem=SEM, scope=SCOPE)
    elif OP == "min":
        old = tl.atomic_min(target + slot, val, mask=mask, sem=SEM, scope=SCOPE)
    elif OP == "xchg":
        old = tl.atomic_xchg(target + slot, val, mask=mask, sem=SEM, scope=SCOPE)
    elif OP == "and":
        old = tl.atomic_and(target + slot, val, mask=mask, sem=SEM, scope=SCOPE)
    elif OP == "or":
        old = tl.atomic_or(target + slot, val, mask=mask, sem=SEM, scope=SCOPE)
    else:
        old = tl.atomic_xor(target + slot, val, mask=mask, sem=SEM, scope=SCOPE)
    tl.store(old_out + offs, old, mask=mask)


@triton.jit
def atomic_cas(
    target, index, compare, values, old_out, n, SEM: tl.constexpr, SCOPE: tl.constexpr, BLOCK: tl.constexpr
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    slot = tl.load(index + offs, mask=mask, other=0)
    expected = tl.load(compare + offs, mask=mask)
    val = tl.load(values + offs, mask=mask)
    # tl.atomic_cas takes no mask: lanes past n swap target[0] for itself (compare == value).
    expected = tl.where(mask, expected, val)
    old = tl.atomic_cas(target + slot, expected, val, sem=SEM, scope=SCOPE)
    tl.store(old_out + offs, old, mask=mask)


@triton.jit
def atomic_scalar_add(counter, old_out, SEM: tl.constexpr):
    # A scalar pointer: one thread does the atomic, the result is broadcast through shared memory.
    old = tl.atomic_add(counter, 1, sem=SEM)
    tl.store(old_out + tl.program_id(0), old)


@triton.jit
def load_store(
    src,
    dst,
    n,
    LOAD_CACHE: tl.constexpr,
    STORE_CACHE: tl.constexpr,
    LOAD_EVICT: tl.constexpr,
    STORE_EVICT: tl.constexpr,
    VOLATILE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(
        src + offs, mask=mask, cache_modifier=LOAD_CACHE, eviction_policy=LOAD_EVICT, volatile=VOLATILE
    )
    tl.store(dst + offs, x * 2, mask=mask, cache_modifier=STORE_CACHE, eviction_policy=STORE_EVICT)


@triton.jit
def convert(src, dst, n, ROUNDING: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(src + offs, mask=mask)
    tl.store(dst + offs, x.to(dst.dtype.element_ty, fp_downcast_rounding=ROUNDING), mask=mask)


@triton.jit
def dot_tile(a, b, c, PRECISION: tl.constexpr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    rm = tl.arange(0, M)
    rn = tl.arange(0, N)
    rk = tl.arange(0, K)
    x = tl.load(a + rm[:, None] * K + rk[None, :])
    y = tl.load(b + rk[:, None] * N + rn[None, :])
    acc = tl.dot(x, y, input_precision=PRECISION, out_dtype=tl.float32)
    tl.store(c + rm[:, None] * N + rn[None, :], acc.to(c.dtype.element_ty))


@triton.jit
def matmul(
    a,
    b,
    c,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    group = pid // (GROUP_M * num_pid_n)
    first_m = group * GROUP_M
    group_size = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group_size)
    pid_n = (pid % (GROUP_M * num_pid_n)) // group_size
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a_ptrs = a + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_ptrs = b + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        x = tl.load(a_ptrs, mask=rk[None, :] < K - k * BLOCK_K, other=0.0)
        y = tl.load(b_ptrs, mask=rk[:, None] < K - k * BLOCK_K, other=0.0)
        acc = tl.dot(x, y, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    tl.store(c + rm[:, None] * stride_cm + rn[None, :] * stride_cn, acc.to(c.dtype.element_ty), mask=mask)


@triton.jit
def row_reduce(src, dst, n_cols, OP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(src + row * n_cols + cols, mask=mask, other=0).to(tl.float32)
    if OP == "sum":
        tl.store(dst + row, tl.sum(x, axis=0))
    elif OP == "max":
        tl.store(dst + row, tl.max(tl.where(mask, x, float("-inf")), axis=0))
    elif OP == "argmax":
        tl.store(dst + row, tl.argmax(tl.where(mask, x, float("-inf")), axis=0).to(tl.float32))
    elif OP == "cumsum":
        tl.store(dst + row * n_cols + cols, tl.cumsum(x, axis=0), mask=mask)
    else:
        shifted = tl.where(mask, x, float("-inf")) - tl.max(tl.where(mask, x, float("-inf")), axis=0)
        e = tl.exp(shifted)
        tl.store(dst + row * n_cols + cols, e / tl.sum(e, axis=0), mask=mask)


@triton.jit
def barrier_exchange(src, dst, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(src + offs)
    tl.debug_barrier()
    tl.store(dst + offs, tl.flip(x, 0))


# Code paths newer releases use more (3.8: tensor descriptors instead of block pointers, tl.range
# options, more dot element types, vectorised atomics on contiguous offsets), each a place where
# a release could start writing sm_70+ PTX for every target.
@triton.jit
def descriptor_copy(src, dst, M, N, BM: tl.constexpr, BN: tl.constexpr):
    # Before sm_90 a tensor descriptor lowers to ordinary masked loads and stores (no TMA).
    src_desc = tl.make_tensor_descriptor(src, shape=[M, N], strides=[N, 1], block_shape=[BM, BN])
    dst_desc = tl.make_tensor_descriptor(dst, shape=[M, N], strides=[N, 1], block_shape=[BM, BN])
    row = tl.program_id(0) * BM
    dst_desc.store([row, 0], src_desc.load([row, 0]) * 2)


@triton.jit
def pipelined_matmul(
    a,
    b,
    c,
    K,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    FLATTEN: tl.constexpr,
):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in tl.range(0, tl.cdiv(K, BK), num_stages=3, warp_specialize=WARP_SPECIALIZE, flatten=FLATTEN):
        x = tl.load(a + rm[:, None] * K + (k * BK + rk)[None, :])
        y = tl.load(b + (k * BK + rk)[:, None] * BN + rn[None, :])
        acc = tl.dot(x, y, acc)
    tl.store(c + rm[:, None] * BN + rn[None, :], acc.to(c.dtype.element_ty))


@triton.jit
def dot_native(a, b, c, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    rm = tl.arange(0, M)
    rn = tl.arange(0, N)
    rk = tl.arange(0, K)
    x = tl.load(a + rm[:, None] * K + rk[None, :])
    y = tl.load(b + rk[:, None] * N + rn[None, :])
    tl.store(c + rm[:, None] * N + rn[None, :], tl.dot(x, y, out_dtype=c.dtype.element_ty))


@triton.jit
def contiguous_atomic_add(dst, src, n, SEM: tl.constexpr, MASKED: tl.constexpr, BLOCK: tl.constexpr):
    # Contiguous offsets let the lowering pack neighbouring lanes (f16x2, v2/v4) into one atomic.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if MASKED:
        mask = offs < n
        tl.atomic_add(dst + offs, tl.load(src + offs, mask=mask), mask=mask, sem=SEM)
    else:
        tl.atomic_add(dst + offs, tl.load(src + offs), sem=SEM)


@triton.jit
def tile_atomic_max(dst, src, BLOCK: tl.constexpr):
    r = tl.arange(0, BLOCK)
    offs = r[:, None] * BLOCK + r[None, :]
    tl.atomic_max(dst + offs, tl.load(src + offs))


@triton.jit
def scalar_lock(lock, out, SEM: tl.constexpr, SCOPE: tl.constexpr):
    # A spin-lock's acquire/release: one CAS on a scalar.
    tl.store(out + tl.program_id(0), tl.atomic_cas(lock, 0, 1, sem=SEM, scope=SCOPE))


@triton.jit
def block_ops(src, index, dst, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(src + offs)
    if OP == "histogram":
        tl.store(dst + tl.arange(0, 64), tl.histogram(x, 64))
    elif OP == "gather":
        tl.store(dst + offs, tl.gather(x, tl.load(index + offs), 0))
    elif OP == "sort":
        tl.store(dst + offs, tl.sort(x))
    else:
        tl.store(dst + offs, tl.cumprod(x, 0, reverse=True))


# Shapes of Inductor's generated code (torch 2.9 triton templates): names, masks and hints as
# Inductor prints them.
@triton.jit
def triton_poi_fused_add_mul_0(in_ptr0, in_ptr1, out_ptr0, xnumel, XBLOCK: tl.constexpr):
    xoffset = tl.program_id(0) * XBLOCK
    xindex = xoffset + tl.arange(0, XBLOCK)[:]
    xmask = xindex < xnumel
    x0 = xindex % 128
    tmp0 = tl.load(in_ptr0 + (xindex), xmask).to(tl.float32)
    tmp1 = tl.load(in_ptr1 + (x0), xmask, eviction_policy="evict_last").to(tl.float32)
    tmp2 = tmp0 + tmp1
    tmp3 = tmp2 * tmp2
    tl.store(out_ptr0 + (xindex), tmp3, xmask)


@triton.jit
def triton_per_fused__softmax_0(in_ptr0, out_ptr2, xnumel, r0_numel, XBLOCK: tl.constexpr):
    R0_BLOCK: tl.constexpr = 128
    xoffset = tl.program_id(0) * XBLOCK
    xindex = xoffset + tl.arange(0, XBLOCK)[:, None]
    xmask = xindex < xnumel
    r0_index = tl.arange(0, R0_BLOCK)[None, :]
    r0_mask = r0_index < r0_numel
    x0 = xindex
    tmp0 = tl.load(in_ptr0 + (r0_index + 128 * x0), r0_mask & xmask, other=0.0).to(tl.float32)
    tmp1 = tl.broadcast_to(tmp0, [XBLOCK, R0_BLOCK])
    tmp3 = tl.where(r0_mask & xmask, tmp1, float("-inf"))
    tmp4 = tl.max(tmp3, 1)[:, None]
    tmp5 = tl.exp(tmp0 - tmp4)
    tmp6 = tl.broadcast_to(tmp5, [XBLOCK, R0_BLOCK])
    tmp8 = tl.where(r0_mask & xmask, tmp6, 0)
    tmp9 = tl.sum(tmp8, 1)[:, None]
    tmp10 = tmp5 / tmp9
    tl.store(out_ptr2 + (r0_index + 128 * x0), tmp10, r0_mask & xmask)


@triton.jit
def triton_red_fused_mean_var_0(
    in_ptr0, out_ptr0, out_ptr1, xnumel, r0_numel, XBLOCK: tl.constexpr, R0_BLOCK: tl.constexpr
):
    xoffset = tl.program_id(0) * XBLOCK
    xindex = xoffset + tl.arange(0, XBLOCK)[:, None]
    xmask = xindex < xnumel
    r0_base = tl.arange(0, R0_BLOCK)[None, :]
    x0 = xindex
    acc_sum = tl.zeros([XBLOCK, R0_BLOCK], tl.float32)
    acc_sq = tl.zeros([XBLOCK, R0_BLOCK], tl.float32)
    for r0_offset in range(0, r0_numel, R0_BLOCK):
        r0_index = r0_offset + r0_base
        r0_mask = r0_index < r0_numel
        tmp0 = tl.load(
            in_ptr0 + (r0_index + r0_numel * x0), r0_mask & xmask, eviction_policy="evict_first", other=0.0
        ).to(tl.float32)
        acc_sum = tl.where(r0_mask & xmask, acc_sum + tmp0, acc_sum)
        acc_sq = tl.where(r0_mask & xmask, acc_sq + tmp0 * tmp0, acc_sq)
    mean = tl.sum(acc_sum, 1)[:, None] / r0_numel
    var = tl.sum(acc_sq, 1)[:, None] / r0_numel - mean * mean
    tl.store(out_ptr0 + (x0), mean, xmask)
    tl.store(out_ptr1 + (x0), var, xmask)


@triton.jit
def triton_poi_fused_index_put_0(in_ptr0, in_ptr1, out_ptr0, xnumel, XBLOCK: tl.constexpr):
    # index_put_(accumulate=True) / scatter_add: Inductor's relaxed atomic_add.
    xoffset = tl.program_id(0) * XBLOCK
    xindex = xoffset + tl.arange(0, XBLOCK)[:]
    xmask = xindex < xnumel
    tmp0 = tl.load(in_ptr0 + (xindex), xmask)
    tmp1 = tl.load(in_ptr1 + (xindex), xmask)
    tl.atomic_add(out_ptr0 + (tl.broadcast_to(tmp0, [XBLOCK])), tmp1, xmask, sem="relaxed")


@triton.jit
def triton_poi_fused_gelu_tanh_0(in_ptr0, out_ptr0, xnumel, XBLOCK: tl.constexpr):
    xoffset = tl.program_id(0) * XBLOCK
    xindex = xoffset + tl.arange(0, XBLOCK)[:]
    xmask = xindex < xnumel
    tmp0 = tl.load(in_ptr0 + (xindex), xmask).to(tl.float32)
    tmp1 = 0.5 * tmp0 * (1.0 + libdevice.tanh(0.7978845608028654 * (tmp0 + 0.044715 * tmp0 * tmp0 * tmp0)))
    tmp2 = tmp1 + libdevice.erf(tmp0) * libdevice.rsqrt(tmp0 * tmp0 + 1.0)
    tl.store(out_ptr0 + (xindex), tmp2, xmask)


def _atomic_cases() -> Iterator[KernelCase]:
    for op, dtypes in ATOMIC_DTYPES.items():
        for dtype in dtypes:
            for order in MEMORY_ORDERS:
                for scope in SCOPES:
                    fixed_by = ATOMIC_ORDER
                    if dtype == "bf16" and op == "add":
                        fixed_by = None  # LLVM expands it to a CAS loop without the order
                    elif dtype in ("fp16", "bf16", "i16", "u16"):
                        fixed_by = ATOMIC_16BIT
                    name = f"atomic_{op}[{dtype},{order},{scope}]"
                    if op == "cas":
                        yield KernelCase(
                            name,
                            "atomics",
                            atomic_cas,
                            {
                                "target": f"*{dtype}",
                                "index": "*i32",
                                "compare": f"*{dtype}",
                                "values": f"*{dtype}",
                                "old_out": f"*{dtype}",
                                "n": "i32",
                                "SEM": "constexpr",
                                "SCOPE": "constexpr",
                                "BLOCK": "constexpr",
                            },
                            {"SEM": order, "SCOPE": scope, "BLOCK": 128},
                            fixed_by=fixed_by,
                        )
                    else:
                        yield KernelCase(
                            name,
                            "atomics",
                            atomic_rmw,
                            {
                                "target": f"*{dtype}",
                                "index": "*i32",
                                "values": f"*{dtype}",
                                "old_out": f"*{dtype}",
                                "n": "i32",
                                "OP": "constexpr",
                                "SEM": "constexpr",
                                "SCOPE": "constexpr",
                                "BLOCK": "constexpr",
                            },
                            {"OP": op, "SEM": order, "SCOPE": scope, "BLOCK": 128},
                            fixed_by=fixed_by,
                        )
    for dtype in ("fp16", "fp32", "i32"):
        yield KernelCase(
            f"atomic_add_scalar[{dtype},acq_rel]",
            "atomics",
            atomic_scalar_add,
            {"counter": f"*{dtype}", "old_out": f"*{dtype}", "SEM": "constexpr"},
            {"SEM": "acq_rel"},
            fixed_by=ATOMIC_16BIT if dtype == "fp16" else ATOMIC_ORDER,
        )


def _memory_cases() -> Iterator[KernelCase]:
    signature = {
        "src": "*fp32",
        "dst": "*fp32",
        "n": "i32",
        "LOAD_CACHE": "constexpr",
        "STORE_CACHE": "constexpr",
        "LOAD_EVICT": "constexpr",
        "STORE_EVICT": "constexpr",
        "VOLATILE": "constexpr",
        "BLOCK": "constexpr",
    }
    plain = {
        "LOAD_CACHE": "",
        "STORE_CACHE": "",
        "LOAD_EVICT": "",
        "STORE_EVICT": "",
        "VOLATILE": False,
        "BLOCK": 256,
    }
    for cache in (".ca", ".cg", ".cv"):
        yield KernelCase(
            f"load[cache={cache}]", "memory", load_store, signature, {**plain, "LOAD_CACHE": cache}
        )
    # Triton 3.8 added the streaming load (ld.global.cs, valid since sm_20).
    yield KernelCase(
        "load[cache=.cs]", "memory", load_store, signature, {**plain, "LOAD_CACHE": ".cs"}, min_triton=(3, 8)
    )
    for cache in (".wb", ".cg", ".cs", ".wt"):
        yield KernelCase(
            f"store[cache={cache}]", "memory", load_store, signature, {**plain, "STORE_CACHE": cache}
        )
    yield KernelCase("load[volatile]", "memory", load_store, signature, {**plain, "VOLATILE": True})
    for policy in ("evict_first", "evict_last"):
        yield KernelCase(
            f"load[{policy}]",
            "memory",
            load_store,
            signature,
            {**plain, "LOAD_EVICT": policy},
            fixed_by=EVICTION,
        )
        yield KernelCase(
            f"store[{policy}]",
            "memory",
            load_store,
            signature,
            {**plain, "STORE_EVICT": policy},
            fixed_by=EVICTION,
        )
    yield KernelCase(
        "load+store[.cg,evict_last]",
        "memory",
        load_store,
        signature,
        {
            **plain,
            "LOAD_CACHE": ".cg",
            "LOAD_EVICT": "evict_last",
            "STORE_CACHE": ".cs",
            "STORE_EVICT": "evict_first",
        },
        fixed_by=EVICTION,
    )


def _conversion_cases() -> Iterator[KernelCase]:
    # Rounding applies to narrowing float conversions only (Triton refuses it elsewhere).
    pairs = [
        ("fp32", "fp16", "rtne"),
        ("fp32", "fp16", "rtz"),
        ("fp16", "fp32", None),
        ("fp32", "bf16", "rtne"),
        ("fp32", "bf16", "rtz"),
        ("bf16", "fp32", None),
        ("fp16", "bf16", None),
        ("bf16", "fp16", None),
        ("fp64", "fp16", "rtne"),
        ("fp64", "fp32", "rtne"),
        ("fp32", "fp8e5", "rtne"),
        ("fp32", "fp8e5", "rtz"),
        ("bf16", "fp8e5", "rtne"),
        ("fp8e5", "fp32", None),
        ("fp16", "fp8e4b15", "rtne"),
        ("fp8e4b15", "fp16", None),
        ("i32", "fp16", None),
        ("fp16", "i32", None),
    ]
    for src, dst, rounding in pairs:
        known_failure = None
        if (src, dst, rounding) == ("fp32", "bf16", "rtz"):
            # Triton emulates only round-to-nearest bf16 conversion before sm_80; Pascal has no bf16.
            known_failure = "ptxas: cvt.rz.bf16.f32 requires sm_80"
        yield KernelCase(
            f"convert[{src}->{dst},{rounding or 'exact'}]",
            "conversions",
            convert,
            {"src": f"*{src}", "dst": f"*{dst}", "n": "i32", "ROUNDING": "constexpr", "BLOCK": "constexpr"},
            {"ROUNDING": rounding, "BLOCK": 256},
            known_failure=known_failure,
        )
    # Pascal has no fp8e4nv (sm_89); the refusal and its message must stay.
    yield KernelCase(
        "convert[fp32->fp8e4nv]",
        "conversions",
        convert,
        {"src": "*fp32", "dst": "*fp8e4nv", "n": "i32", "ROUNDING": "constexpr", "BLOCK": "constexpr"},
        {"ROUNDING": "rtne", "BLOCK": 256},
        refusal="type fp8e4nv not supported in this architecture",
    )


def _compute_cases() -> Iterator[KernelCase]:
    tile = {
        "a": "",
        "b": "",
        "c": "",
        "PRECISION": "constexpr",
        "M": "constexpr",
        "N": "constexpr",
        "K": "constexpr",
    }
    for dtype, precision, out in (
        ("fp16", "ieee", "fp32"),
        ("fp16", "ieee", "fp16"),
        ("fp32", "ieee", "fp32"),
        ("fp32", "tf32", "fp32"),
        ("bf16", "ieee", "fp32"),
    ):
        yield KernelCase(
            f"dot[{dtype},{precision}->{out}]",
            "dot",
            dot_tile,
            {**tile, "a": f"*{dtype}", "b": f"*{dtype}", "c": f"*{out}"},
            {"PRECISION": precision, "M": 32, "N": 32, "K": 32},
        )
    matmul_sig = {
        "a": "*fp16",
        "b": "*fp16",
        "c": "*fp16",
        **dict.fromkeys(
            ["M", "N", "K", "stride_am", "stride_ak", "stride_bk", "stride_bn", "stride_cm", "stride_cn"],
            "i32",
        ),
        **dict.fromkeys(["BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"], "constexpr"),
    }
    for dtype in ("fp16", "fp32"):
        for stages in (2, 3, 4):
            yield KernelCase(
                f"matmul[{dtype},stages={stages}]",
                "dot",
                matmul,
                {**matmul_sig, "a": f"*{dtype}", "b": f"*{dtype}", "c": f"*{dtype}"},
                {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8},
                options={"num_warps": 4, "num_stages": stages},
            )
    for op in ("sum", "max", "argmax", "cumsum", "softmax"):
        for dtype in ("fp32", "fp16"):
            yield KernelCase(
                f"reduce[{op},{dtype}]",
                "reductions",
                row_reduce,
                {
                    "src": f"*{dtype}",
                    "dst": "*fp32",
                    "n_cols": "i32",
                    "OP": "constexpr",
                    "BLOCK": "constexpr",
                },
                {"OP": op, "BLOCK": 1024},
            )
    yield KernelCase(
        "debug_barrier",
        "reductions",
        barrier_exchange,
        {"src": "*fp32", "dst": "*fp32", "BLOCK": "constexpr"},
        {"BLOCK": 256},
    )


def _constexprs(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, "constexpr")


def _newer_path_cases() -> Iterator[KernelCase]:
    yield from (
        KernelCase(
            f"descriptor_load_store[{dtype}]",
            "newer-paths",
            descriptor_copy,
            {"src": f"*{dtype}", "dst": f"*{dtype}", "M": "i32", "N": "i32", **_constexprs("BM", "BN")},
            {"BM": 32, "BN": 32},
        )
        for dtype in ("fp32", "fp16")
    )
    for warp_specialize in (False, True):
        for flatten in (False, True):
            yield KernelCase(
                f"tl.range[stages=3,warp_specialize={warp_specialize},flatten={flatten}]",
                "newer-paths",
                pipelined_matmul,
                {
                    "a": "*fp16",
                    "b": "*fp16",
                    "c": "*fp16",
                    "K": "i32",
                    **_constexprs("BM", "BN", "BK", "WARP_SPECIALIZE", "FLATTEN"),
                },
                {"BM": 64, "BN": 64, "BK": 32, "WARP_SPECIALIZE": warp_specialize, "FLATTEN": flatten},
                options={"num_warps": 4},
            )
    for operand, out in (("fp64", "fp64"), ("fp8e5", "fp32"), ("i8", "i32")):
        yield KernelCase(
            f"dot[{operand}->{out}]",
            "newer-paths",
            dot_native,
            {"a": f"*{operand}", "b": f"*{operand}", "c": f"*{out}", **_constexprs("M", "N", "K")},
            {"M": 32, "N": 32, "K": 32},
            # Triton lowers an int8 dot only to sm_80's mma; sm_75 fails the same way.
            known_failure=INT8_DOT if operand == "i8" else None,
        )
    for dtype in ("fp16", "bf16", "fp32", "fp64", "i32"):
        signature = {
            "dst": f"*{dtype}",
            "src": f"*{dtype}",
            "n": "i32",
            **_constexprs("SEM", "MASKED", "BLOCK"),
        }
        # bf16 add compiles stock: LLVM expands it to a CAS loop that carries no memory order.
        fixed_by = ATOMIC_16BIT if dtype == "fp16" else None if dtype == "bf16" else ATOMIC_ORDER
        for order in ("relaxed", "acq_rel"):
            for masked in (True, False):
                name = f"atomic_add_contiguous[{dtype},{order},{'masked' if masked else 'unmasked'}]"
                constexprs = {"SEM": order, "MASKED": masked, "BLOCK": 1024}
                yield KernelCase(
                    name, "newer-paths", contiguous_atomic_add, signature, constexprs, fixed_by=fixed_by
                )
    yield KernelCase(
        "atomic_max_tile[fp32]",
        "newer-paths",
        tile_atomic_max,
        {"dst": "*fp32", "src": "*fp32", "BLOCK": "constexpr"},
        {"BLOCK": 32},
        fixed_by=ATOMIC_ORDER,
    )
    for order in ("acquire", "release"):
        yield KernelCase(
            f"atomic_cas_scalar[i32,{order}]",
            "newer-paths",
            scalar_lock,
            {"lock": "*i32", "out": "*i32", "SEM": "constexpr", "SCOPE": "constexpr"},
            {"SEM": order, "SCOPE": "gpu"},
            fixed_by=ATOMIC_ORDER,
        )
    for op, dtype in (
        ("histogram", "i32"),
        ("gather", "fp32"),
        ("sort", "fp32"),
        ("sort", "fp16"),
        ("cumprod", "fp32"),
    ):
        yield KernelCase(
            f"{op}[{dtype}]",
            "newer-paths",
            block_ops,
            {
                "src": f"*{dtype}",
                "index": "*i32",
                "dst": f"*{dtype}",
                "OP": "constexpr",
                "BLOCK": "constexpr",
            },
            {"OP": op, "BLOCK": 256},
        )


def _inductor_cases() -> Iterator[KernelCase]:
    for dtype in ("fp32", "fp16"):
        yield KernelCase(
            f"inductor_pointwise_evict_last[{dtype}]",
            "inductor",
            triton_poi_fused_add_mul_0,
            {
                "in_ptr0": f"*{dtype}",
                "in_ptr1": f"*{dtype}",
                "out_ptr0": "*fp32",
                "xnumel": "i32",
                "XBLOCK": "constexpr",
            },
            {"XBLOCK": 1024},
            fixed_by=EVICTION,
        )
        yield KernelCase(
            f"inductor_persistent_softmax[{dtype}]",
            "inductor",
            triton_per_fused__softmax_0,
            {
                "in_ptr0": f"*{dtype}",
                "out_ptr2": "*fp32",
                "xnumel": "i32",
                "r0_numel": "i32",
                "XBLOCK": "constexpr",
            },
            {"XBLOCK": 8},
            options={"num_warps": 8},
        )
        yield KernelCase(
            f"inductor_looped_mean_var_evict_first[{dtype}]",
            "inductor",
            triton_red_fused_mean_var_0,
            {
                "in_ptr0": f"*{dtype}",
                "out_ptr0": "*fp32",
                "out_ptr1": "*fp32",
                "xnumel": "i32",
                "r0_numel": "i32",
                "XBLOCK": "constexpr",
                "R0_BLOCK": "constexpr",
            },
            {"XBLOCK": 4, "R0_BLOCK": 256},
            fixed_by=EVICTION,
        )
        yield KernelCase(
            f"inductor_index_put_atomic_add[{dtype}]",
            "inductor",
            triton_poi_fused_index_put_0,
            {
                "in_ptr0": "*i64",
                "in_ptr1": f"*{dtype}",
                "out_ptr0": f"*{dtype}",
                "xnumel": "i32",
                "XBLOCK": "constexpr",
            },
            {"XBLOCK": 512},
            fixed_by=ATOMIC_16BIT if dtype == "fp16" else ATOMIC_ORDER,
        )
        yield KernelCase(
            f"inductor_gelu_libdevice[{dtype}]",
            "inductor",
            triton_poi_fused_gelu_tanh_0,
            {"in_ptr0": f"*{dtype}", "out_ptr0": f"*{dtype}", "xnumel": "i32", "XBLOCK": "constexpr"},
            {"XBLOCK": 1024},
        )


def all_cases(triton_version: str) -> list[KernelCase]:
    """Every case of the suite that `triton_version` can express, in table order."""
    cases = [
        *_atomic_cases(),
        *_memory_cases(),
        *_conversion_cases(),
        *_compute_cases(),
        *_newer_path_cases(),
        *_inductor_cases(),
    ]
    return [case for case in cases if case.available_in(triton_version)]
