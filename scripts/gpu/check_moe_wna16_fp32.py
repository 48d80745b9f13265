"""Numerics of vLLM's moe_wna16 kernel in Pascal form: patch 0042's fp32 loop vs half2 vs float64.

On the GPU machine (numpy and cupy only), after `python scripts/gpu/make_moe_wna16_ptx.py
.gpu-carry/moe-wna16-ptx` here:

    python scripts/gpu/check_moe_wna16_fp32.py .gpu-carry/moe-wna16-ptx

that is, through the device tool: command `python scripts/gpu/check_moe_wna16_fp32.py
.gpu-carry/moe-wna16-ptx 2>&1 | tee $OUT/moe-wna16-fp32.txt`, carry `[".gpu-carry/moe-wna16-ptx"]`
(about 400 KB of PTX; under a minute of device time). The last line says MOE_WNA16_FP32_OK.

The driver JITs each compute_61/compute_60 PTX for the card it has, so patched-61.ptx runs the
fp32 loop a P40 would run, patched-60.ptx the half2 loop a P100 keeps, and before-61.ptx the half2
loop vLLM ships (with patch 0003's half add below sm_70). Each case routes random fp16 tokens to
random experts (top-k, moe_align_block_size's padded order), multiplies them by random int4 (or
int8) expert weights with fp16 group scales (group size 128), with or without zero points and
routing weights, at Qwen3-30B-A3B's expert shapes (w13: K 2048, N 1536; w2: K 768, N 2048), and
compares with a float64 reference of the same dequantized weights. The launch is vLLM's: block
BLOCK_SIZE_N threads, grid (blocks of BLOCK_SIZE_M slots, N / BLOCK_SIZE_N, K / BLOCK_SIZE_K),
BLOCK_SIZE_M * BLOCK_SIZE_K * 2 bytes of dynamic shared memory, doubled where the function's
PTX version is 61, as patch 0042's launcher does. The check also asks the driver for each
function's PTX version (CU_FUNC_ATTRIBUTE_PTX_VERSION, what the launcher's cudaFuncGetAttributes
reads) and fails unless compute_61 reads 61 and compute_60 reads 60.

Prints one line per case; exits 1 if the fp32 loop is off by more than FP32_LIMIT (relative RMS
error) or worse than vLLM's half2 loop by more than 25%. About 10 s on an H100.

Without a GPU, `python scripts/gpu/check_moe_wna16_fp32.py --cpu` runs the fp32 loop as the
kernel reads memory (the shared-memory input order, the nibble shifts, the zero-point nibble per
column parity, the per-K-block half add) in numpy float32 against the same reference, so a layout
mistake here is caught before the GPU run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from check_gptq_fp32 import jit_modules

GROUP = 128
FP32_LIMIT = 2e-3  # the fp16 output and its fp16 add over K-blocks bound every path near 1e-3
PTX_VERSION_ATTRIBUTE = 5  # CU_FUNC_ATTRIBUTE_PTX_VERSION


@dataclass(frozen=True)
class Case:
    """One launch: `tokens` tokens, each routed to `top_k` of `experts` experts."""

    tokens: int
    experts: int
    top_k: int
    n: int
    k: int
    bit: int = 4
    groups: int = 1  # GROUPS = BLOCK_SIZE_K / GROUP
    block_m: int = 1  # vLLM: min(16, next_power_of_2(tokens))
    block_n: int = 128
    has_zp: bool = False
    routed: bool = False  # mul_topk_weight (the second expert GEMM)

    @property
    def block_k(self) -> int:
        return GROUP * self.groups

    @property
    def entry(self) -> str:
        return f"{self.bit}-{self.groups}"

    def label(self) -> str:
        extra = "".join((", zero points" if self.has_zp else "", ", routed" if self.routed else ""))
        return (
            f"{self.bit}-bit M={self.tokens} top{self.top_k}/{self.experts} K={self.k} N={self.n} "
            f"BLOCK_M={self.block_m} BLOCK_K={self.block_k}{extra}"
        )


CASES = [
    Case(1, 16, 8, 1536, 2048, groups=4),  # w13 at decode: BLOCK_SIZE_K 512
    Case(1, 16, 8, 2048, 768, routed=True),  # w2 at decode
    Case(4, 16, 8, 1536, 2048, groups=2, block_m=4, has_zp=True),
    Case(16, 16, 8, 2048, 768, block_m=16, routed=True),  # 16 streams: several tokens a block
    Case(4, 16, 4, 1024, 1024, bit=8, block_m=4, has_zp=True),  # 8-bit: not on vLLM's CUDA path
]


def pack_weights(q: np.ndarray, bit: int) -> np.ndarray:
    """[E, N, K] values -> [E, N, K * bit / 32] uint32: element k at bit * (k % (32 / bit))."""
    per_word = 32 // bit
    e, n, k = q.shape
    parts = q.reshape(e, n, k // per_word, per_word).astype(np.uint32)
    shifts = (np.arange(per_word, dtype=np.uint32) * np.uint32(bit))[None, None, None, :]
    return np.bitwise_or.reduce(parts << shifts, axis=3).astype(np.uint32)


def pack_zeros(z: np.ndarray, bit: int) -> np.ndarray:
    """[E, N, G] zero points -> [E, N * bit / 8, G] bytes; 4-bit: even column in the low nibble."""
    if bit == 8:
        return z.astype(np.uint8)
    return (z[:, 0::2, :] | (z[:, 1::2, :] << 4)).astype(np.uint8)


def align(topk_ids: np.ndarray, experts: int, block_m: int) -> tuple[np.ndarray, np.ndarray]:
    """moe_align_block_size: slot ids sorted by expert, each expert's run padded to block_m with
    the out-of-range id tokens * top_k; and the expert of each block."""
    flat = topk_ids.reshape(-1)
    sorted_ids, expert_ids = [], []
    for e in range(experts):
        slots = np.nonzero(flat == e)[0]
        if not slots.size:
            continue
        padded = np.concatenate([slots, np.full((-slots.size) % block_m, flat.size)])
        sorted_ids.append(padded)
        expert_ids += [e] * (padded.size // block_m)
    return np.concatenate(sorted_ids).astype(np.int32), np.array(expert_ids, dtype=np.int32)


@dataclass
class Data:
    case: Case
    a: np.ndarray  # [M, K] fp16
    q: np.ndarray  # [E, N, K] ints
    z: np.ndarray  # [E, N, G] ints
    scales: np.ndarray  # [E, N, G] fp16
    topk_ids: np.ndarray  # [M, top_k]
    topk_weights: np.ndarray  # [M * top_k] fp32

    def zero(self) -> np.ndarray:
        if self.case.has_zp:
            return self.z
        return np.full_like(self.z, 1 << (self.case.bit - 1))  # 8 or 128: symmetric

    def reference(self) -> np.ndarray:
        """[M * top_k, N]: each slot's token times its expert's dequantized weights, in float64."""
        c = self.case
        w = (self.q - np.repeat(self.zero(), GROUP, axis=2)) * np.repeat(
            self.scales.astype(np.float64), GROUP, axis=2
        )
        out = np.zeros((c.tokens * c.top_k, c.n))
        for slot, expert in enumerate(self.topk_ids.reshape(-1)):
            out[slot] = w[expert] @ self.a[slot // c.top_k].astype(np.float64)
            if c.routed:
                out[slot] *= self.topk_weights[slot]
        return out


def make_data(rng: np.random.Generator, c: Case) -> Data:
    groups = c.k // GROUP
    top = 1 << c.bit
    return Data(
        c,
        rng.standard_normal((c.tokens, c.k)).astype(np.float16),
        rng.integers(0, top, size=(c.experts, c.n, c.k)),
        rng.integers(0, top, size=(c.experts, c.n, groups)),
        rng.uniform(0.002, 0.02, size=(c.experts, c.n, groups)).astype(np.float16),
        np.stack([rng.choice(c.experts, c.top_k, replace=False) for _ in range(c.tokens)]),
        rng.uniform(0.05, 0.5, size=c.tokens * c.top_k).astype(np.float32),
    )


def relative_error(out: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean((out - reference) ** 2) / np.mean(reference**2)))


# --------------------------------------------------------------------------- CPU emulation


def emulate_fp32_loop(d: Data, weight: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """Patch 0042's loop in numpy float32, reading `weight` and `zeros` as the kernel does."""
    c = d.case
    per_word, pairs = 32 // c.bit, 16 // c.bit
    # Shared memory position p of each word holds element origin[p] ([0,4,1,5,2,6,3,7] / [0,2,1,3]);
    # position 2i is dequantized from bits bit * i, 2i + 1 from bits 16 + bit * i.
    threads = np.arange(per_word)
    origin = threads // per_word * per_word + (threads % 2) * (per_word // 2) + (threads % per_word) // 2
    shifts = np.array([bit for i in range(pairs) for bit in (c.bit * i, 16 + c.bit * i)], dtype=np.uint32)
    mask = np.uint32((1 << c.bit) - 1)
    columns = np.arange(c.n)
    out = np.zeros((c.tokens * c.top_k, c.n), dtype=np.float16)
    for slot, expert in enumerate(d.topk_ids.reshape(-1)):
        token = d.a[slot // c.top_k].astype(np.float32)
        for k0 in range(0, c.k, c.block_k):
            res = np.zeros(c.n, dtype=np.float32)
            for word in range(c.block_k // per_word):
                k = k0 + word * per_word
                group = k // GROUP
                if c.has_zp:
                    byte = zeros[expert, columns // (8 // c.bit), group].astype(np.uint32)
                    zero = (byte >> (4 * (columns % 2))) & 0xF if c.bit == 4 else byte
                else:
                    zero = np.full(c.n, 1 << (c.bit - 1), dtype=np.uint32)
                zero_f = (np.uint32(0x4B000000) | zero.astype(np.uint32)).view(np.float32)
                q = weight[expert, :, k // per_word]
                x = token[k + origin]
                total = np.zeros(c.n, dtype=np.float32)
                for p in range(per_word):
                    w = (((q >> shifts[p]) & mask) | np.uint32(0x4B000000)).view(np.float32) - zero_f
                    total = total + w * x[p]
                res = res + total * d.scales[expert, :, group].astype(np.float32)
            if c.routed:
                res = res * d.topk_weights[slot]
            out[slot] = out[slot] + res.astype(np.float16)  # the half add per K-block
    return out.astype(np.float64)


def cpu_check() -> int:
    rng = np.random.default_rng(61)
    failures = 0
    for c in (
        Case(1, 4, 2, 256, 512, groups=2),
        Case(2, 4, 2, 256, 256, has_zp=True, routed=True),
        Case(2, 4, 2, 256, 256, bit=8, has_zp=True),
    ):
        d = make_data(rng, c)
        out = emulate_fp32_loop(d, pack_weights(d.q, c.bit), pack_zeros(d.z, c.bit))
        error = relative_error(out, d.reference())
        ok = error < FP32_LIMIT
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} CPU emulation {c.label()}: relative RMS error {error:.2e}")
    return 1 if failures else 0


# --------------------------------------------------------------------------- GPU


def run(function, ptx_version: int, d: Data) -> np.ndarray:
    import cupy as cp

    c = d.case
    sorted_ids, expert_ids = align(d.topk_ids, c.experts, c.block_m)
    output = cp.zeros((c.tokens * c.top_k, c.n), dtype=cp.float16)
    shared = c.block_m * c.block_k * 2 * (2 if ptx_version == 61 else 1)
    args = (
        cp.asarray(d.a),
        output,
        cp.asarray(pack_weights(d.q, c.bit)),
        cp.asarray(d.scales),
        cp.asarray(pack_zeros(d.z, c.bit)),
        cp.asarray(d.topk_weights),
        cp.asarray(sorted_ids),
        cp.asarray(expert_ids),
        cp.asarray(np.array([sorted_ids.size], dtype=np.int32)),
        np.uint16(c.experts),
        np.uint16(GROUP),
        np.uint16(c.top_k),
        np.uint32(c.tokens),
        np.uint32(c.n),
        np.uint32(c.k),
        np.uint16(c.block_m),
        np.uint16(c.block_n),
        np.uint16(c.block_k),
        np.bool_(c.has_zp),
        np.bool_(c.routed),
    )
    grid = (expert_ids.size, -(-c.n // c.block_n), c.k // c.block_k)
    function(grid, (c.block_n,), args, shared_mem=shared)
    cp.cuda.runtime.deviceSynchronize()
    return cp.asnumpy(output).astype(np.float64)


def main(ptx_dir: Path) -> int:
    import cupy as cp  # the GPU machine's; --cpu runs without it

    paths = {
        "fp32 (patched, compute_61)": ("patched-61.ptx", 61),
        "half2 (patched, compute_60)": ("patched-60.ptx", 60),
        "half2 (vLLM, compute_61)": ("before-61.ptx", 61),
    }
    started = time.monotonic()
    files = {label: file for label, (file, _) in paths.items()}
    manifest, modules = jit_modules(ptx_dir, files, "csrc/moe/moe_wna16.cu")
    failures = 0
    versions = {}
    for label, (file, capability) in paths.items():
        function = modules[label].get_function(manifest["kernels"][file]["4-1"])
        version = cp.cuda.driver.funcGetAttribute(PTX_VERSION_ATTRIBUTE, function.kernel.ptr)
        versions[label] = version
        ok = version == capability
        failures += not ok
        verdict = "ok  " if ok else "FAIL"
        print(
            f"{verdict} {file}: the driver reports PTX version {version} (the launcher expects {capability})"
        )
    rng = np.random.default_rng(61)
    for c in CASES:
        d = make_data(rng, c)
        reference = d.reference()
        errors = {}
        for label, (file, _) in paths.items():
            function = modules[label].get_function(manifest["kernels"][file][c.entry])
            errors[label] = relative_error(run(function, versions[label], d), reference)
        fp32, half2 = errors["fp32 (patched, compute_61)"], errors["half2 (vLLM, compute_61)"]
        ok = fp32 < FP32_LIMIT and fp32 <= 1.25 * half2
        failures += not ok
        detail = ", ".join(f"{label}: {error:.2e}" for label, error in errors.items())
        print(f"{'ok  ' if ok else 'FAIL'} {c.label()}: relative RMS error vs float64 - {detail}")
    verdict = "MOE_WNA16_FP32_OK" if not failures else "MOE_WNA16_FP32_FAIL"
    print(f"{verdict} ({time.monotonic() - started:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(cpu_check() if sys.argv[1:] == ["--cpu"] else main(Path(sys.argv[1])))
