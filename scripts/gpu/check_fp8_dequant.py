"""Numerics of patch 0039's FP8 dequantization at load: what an FP8 checkpoint becomes on 6.x.

Patch 0039 (recipes/vllm/patches/0.34.0/) serves FP8 checkpoints below compute capability 7.5
by dequantizing their linear weights at load with dequantize_fp8_weight (fp8.py), then
multiplying as an unquantized layer does. This check takes that one function from the vLLM
tree (no vLLM install) and runs it on the GPU's tensors (torch's own fp8 -> float32 copy; no
Triton and no FP8 arithmetic, so there is no Pascal form to give it: a P40 runs the same
elementwise code) for the checkpoint layouts peers run:
- per-tensor scales of a fused layer: one float32 per logical shard (qkv: 4096/1024/1024 rows);
- block scales (weight_scale_inv) per 128 x 128, float32 and e8m0, with N and K not multiples
  of 128 (the last blocks are partial).
The reference is written independently, in float64: element (n, k) times the scale of its shard
or of block (n // 128, k // 128). Bound: each element within 2^-11 of the reference relative to
the largest (the result is rounded to fp16 once). Twins, which the bound must catch: the block
scales applied as their inverse (the name weight_scale_inv read literally), and the shard
scales in reversed order.

On the lent GPU, from the repository root (seconds):

    PYTHONPATH=scripts/gpu:scripts python scripts/gpu/check_fp8_dequant.py \
        --vllm .gpu-carry/vllm-0.34.0-pascal.tgz --out $OUT

Here: the same with --cpu. Prints one JSON line per case and a summary; writes fp8_dequant.json
under --out; exits 1 when a bound or a twin fails.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from carry_inputs import check_arguments, finish, module_of_functions, vllm_tree

KERNEL_FILE = "vllm/model_executor/layers/quantization/fp8.py"
LIMIT = 2.0**-11
TWIN_FLOOR = 0.05
BLOCK = (128, 128)


def reference(weight: torch.Tensor, scale_of: object) -> torch.Tensor:
    """float64 weight times scale_of(rows, cols) (the scale of each element, by index)."""
    rows = torch.arange(weight.shape[0])[:, None]
    cols = torch.arange(weight.shape[1])[None, :]
    return weight.double() * scale_of(rows, cols)


def error(out: torch.Tensor, expected: torch.Tensor) -> float:
    return float((out.cpu().double() - expected).abs().max() / expected.abs().max())


def fp8_weight(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """Random e4m3fn weights over most of the format's range, clamped to its largest finite
    value (448) as a checkpoint's quantizer clamps: e4m3fn has no infinity, and the lent GPU's
    torch 2.11 turned the few elements of randn * 100 above 448 into NaN, so every case read
    NaN there (2026-12-07), where torch 2.13 here saturates them."""
    finite = torch.finfo(torch.float8_e4m3fn).max
    wide = torch.randn(rows, cols, generator=generator) * 100
    return wide.clamp(-finite, finite).to(torch.float8_e4m3fn)


def run_cases(fp8: object, device: str) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    cases = []

    def record(name: str, value: float, twin: bool) -> None:
        passed = value > TWIN_FLOOR if twin else value <= LIMIT
        cases.append({"case": name, "max_relative_error": value, "twin": twin, "passed": passed})
        print(json.dumps(cases[-1]), flush=True)

    # Per-tensor: a fused qkv layer, one scale per shard.
    widths = [4096, 1024, 1024]
    k = 4096
    weight = fp8_weight(sum(widths), k, generator)
    shard_scales = torch.rand(len(widths), generator=generator) * 0.01 + 0.001
    shard_of_row = torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths))
    expected = reference(weight, lambda r, c: shard_scales.double()[shard_of_row[r]])
    for name, scales, twin in (
        ("per-tensor fused qkv", shard_scales, False),
        ("twin: per-tensor shard scales reversed", shard_scales.flip(0), True),
    ):
        out = fp8.dequantize_fp8_weight(weight.to(device), scales.to(device), widths, None, torch.float16)
        record(name, error(out, expected), twin)

    # Block scales, partial last blocks.
    n, k = 4096 + 64, 4096 + 96
    grid = ((n + BLOCK[0] - 1) // BLOCK[0], (k + BLOCK[1] - 1) // BLOCK[1])
    weight = fp8_weight(n, k, generator)
    block_scales = torch.rand(grid, generator=generator) * 0.01 + 0.001
    # e8m0 holds powers of two only.
    e8m0_scales = torch.exp2(torch.randint(-12, -4, grid, generator=generator).float())
    for name, scales, stored, twin in (
        ("block 128x128 float32 scales", block_scales, block_scales, False),
        ("block 128x128 e8m0 scales", e8m0_scales, e8m0_scales.to(torch.float8_e8m0fnu), False),
        ("twin: block scales applied as their inverse", block_scales, 1 / block_scales, True),
    ):
        expected = reference(weight, lambda r, c, s=scales: s.double()[r // BLOCK[0], c // BLOCK[1]])
        out = fp8.dequantize_fp8_weight(weight.to(device), stored.to(device), [n], list(BLOCK), torch.float16)
        record(name, error(out, expected), twin)
    return cases


def main() -> int:
    args, report = check_arguments(__doc__, "fp8_dequant.json", triton=False)
    device = report["device"]
    report |= {"limit": LIMIT, "twin_floor": TWIN_FLOOR}
    if device == "cuda":
        report["gpu"] = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory() as scratch:
        source = vllm_tree(args.vllm, Path(scratch)) / KERNEL_FILE
        fp8 = module_of_functions(source, ["dequantize_fp8_weight"], "import torch", Path(scratch))
        cases = run_cases(fp8, device)
    return finish(report, cases, args.out, "fp8_dequant.json")


if __name__ == "__main__":
    sys.exit(main())
