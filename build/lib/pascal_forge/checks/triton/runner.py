"""Compile the suite's kernels with the triton found on sys.path; one JSON line per result.

Run by suite.run_suite as `python -m pascal_forge.checks.triton.runner` in a subprocess whose
PYTHONPATH puts the triton tree under test first; it never chooses the ptxas itself
(TRITON_PTXAS_PATH comes from the caller).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from .kernels import KernelCase, all_cases

_PTXAS_ERROR = re.compile(r"^ptxas\S* [^,]*, line \d+; error\s*:\s*(.*)$", re.MULTILINE)


def _error_summary(exc: BaseException) -> str:
    text = str(exc)
    ptxas = _PTXAS_ERROR.findall(text)
    if ptxas:
        return "ptxas: " + "; ".join(dict.fromkeys(ptxas))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("^")]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"


def compile_case(case: KernelCase, capability: int) -> tuple[dict, str | None]:
    """Compile one case; returns its JSON record and the PTX when it compiled."""
    record = {
        "case": case.name,
        "group": case.group,
        "capability": capability,
        "fixed_by": case.fixed_by,
        "refusal": case.refusal,
        "known_failure": case.known_failure,
    }
    source = ASTSource(case.fn, case.signature, case.constexprs)
    try:
        # Triton prints the whole PTX to stdout when ptxas fails; the exception carries the error.
        with contextlib.redirect_stdout(io.StringIO()):
            kernel = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=case.options)
    except Exception as exc:
        record.update(status="fail", detail=_error_summary(exc))
        return record, None
    record.update(
        status="ok",
        detail="",
        name=kernel.metadata.name,
        num_warps=kernel.metadata.num_warps,
        shared=kernel.metadata.shared,
    )
    return record, kernel.asm["ptx"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--capability", type=int, action="append", required=True)
    parser.add_argument("--match", default="", help="only cases whose name contains this text")
    parser.add_argument("--ptx-dir", type=Path, help="write each compiled kernel's PTX here")
    args = parser.parse_args(argv)
    cases = all_cases(triton.__version__)
    # Every case name, so the caller can tell a --match that selects nothing from an empty suite.
    header = {"triton": triton.__file__, "version": triton.__version__, "cases": [c.name for c in cases]}
    print(json.dumps(header), flush=True)
    for case in cases:
        if args.match not in case.name:
            continue
        for capability in args.capability:
            record, ptx = compile_case(case, capability)
            if ptx is not None and args.ptx_dir:
                path = args.ptx_dir / f"sm{capability}" / f"{_file_name(case.name)}.ptx"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(ptx)
                record["ptx"] = str(path)
            print(json.dumps(record), flush=True)
    return 0


def _file_name(case_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", case_name).strip("_")


if __name__ == "__main__":
    sys.exit(main())
