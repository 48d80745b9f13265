"""Predicted decode and prefill speed on a P40 and a P100, from the PTX of the kernels vLLM launches.

Run from the repository root (needs the vllm-checks extra and scripts/setup-cuda12.sh's nvcc):

    python benchmarks/bench_costmodel.py [--summary] [--work-dir DIR]

The first run fetches the current stack's vLLM sdist and triton wheel (the newest vllm_version
of conda_build_config.yaml: 0.34.0 and 3.8.0 today) into the upstream cache, applies the
recipes' patches (less those to q_gemm.cu, whose "before" rows are as released) and compiles
the hot kernels (about 5 minutes on 2 cores); later runs read the PTX from
.cache/costmodel-ptx. See docs/cost-model.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from pascal_forge.checks.costmodel.report import (
    attention_hot_loops,
    compile_table,
    default_toolchain,
    make_report,
    patched_exllama_report,
    patched_toolchain,
)
from pascal_forge.checks.costmodel.table import SHIPPED_COUNTS, load_table, save_table

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true", help="only the two summary tables")
    parser.add_argument("--work-dir", type=Path, help="where the patched sources are unpacked (kept)")
    parser.add_argument("--nvcc", type=Path, default=REPO / ".cache" / "cuda12" / "bin" / "nvcc")
    parser.add_argument(
        "--write-counts",
        action="store_true",
        help=f"also write the kernel counts `pascal-forge bench` ships ({SHIPPED_COUNTS.name})",
    )
    parser.add_argument(
        "--attention",
        action="store_true",
        help="instead: the hot loops of TRITON_ATTN's decode kernels through vLLM 0.14.0's launchers",
    )
    parser.add_argument(
        "--patched-exllama",
        action="store_true",
        help="instead: Exllama as released vs with vLLM patches 0040/0041, from the patched q_gemm.cu's PTX",
    )
    args = parser.parse_args()
    cache = Path(os.environ.get("PASCAL_FORGE_CACHE") or REPO / ".cache" / "upstream")
    with tempfile.TemporaryDirectory(prefix="pascal-forge-costmodel-") as scratch:
        if args.patched_exllama:
            tools = patched_toolchain(REPO, cache, args.work_dir or Path(scratch), args.nvcc)
            print(patched_exllama_report(load_table(), tools))
            return
        if args.attention:
            print(attention_hot_loops(REPO, cache, args.work_dir or Path(scratch)))
            return
        tools = default_toolchain(REPO, cache, args.work_dir or Path(scratch), args.nvcc)
        table = compile_table(tools)
    if args.write_counts:
        save_table(table, SHIPPED_COUNTS)
    print(make_report(table).text(detail=not args.summary))


if __name__ == "__main__":
    main()
