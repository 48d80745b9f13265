"""Numerics of the cost model's proposed W4A16 GEMV (benchmarks/kernels/w4a16_gemv_fp32.py).

Two ways to run it, both printing one JSON line: the largest error relative to a float64
reference for GPTQ's nibble order (low nibble first), and, as the twin, for the reversed
order, which a correct kernel must not match.

- CPU, in Triton's interpreter (tests/test_costmodel.py does this):
    TRITON_INTERPRET=1 PYTHONPATH=PATCHED_TRITON python scripts/gpu/check_w4a16_gemv.py KERNEL cpu
- on the lent GPU in Pascal form (sm_61 PTX, JIT-compiled by the driver; scripts/gpu/pascal_form.py),
  with the patched triton overlaid as run_gpu_numerics.sh does:
    PYTHONPATH=scripts/gpu:scripts:PATCHED_TRITON python scripts/gpu/check_w4a16_gemv.py \
        benchmarks/kernels/w4a16_gemv_fp32.py cuda
  The GPU line also gives the kernel's time on that GPU, which is not a P40's.
"""

import importlib.util
import json
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch

N, K, GROUP = 4096, 4096, 128
BLOCKS = {"BLOCK_N": 512, "BLOCK_K": 32, "K_PER_PROGRAM": 512}


def main(kernel_file: str, device: str) -> None:
    spec = importlib.util.spec_from_file_location("gemv", kernel_file)
    gemv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gemv)
    n, k = (N, K) if device == "cuda" else (1024, 1024)
    rng = np.random.default_rng(0)
    q = rng.integers(0, 16, size=(k, n), dtype=np.int64)
    packed = np.zeros((k // 8, n), dtype=np.int64)
    for nibble in range(8):
        packed |= q[nibble::8, :] << (4 * nibble)
    packed = packed.astype(np.uint32).view(np.int32)
    scales = (rng.random((k // GROUP, n)) * 0.02 + 0.005).astype(np.float16)
    a = rng.standard_normal(k).astype(np.float16)
    tensors = [torch.from_numpy(x).to(device) for x in (a, packed, scales)]
    c = torch.zeros(n, dtype=torch.float32, device=device)
    grid = (n // BLOCKS["BLOCK_N"], k // BLOCKS["K_PER_PROGRAM"])
    report: dict[str, object] = {"device": device}
    form = nullcontext()
    if device == "cuda":
        from pascal_form import pascal_form  # scripts/gpu: every launch compiles for sm_61

        form = pascal_form()
        report["gpu"] = torch.cuda.get_device_name()
    with form:
        gemv.w4a16_gemv_fp32_kernel[grid](*tensors, c, n, k, GROUP, **BLOCKS)
        if device == "cuda":
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(100):
                gemv.w4a16_gemv_fp32_kernel[grid](*tensors, torch.zeros_like(c), n, k, GROUP, **BLOCKS)
            torch.cuda.synchronize()
            report["microseconds_per_launch_not_a_p40"] = (time.perf_counter() - start) * 1e4
    result = c.cpu().numpy()

    def error(weights: np.ndarray) -> float:
        w = (weights - 8) * np.repeat(scales.astype(np.float64), GROUP, axis=0)
        reference = a.astype(np.float64) @ w
        return float(np.abs(result - reference).max() / np.abs(reference).max())

    report["gptq_order"] = error(q)
    report["reversed_order"] = error(q.reshape(k // 8, 8, n)[:, ::-1, :].reshape(k, n))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cpu")
