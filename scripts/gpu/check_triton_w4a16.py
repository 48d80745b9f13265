"""Numerics of vLLM's Triton W4A16 kernel in Pascal form: compressed-tensors 4-bit with zero points on 6.x.

With patch 0038 (recipes/vllm/patches/0.34.0/) a compressed-tensors W4A16 checkpoint with zero
points (asymmetric) builds on compute capability 6.x through TritonW4A16LinearKernel (Exllama
takes the symmetric ones: its fp32 4-bit loop is scripts/gpu/check_gptq_fp32.py's). This check
takes triton_w4a16_gemm_kernel and its launcher _triton_w4a16_gemm_impl from the vLLM tree's
vllm/model_executor/kernels/linear/mixed_precision/triton_w4a16.py (only those two functions;
the launcher is told the GPU is not ROCm, so it picks its CUDA tiles), compiles every launch for
sm_61 with scripts/gpu/pascal_form.py and compares each product with a float32 torch reference:
random nibbles and zero points, fp16 scales, the kernel's layout ([K, N/8] int32 with column j of
each eight at nibble j, zeros [K/G, N/8] alike, scales [K/G, N]), group sizes 128 and 32.

Bound: relative RMS error at most LIMIT = 2e-3 (the dequantized weight and the output round to
fp16). Twin: the same weights with the nibbles packed in AWQ's order, which this kernel must
read wrongly: its error must exceed TWIN_FLOOR = 0.1. Launches: sm_61 PTX within 48 KB.

On the lent GPU, from the repository root, with the carry of scripts/gpu/prepare_gpu_carry.py
(its vLLM tree, and its overlay of our triton series on the machine's triton):

    PYTHONPATH=scripts/gpu:scripts python scripts/gpu/check_triton_w4a16.py \
        --vllm .gpu-carry/vllm-0.34.0-pascal.tgz --triton-overlay .gpu-carry/triton-overlay --out $OUT

Without a GPU (Triton's interpreter, small shapes):

    TRITON_INTERPRET=1 PYTHONPATH=scripts/gpu:scripts:PATCHED_TRITON \
        python scripts/gpu/check_triton_w4a16.py --vllm VLLM_TREE_OR_TGZ --cpu

Prints one JSON line per case and a summary; writes triton_w4a16.json under --out; exits 1 when a
bound or the twin fails. Times are the lent GPU's, not a P40's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from carry_inputs import check_arguments, finish, module_of_functions, triton_check
from check_awq_triton import AWQ_ORDER, GPTQ_ORDER, pack_columns, relative_rms

KERNEL_FILE = "vllm/model_executor/kernels/linear/mixed_precision/triton_w4a16.py"
LIMIT = 2e-3
TWIN_FLOOR = 0.1
GPU_SHAPES = [(4096, 4096, 128), (4096, 12288, 128), (12288, 4096, 32)]  # (K, N, group)
GPU_ROWS = (1, 8, 64, 256)
CPU_SHAPES = [(256, 256, 128), (256, 128, 32)]
CPU_ROWS = (1, 40)
# What the two functions need from the file's imports: the launcher asks only whether it runs on ROCm.
HEADER = """import torch
import triton
import triton.language as tl


class _CudaPlatform:
    @staticmethod
    def is_rocm() -> bool:
        return False


current_platform = _CudaPlatform()"""


def run_cases(w4a16: object, device: str) -> list[dict]:
    shapes, rows_list = (GPU_SHAPES, GPU_ROWS) if device == "cuda" else (CPU_SHAPES, CPU_ROWS)
    generator = torch.Generator().manual_seed(0)
    cases = []
    for k, n, group in shapes:
        q = torch.randint(0, 16, (k, n), generator=generator)
        zeros = torch.randint(0, 16, (k // group, n), generator=generator)
        scales = (torch.rand(k // group, n, generator=generator) * 0.02 + 0.005).half()
        weights = (q - zeros.repeat_interleave(group, 0)).float() * scales.float().repeat_interleave(group, 0)
        weights, scales_d = weights.to(device), scales.to(device)
        for rows in rows_list:
            a = torch.randn(rows, k, generator=generator).half().to(device)
            reference = a.float() @ weights
            for name, order in (("sequential", GPTQ_ORDER), ("twin_awq_order", AWQ_ORDER)):
                qweight, qzeros = pack_columns(q, order).to(device), pack_columns(zeros, order).to(device)
                start = time.perf_counter()
                out = w4a16._triton_w4a16_gemm_impl(a, qweight, scales_d, qzeros, group)
                if device == "cuda":
                    torch.cuda.synchronize()
                error = relative_rms(out, reference)
                twin = name.startswith("twin")
                passed = error > TWIN_FLOOR if twin else error <= LIMIT
                case = {"packing": name, "M": rows, "K": k, "N": n, "group": group,
                        "relative_rms_error": error, "passed": passed,
                        "first_call_seconds": time.perf_counter() - start}  # fmt: skip
                cases.append(case)
                print(json.dumps(case), flush=True)
    return cases


def main() -> int:
    args, report = check_arguments(__doc__, "triton_w4a16.json")
    device = report["device"]
    report |= {"limit": LIMIT, "twin_floor": TWIN_FLOOR}
    with triton_check(args, report) as (scratch, tree):
        names = ["triton_w4a16_gemm_kernel", "_triton_w4a16_gemm_impl"]
        cases = run_cases(module_of_functions(tree / KERNEL_FILE, names, HEADER, scratch), device)
    return finish(report, cases, args.out, "triton_w4a16.json")


if __name__ == "__main__":
    sys.exit(main())
