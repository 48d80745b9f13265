"""Numerics of Exllama's 4-bit GPTQ kernel in Pascal form: patch 0040's fp32 loop vs half2 vs float64.

On the GPU machine (numpy and cupy only), after `python scripts/gpu/make_gptq_ptx.py PTX_DIR` here:

    python scripts/gpu/check_gptq_fp32.py PTX_DIR

The driver JITs each compute_61/compute_60 PTX for the card it has, so patched-61.ptx runs the
fp32 loop that a P40 would run, patched-60.ptx the half2 loop a P100 keeps, and released-61.ptx
the half2 loop vLLM ships for both. Each multiplies random fp16 activations by random GPTQ int4
weights (group size 128, GPTQ v1 zero points, packed in Exllama's shuffled order) for 1 and 8 rows
and several layer shapes, and is compared with a float64 reference of the same dequantized
weights. Prints one line per case; exits 1 if the fp32 loop is off by more than FP32_LIMIT
(relative RMS error) or worse than the released half2 loop by more than 25%.

Without a GPU, `python scripts/gpu/check_gptq_fp32.py --cpu` checks the packing and the fp32
loop's arithmetic (the 2^23 mantissa trick, per 8-weight word, in numpy float32) against the same
float64 reference, so a layout mistake here is caught before the GPU run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

GROUP = 128
FP32_LIMIT = 2e-3  # the fp16 output and the fp16 atomicAdd over K-blocks bound every path near 1e-3
SHAPES = [(4096, 4096), (4096, 12288), (12288, 4096)]  # (K, N) of Qwen3-8B's o/gate_up/down
ROWS = (1, 8)


def pack_weights(q: np.ndarray) -> np.ndarray:
    """[K, N] nibbles -> [K/8, N] uint32 as gptq_shuffle leaves them: nibble 2i at bit 4i, 2i+1 at 16+4i."""
    k, n = q.shape
    blocks = q.reshape(k // 8, 8, n).astype(np.uint32)
    packed = np.zeros((k // 8, n), dtype=np.uint32)
    for j in range(8):
        packed |= blocks[:, j, :] << np.uint32(4 * (j // 2) + (16 if j % 2 else 0))
    return packed


def pack_zeros(z: np.ndarray) -> np.ndarray:
    """[G, N] zero points -> [G, N/8] uint32, column n at bit 4 * (n % 8) (GPTQ's qzeros)."""
    g, n = z.shape
    cols = z.reshape(g, n // 8, 8).astype(np.uint32)
    packed = np.zeros((g, n // 8), dtype=np.uint32)
    for j in range(8):
        packed |= cols[:, :, j] << np.uint32(4 * j)
    return packed


def float64_product(a: np.ndarray, q: np.ndarray, z: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """a @ W in float64, W = (nibble - (zero + 1)) * scale per group of GROUP rows (GPTQ v1 zeros)."""
    w = (q - (np.repeat(z, GROUP, axis=0) + 1)) * np.repeat(scales.astype(np.float64), GROUP, axis=0)
    return a.astype(np.float64) @ w


def case(rng: np.random.Generator, m: int, k: int, n: int, on_device: bool = True):
    groups = k // GROUP
    q = rng.integers(0, 16, size=(k, n))
    z = rng.integers(0, 15, size=(groups, n))  # v1 format: the kernel adds 1
    scales = rng.uniform(0.002, 0.02, size=(groups, n)).astype(np.float16)
    a = rng.standard_normal((m, k)).astype(np.float16)
    reference = float64_product(a, q, z, scales)
    host = [a, pack_weights(q), pack_zeros(z), scales]
    if not on_device:
        return host, reference, groups
    import cupy as cp

    return [cp.asarray(x) for x in host], reference, groups


def emulate_fp32_loop(a: np.ndarray, weight: np.ndarray, zeros: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Patch 0040's loop in numpy float32: dequant_4bit_8_gptq_f32 and dot_8_f32 per word, then the scale."""
    k8, n = weight.shape
    groups = zeros.shape[0]
    columns = np.arange(n)
    zero = ((zeros[:, columns // 8] >> (4 * (columns % 8)).astype(np.uint32)) & 0xF) + 1  # [G, N]
    zero_f = (np.uint32(0x4B000000) | zero.astype(np.uint32)).view(np.float32)
    out = np.zeros((a.shape[0], n), dtype=np.float32)
    a32 = a.astype(np.float32)
    for row in range(k8):
        group = row * 8 * groups // (k8 * 8)
        word = weight[row]
        partial = np.zeros((a.shape[0], n), dtype=np.float32)
        for j in range(8):
            shift = np.uint32(4 * (j // 2) + (16 if j % 2 else 0))
            w = (((word >> shift) & np.uint32(0xF)) | np.uint32(0x4B000000)).view(np.float32) - zero_f[group]
            partial += a32[:, row * 8 + j : row * 8 + j + 1] * w
        out += partial * scales[group].astype(np.float32)
    return out.astype(np.float16).astype(np.float64)


def cpu_check() -> int:
    rng = np.random.default_rng(61)
    failures = 0
    for m, k, n in ((1, 512, 256), (8, 1024, 512)):
        (a, weight, zeros, scales), reference, _ = case(rng, m, k, n, on_device=False)
        out = emulate_fp32_loop(a, weight, zeros, scales)
        error = float(np.sqrt(np.mean((out - reference) ** 2) / np.mean(reference**2)))
        ok = error < FP32_LIMIT
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} CPU emulation M={m} K={k} N={n}: relative RMS error {error:.2e}")
    return 1 if failures else 0


def run(function, m_count: int, device, m: int, k: int, n: int, groups: int) -> np.ndarray:
    import cupy as cp

    a, weight, zeros, scales = device
    c = cp.zeros((m, n), dtype=cp.float16)
    grid = ((n + 511) // 512, (m + m_count - 1) // m_count, (k + 127) // 128)
    args = (
        a,
        weight,
        zeros,
        scales,
        c,
        np.int32(m),
        np.int32(n),
        np.int32(k),
        np.int32(groups),
        np.bool_(False),
    )
    function(grid, (128,), args)
    cp.cuda.runtime.deviceSynchronize()
    return cp.asnumpy(c).astype(np.float64)


def jit_modules(ptx_dir: Path, files: dict[str, str], source: str) -> tuple[dict, dict]:
    """The manifest make_*_ptx.py wrote and, per label, the driver's module of that PTX file."""
    import cupy as cp  # the GPU machine's; --cpu runs without it

    manifest = json.loads((ptx_dir / "manifest.json").read_text())
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"device: {name}; vLLM {manifest['vllm']} {source}, PTX JIT-compiled by the driver")
    started = time.monotonic()
    modules = {label: cp.RawModule(path=str(ptx_dir / file)) for label, file in files.items()}
    print(f"JIT of {len(modules)} modules: {time.monotonic() - started:.1f} s")
    return manifest, modules


def main(ptx_dir: Path) -> int:
    paths = {
        "fp32 (patched, compute_61)": "patched-61.ptx",
        "half2 (patched, compute_60)": "patched-60.ptx",
        "half2 (released, compute_61)": "released-61.ptx",
    }
    started = time.monotonic()
    manifest, modules = jit_modules(ptx_dir, paths, "q_gemm.cu")
    rng = np.random.default_rng(61)
    failures = 0
    for k, n in SHAPES:
        for m in ROWS:
            device, reference, groups = case(rng, m, k, n)
            scale = float(np.sqrt(np.mean(reference**2)))
            errors = {}
            for label, file in paths.items():
                entry = manifest["kernels"][file][str(m)]
                out = run(modules[label].get_function(entry), m, device, m, k, n, groups)
                errors[label] = float(np.sqrt(np.mean((out - reference) ** 2))) / scale
            fp32, half2 = errors["fp32 (patched, compute_61)"], errors["half2 (released, compute_61)"]
            ok = fp32 < FP32_LIMIT and fp32 <= 1.25 * half2
            failures += not ok
            detail = ", ".join(f"{label}: {error:.2e}" for label, error in errors.items())
            print(f"{'ok  ' if ok else 'FAIL'} M={m} K={k} N={n}: relative RMS error vs float64 - {detail}")
    print(f"{'GPTQ_FP32_OK' if not failures else 'GPTQ_FP32_FAIL'} ({time.monotonic() - started:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(cpu_check() if sys.argv[1:] == ["--cpu"] else main(Path(sys.argv[1])))
