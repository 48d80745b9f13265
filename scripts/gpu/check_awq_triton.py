"""Numerics of vLLM's Triton AWQ kernels in Pascal form: what patch 0036 runs AWQ with on 6.x.

Patch 0036 (recipes/vllm/patches/0.34.0/) sends AWQ checkpoints on compute capability < 7.5
through vllm/model_executor/layers/quantization/awq_triton.py: awq_gemm_triton below 256
tokens (split-K 8, as AutoAWQLinearMethod calls it), awq_dequantize_triton and a torch matmul
from 256 tokens. This script takes that file from a vLLM tree (no vLLM install: a stand-in
`vllm.triton_utils` gives it the installed triton), compiles every launch for sm_61 with
scripts/gpu/pascal_form.py (GPUTarget("cuda", 61, 32); the driver JIT-compiles the sm_61 PTX for
the card at hand), and compares each result with a float32 torch reference of the same AWQ
weights: random nibbles and zero points, fp16 scales, group size 128, packed in AWQ's order
(nibble i of each int32 holds column AWQ_ORDER[i] of its eight). The device answers as a P40
(6.1), so awq_gemm_triton takes the path patch 0044 gives 6.x: dequantize, dot and accumulator
in fp32; each GEMM case runs again with the device answering 6.0 (a P100), as "awq_order_sm60".

Bound: relative RMS error (||out - ref|| / ||ref||) at most LIMIT = 2e-3 for every case (the
fp16 dequantized weights, fp16 split-K partials and fp16 output each round at 2^-11 relative);
the dequantize kernel's weights within 2^-10 of the reference weights, elementwise relative to
the largest. Twins: the same weights packed in plain sequential nibble order (GPTQ's), which the
AWQ kernels must read wrongly: its error must exceed TWIN_FLOOR = 0.1; and, at K = 12288 and 64
rows, the kernel's released fp16 path (the device answering 7.5 for that launch), whose fp16
accumulator must exceed LIMIT (5.5e-3 on an H100 before 0044). Each launch must be sm_61 PTX
and ask at most 48 KB of shared memory (a P40's limit).

On the lent GPU (torch + triton from the machine; nothing from this repo installed), with the
vLLM tree and triton overlay of scripts/gpu/prepare_gpu_carry.py's carry (the overlay puts our
triton series on the machine's triton 3.6.0, as run_gpu_numerics.sh does; the AWQ kernels have
neither the eviction hints nor the ordered atomics that the stock triton cannot run on sm_61,
so without it the check should run as well):

    PYTHONPATH=scripts/gpu:scripts python scripts/gpu/check_awq_triton.py \
        --vllm .gpu-carry/vllm-0.34.0-pascal.tgz --triton-overlay .gpu-carry/triton-overlay --out $OUT

Without a GPU, Triton's interpreter checks the packing and reference on small shapes:

    TRITON_INTERPRET=1 PYTHONPATH=scripts/gpu:scripts:PATCHED_TRITON python scripts/gpu/check_awq_triton.py \
        --vllm VLLM_TREE --cpu

Prints one JSON line per case and a summary; writes awq_triton.json under --out; exits 1 when a
bound or a twin fails. The times it prints are the lent GPU's, not a P40's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from carry_inputs import check_arguments, finish, triton_check
from pascal_form import p40_device_queries

from pascal_forge.pascal import P100

KERNEL_FILE = "vllm/model_executor/layers/quantization/awq_triton.py"
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of a packed int32 holds column AWQ_ORDER[i]
GPTQ_ORDER = tuple(range(8))
GROUP = 128
SPLIT_K = 8  # AutoAWQLinearMethod passes its pack factor as split_k_iters
LIMIT = 2e-3
DEQUANT_LIMIT = 2.0**-10
TWIN_FLOOR = 0.1
FP16_TWIN_K, FP16_TWIN_ROWS = 12288, 64
GPU_SHAPES = [(4096, 4096), (4096, 12288), (12288, 4096)]  # (K, N): Qwen3-8B's o/gate_up/down
GPU_ROWS = (1, 8, 64)
CPU_SHAPES = [(256, 256)]
CPU_ROWS = (1, 4)


def load_awq_triton(tree: Path) -> types.ModuleType:
    """awq_triton.py from a vLLM source tree, with the installed triton as its vllm.triton_utils."""
    import triton
    import triton.language as tl

    package = types.ModuleType("vllm")
    package.__path__ = []
    utils = types.ModuleType("vllm.triton_utils")
    utils.triton, utils.tl = triton, tl
    sys.modules.setdefault("vllm", package)
    sys.modules.setdefault("vllm.triton_utils", utils)
    spec = importlib.util.spec_from_file_location("awq_triton_under_test", tree / KERNEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pack_columns(values: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """[R, C] nibbles -> [R, C/8] int32, nibble i of each word holding column order[i] of its eight."""
    rows, cols = values.shape
    grouped = values.reshape(rows, cols // 8, 8).to(torch.int64)
    packed = torch.zeros(rows, cols // 8, dtype=torch.int64, device=values.device)
    for nibble, column in enumerate(order):
        packed |= grouped[:, :, column] << (4 * nibble)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def relative_rms(out: torch.Tensor, reference: torch.Tensor) -> float:
    diff = out.float() - reference
    return float(diff.norm() / reference.norm())


def run_cases(awq: types.ModuleType, device: str) -> list[dict]:
    shapes, rows_list = (GPU_SHAPES, GPU_ROWS) if device == "cuda" else (CPU_SHAPES, CPU_ROWS)
    generator = torch.Generator(device="cpu").manual_seed(0)
    cases = []
    for k, n in shapes:
        first_of_shape = len(cases)
        q = torch.randint(0, 16, (k, n), generator=generator)
        zeros = torch.randint(0, 16, (k // GROUP, n), generator=generator)
        scales = (torch.rand(k // GROUP, n, generator=generator) * 0.02 + 0.005).half()
        weights = (q - zeros.repeat_interleave(GROUP, 0)).float() * scales.float().repeat_interleave(GROUP, 0)
        weights = weights.to(device)
        scales_d = scales.to(device)
        packed = {
            name: (pack_columns(q, order).to(device), pack_columns(zeros, order).to(device))
            for name, order in (("awq_order", AWQ_ORDER), ("twin_gptq_order", GPTQ_ORDER))
        }
        for name, (qweight, qzeros) in packed.items():
            dequant = awq.awq_dequantize_triton(qweight, scales_d, qzeros)
            error = float((dequant.float() - weights).abs().max() / weights.abs().max())
            twin = name.startswith("twin")
            passed = error > TWIN_FLOOR if twin else error <= DEQUANT_LIMIT
            cases.append({"kernel": "awq_dequantize_triton", "packing": name, "K": k, "N": n,
                          "max_relative_error": error, "passed": passed})  # fmt: skip
        for rows in rows_list:
            a = torch.randn(rows, k, generator=generator).half().to(device)
            reference = a.float() @ weights
            for name, (qweight, qzeros) in packed.items():
                out = awq.awq_gemm_triton(a, qweight, scales_d, qzeros, SPLIT_K)
                error = relative_rms(out, reference)
                twin = name.startswith("twin")
                passed = error > TWIN_FLOOR if twin else error <= LIMIT
                case = {"kernel": "awq_gemm_triton", "packing": name, "M": rows, "K": k, "N": n,
                        "relative_rms_error": error, "passed": passed}  # fmt: skip
                if device == "cuda" and not twin:
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(20):
                        awq.awq_gemm_triton(a, qweight, scales_d, qzeros, SPLIT_K)
                    torch.cuda.synchronize()
                    case["microseconds_not_a_p40"] = (time.perf_counter() - start) / 20 * 1e6
                cases.append(case)
            if device == "cuda":
                qweight, qzeros = packed["awq_order"]
                with p40_device_queries(capability=P100.major_minor):
                    out = awq.awq_gemm_triton(a, qweight, scales_d, qzeros, SPLIT_K)
                error = relative_rms(out, reference)
                cases.append({"kernel": "awq_gemm_triton", "packing": "awq_order_sm60", "M": rows, "K": k,
                              "N": n, "relative_rms_error": error, "passed": error <= LIMIT})  # fmt: skip
        if device == "cuda" and k == FP16_TWIN_K:
            qweight, qzeros = packed["awq_order"]
            a = torch.randn(FP16_TWIN_ROWS, k, generator=generator).half().to(device)
            with p40_device_queries(capability=(7, 5)):
                out = awq.awq_gemm_triton(a, qweight, scales_d, qzeros, SPLIT_K)
            error = relative_rms(out, a.float() @ weights)
            cases.append({"kernel": "awq_gemm_triton", "packing": "twin_fp16_math", "M": FP16_TWIN_ROWS,
                          "K": k, "N": n, "relative_rms_error": error, "passed": error > LIMIT})  # fmt: skip
        # The prefill path (256+ tokens): Triton dequantize, then torch's matmul.
        a = torch.randn(256, k, generator=generator).half().to(device)
        qweight, qzeros = packed["awq_order"]
        out = a @ awq.awq_dequantize_triton(qweight, scales_d, qzeros)
        error = relative_rms(out, a.float() @ weights)
        passed = error <= LIMIT
        cases.append({"kernel": "awq_dequantize_triton+matmul", "packing": "awq_order", "M": 256, "K": k,
                      "N": n, "relative_rms_error": error, "passed": passed})  # fmt: skip
        for case in cases[first_of_shape:]:
            print(json.dumps(case), flush=True)
    return cases


def main() -> int:
    args, report = check_arguments(__doc__, "awq_triton.json")
    device = report["device"]
    report |= {"limit": LIMIT, "twin_floor": TWIN_FLOOR}
    with triton_check(args, report) as (_, tree):
        cases = run_cases(load_awq_triton(tree), device)
    return finish(report, cases, args.out, "awq_triton.json")


if __name__ == "__main__":
    sys.exit(main())
